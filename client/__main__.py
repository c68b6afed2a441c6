"""`python -m client chat [--url URL] [--key KEY] [--conversation ID] [--tool NAME ...]`"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from client.api import ClientError, Parley
from client.chat import chat
from client.tools import DEMO_TOOLS

DEFAULT_URL = "http://127.0.0.1:5000"
REPO = Path(__file__).resolve().parent.parent


def dev_key() -> str | None:
    """The key `make run` saved in var/dev-api-key, if there is one."""
    path = Path(os.environ.get("VAR_DIR") or REPO / "var") / "dev-api-key"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client", description="Chat with Claude through Parley.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    talk = commands.add_parser("chat", help="pick or start a conversation and chat in the terminal")
    talk.add_argument("--url", default=os.environ.get("PARLEY_URL") or DEFAULT_URL,
                      help=f"the API (env PARLEY_URL, default {DEFAULT_URL})")
    talk.add_argument("--key", default=os.environ.get("PARLEY_API_KEY"),
                      help="API key (env PARLEY_API_KEY, default: var/dev-api-key from `make run`)")
    talk.add_argument("--conversation", metavar="ID", help="continue this conversation instead of choosing")
    talk.add_argument("--tool", action="append", choices=sorted(DEMO_TOOLS), default=[],
                      help="offer Claude a demo tool this client runs (clock: the current time); repeatable")
    args = parser.parse_args(argv)

    key = args.key or dev_key()
    if not key:
        print("error: no API key: pass --key, set PARLEY_API_KEY, or run `make run` (it saves var/dev-api-key).",
              file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        import readline  # noqa: F401  (line editing and history for input())
    parley = Parley(args.url, key)
    try:
        return chat(parley, sys.stdout, args.conversation, {name: DEMO_TOOLS[name] for name in args.tool})
    except ClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        parley.close()


if __name__ == "__main__":
    sys.exit(main())
