"""Users and API keys from the command line: `python -m api.keys COMMAND`.

  issue NAME          a new key for NAME (the user is created if needed); the key is
                      the last line printed, shown once: only its hash is stored
  list NAME           NAME's keys: prefix, id, created, revoked (never the key)
  revoke KEY          revoke a key by id, listed prefix or the whole key; at once
  create-user NAME    the user only

`python -m api.keys NAME` is `issue NAME`, as before.
"""
from __future__ import annotations

import argparse
import sys

from sqlalchemy.orm import Session

from shared.db import make_engine, make_sessions, unit_of_work
from shared.local_stack import tool_settings
from shared.users import find_keys, find_user, get_or_create_user, issue_key, list_keys, revoke_key

COMMANDS = ("issue", "list", "revoke", "create-user")


class CommandError(Exception):
    """Something the operator must fix; printed as one line, exit status 1."""


def _name(parser: argparse.ArgumentParser, raw: str) -> str:
    name = raw.strip()
    if not name or len(name) > 200:
        parser.error("name: 1 to 200 characters")
    return name


# Each command returns the lines to print; they are printed only once the
# transaction has committed, so a key is never shown that was not stored.

def issue(session: Session, name: str) -> list[str]:
    key = issue_key(session, get_or_create_user(session, name))
    return [f"new key for {name} (shown once):", key]


def create_user(session: Session, name: str) -> list[str]:
    existed = find_user(session, name) is not None
    user = get_or_create_user(session, name)
    return [f"user {name} {'already exists' if existed else 'created'} (id {user.id})"]


def list_(session: Session, name: str) -> list[str]:
    user = find_user(session, name)
    if user is None:
        raise CommandError(f"no user named {name!r}")
    lines = [f"{'prefix':<12}{'id':<38}{'created':<27}revoked"]
    for key in list_keys(session, user):
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-"
        lines.append(f"{key.prefix:<12}{str(key.id):<38}{key.created_at.isoformat(timespec='seconds'):<27}{revoked}")
    return lines


def revoke(session: Session, ref: str) -> list[str]:
    keys = find_keys(session, ref)
    live = [key for key in keys if key.revoked_at is None]
    if not keys:
        raise CommandError(f"no key matches {ref!r}")
    if not live:
        return [f"key {keys[0].prefix} ({keys[0].id}) was already revoked"]
    if len(live) > 1:
        ids = ", ".join(str(key.id) for key in live)
        raise CommandError(f"{ref!r} matches {len(live)} live keys ({ids}); revoke by id")
    revoke_key(session, live[0].id)
    return [f"revoked key {live[0].prefix} ({live[0].id})"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "issue")  # the original form: `python -m api.keys NAME`
    parser = argparse.ArgumentParser(prog="python -m api.keys", description=__doc__.splitlines()[0],
                                     epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, argument, help_ in (("issue", "name", "issue a key"), ("list", "name", "list keys"),
                                     ("revoke", "key", "revoke a key"), ("create-user", "name", "add a user")):
        commands.add_parser(command, help=help_).add_argument(argument)
    args = parser.parse_args(argv)
    actions = {"issue": issue, "list": list_, "revoke": revoke, "create-user": create_user}
    target = args.key.strip() if args.command == "revoke" else _name(parser, args.name)

    # The environment's DATABASE_URL, else the one of a `make run` running beside this.
    engine = make_engine(tool_settings("database_url").sqlalchemy_url, pool_size=1)
    try:
        with unit_of_work(make_sessions(engine)) as session:
            lines = actions[args.command](session, target)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
