"""moto's server with its backend serialised: one AWS request handled at a time.

moto's own ``moto_server`` answers each request on a thread of its own, and its DynamoDB
backend takes no lock: two conditional writes on one item can both pass their condition.
DynamoDB makes a conditional write atomic, and ScalarDB's Consensus Commit builds on that (a
record is prepared with a conditional put, the coordinator's state with a put-if-absent). On
the threaded server, ScalarDB's transactions from several nodes lose updates. Observed here
with the ScalarDB-backed nodes (2 nodes, 8 clients, 10 s), on the LIVE tables: torn hash
chains and acknowledged requests missing (one run), requests that failed and rows ScalarDB
could not read back whole (another). Served one request at a time, the same runs check
consistent, as on AWS.

Run as ``python -m harness.moto_serial -H 127.0.0.1 -p PORT`` (harness/moto_server.py
``start_moto(..., serial=True)``). Connections are still accepted on threads; only the
application is entered by one at a time.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any


def serialised(app: Callable[..., Iterable[bytes]]) -> Callable[..., list[bytes]]:
    """A WSGI application that runs ``app`` (response body included) under one lock."""
    lock = threading.Lock()

    def run(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with lock:
            body = app(environ, start_response)
            try:
                return list(body)
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()

    return run


def main(argv: list[str] | None = None) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        serialised(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
