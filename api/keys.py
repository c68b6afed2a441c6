"""Issue an API key: `python -m api.keys NAME` (creates the user if needed).

The key is printed once, as the last line; only its hash is stored.
"""
from __future__ import annotations

import argparse

from shared.config import load_settings
from shared.db import make_engine, make_sessions, unit_of_work
from shared.users import get_or_create_user, issue_key


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m api.keys", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the user's name")
    name = parser.parse_args().name.strip()
    if not name or len(name) > 200:
        parser.error("name: 1 to 200 characters")
    engine = make_engine(load_settings().sqlalchemy_url, pool_size=1)
    try:
        with unit_of_work(make_sessions(engine)) as session:
            key = issue_key(session, get_or_create_user(session, name))
    finally:
        engine.dispose()
    print(f"new key for {name} (shown once):")
    print(key)


if __name__ == "__main__":
    main()
