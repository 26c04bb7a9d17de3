"""The command line both trainers share: --config and --set, clear errors instead of tracebacks."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ConfigError, load_config, to_dict


def check_resume(state: dict[str, Any], cfg: Any, sections: tuple[str, ...], path: Path) -> None:
    """Refuse to resume a checkpoint trained with other values in ``sections`` of the config."""
    saved = state.get("config", {})
    now = to_dict(cfg)
    for section in sections:
        if saved.get(section) != now.get(section):
            raise ConfigError(f"{path} was trained with another {section} section ({saved.get(section)}); "
                              "resume with the same config or use a new run.output_dir")


def run_trainer(argv: list[str] | None, prog: str, doc: str, config_cls: type,
                train: Callable[[Any], dict[str, Any]], outputs: Callable[[dict[str, Any]], Any]) -> int:
    """Parse the arguments, train, print the exported files as JSON; exit 2 with a message on bad input."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config (see training/configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set run.steps=10 (repeatable)")
    args = parser.parse_args(argv)
    try:
        result = train(load_config(config_cls, args.config, args.set))
    except (ConfigError, FileNotFoundError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shown = outputs(result)
    if shown:
        print(json.dumps(shown))
    return 0
