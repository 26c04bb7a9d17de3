"""`python -m iasa_core queue WORKFLOW_API.json [--server HOST:PORT] [--set N.input=V ...] [--out DIR]`."""

from __future__ import annotations

import argparse
import sys

from .headless import DEFAULT_SERVER, load_workflow, run_workflow


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `queue` sub-command."""
    p = subparsers.add_parser(
        "queue", help="run a workflow on a ComfyUI server headless and download its outputs",
        description="Queue an API-format workflow on a running ComfyUI, print its progress, wait for it "
                    "and download its output files. Exits non-zero with ComfyUI's error text if it fails.",
        epilog="Start ComfyUI with e.g. `python main.py --listen 127.0.0.1 --port 8188 --cpu`. "
               "Examples: --set 12.seed=3  --set 'Load Audio.audio=speech.wav'  --upload speech.wav")
    p.add_argument("workflow", help="workflow in API format (ComfyUI: 'Export (API)'), e.g. workflows/api/*_api.json")
    p.add_argument("--server", default=DEFAULT_SERVER, help=f"ComfyUI address HOST:PORT or URL (default {DEFAULT_SERVER})")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.INPUT=VALUE",
                   help="change an input before queueing; NODE is a node id or a unique title, VALUE is JSON "
                        "when it parses (3, 0.5, true) else a string; repeatable")
    p.add_argument("--upload", action="append", default=[], metavar="FILE",
                   help="upload a file (image, audio, JSON...) to the server's input folder first; repeatable")
    p.add_argument("--out", default="comfy_outputs", help="folder for the downloaded outputs (default ./comfy_outputs)")
    p.add_argument("--timeout", type=float, default=None,
                   help="give up after this many seconds of waiting for the run (default: no limit)")
    p.add_argument("--request-timeout", type=float, default=30.0,
                   help="seconds allowed for each HTTP request / websocket connect (default 30)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Queue the workflow and wait; 0 on success, ComfyError (a RuntimeError) on failure."""
    prompt = load_workflow(args.workflow)

    def log(line: str):
        print(line, flush=True)

    try:
        run_workflow(prompt, args.server, sets=args.sets, uploads=args.upload, out_dir=args.out,
                     timeout=args.timeout, request_timeout=args.request_timeout, log=log)
    except KeyboardInterrupt:
        print("stopped waiting; the prompt may still be running on the server", file=sys.stderr)
        return 130
    return 0
