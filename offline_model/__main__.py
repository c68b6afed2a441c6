"""Command line entry point: ``python -m offline_model --host 127.0.0.1 --port 8765``."""

from __future__ import annotations

import argparse
import signal

from .server import OfflineHTTPServer


def _interrupt(signum: int, frame: object) -> None:
    # Turn SIGTERM into the same clean path as Ctrl-C.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offline_model", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--delay-ms", type=int, default=None,
                        help="reply delay (default: $OFFLINE_MODEL_DELAY_MS or 0)")
    args = parser.parse_args(argv)

    httpd = OfflineHTTPServer((args.host, args.port), delay_ms=args.delay_ms)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    host, port = httpd.server_address[:2]
    print(f"offline model listening on http://{host}:{port}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.stopping.set()
        httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
