"""``python -m serving.engines``: what the engine registry knows (serving/engines/registry.py).

    python -m serving.engines list
    python -m serving.engines describe triton                     # JSON
    python -m serving.engines describe triton --field metrics_port  # one value, for Make / shell
    python -m serving.engines describe vllm --shell                 # NAME=value lines

Ports and URLs are for a server on ``--host``/``--port`` (default 127.0.0.1:8000). Port
variables such as ``$TRITON_METRICS_PORT`` apply only with ``--environ`` (what a server started
from this shell would bind).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any

from serving.engines.registry import DEFAULT_PORT, ENGINE_NAMES, facts

FIELDS = tuple(facts(ENGINE_NAMES[0]).describe())


def _plain(value: Any) -> str:
    """A value as one shell word: lists space-separated, mappings as JSON, None empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.engines",
                                description="The serving engines' facts: default format, ports, health path, "
                                "metrics URL, request counters and request protocol.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{list,describe}")
    sub.add_parser("list", help="the registered engine names, one a line")
    d = sub.add_parser("describe", help="the facts of one engine")
    d.add_argument("engine", help=f"one of: {', '.join(ENGINE_NAMES)}")
    d.add_argument("--host", default="127.0.0.1", help="host in the URLs (default 127.0.0.1)")
    d.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port of the server (default {DEFAULT_PORT})")
    d.add_argument("--environ", action="store_true", help="apply the engine's port variables from this environment")
    out = d.add_mutually_exclusive_group()
    out.add_argument("--field", choices=FIELDS, metavar="NAME",
                     help=f"print only this fact, as one shell word ({', '.join(FIELDS)})")
    out.add_argument("--shell", action="store_true", help="print NAME=value lines (shell-quoted)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        print("\n".join(ENGINE_NAMES))
        return 0
    try:
        info = facts(args.engine).describe(args.host, args.port, os.environ if args.environ else None)
    except ValueError as e:
        print(f"serving.engines: {e}", file=sys.stderr)
        return 2
    if args.field:
        print(_plain(info[args.field]))
    elif args.shell:
        for key, value in info.items():
            print(f"{key.upper()}={shlex.quote(_plain(value))}")
    else:
        print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
