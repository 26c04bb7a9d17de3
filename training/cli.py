"""The command line both trainers share: --config and --set, clear errors instead of tracebacks."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from .config import ConfigError, load_config


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
