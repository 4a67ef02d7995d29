"""The load of one bench stage, in its own process: admin nodes and the bank application.

Three test admin nodes (2 ledger + 1 auditor, harness/gate_server.py) and a BankApp whose
writers pass their gates and write into the ledger's and the auditor's database; a separate
process so the measured flow does not share its GIL (BENCHMARKS.md, "What each benchmark does").

Protocol (stdin/stdout, one JSON object a line):
  out  {"ledger": ["127.0.0.1:port", ...], "auditor": [...]}      once the nodes serve
  in   "stop"                                                       stop the writers
  out  {"acks": N, "errors": [...]}                                 then exits; the acks
                                                                    are in --acks (JSON)
"""

from __future__ import annotations

import argparse
import json
import sys

from bench.env import PASSWORD_ENVS


def _db(kind: str, host: str, port: int, user: str, password: str, name: str):
    from harness.kinds import KINDS, Endpoint

    return KINDS[kind](Endpoint(host, port, user, password)).db(name)


def main(argv: list[str] | None = None) -> int:
    import os

    from harness.bank_app import BankApp
    from harness.gate_server import start_gate_cluster

    p = argparse.ArgumentParser()
    p.add_argument("--kind", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--ledger-db", required=True)
    p.add_argument("--auditor-db", required=True)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--acks", required=True)
    a = p.parse_args(argv)
    password = os.environ[PASSWORD_ENVS[a.kind]]
    ledger_db = _db(a.kind, a.host, a.port, a.user, password, a.ledger_db)
    auditor_db = _db(a.kind, a.host, a.port, a.user, password, a.auditor_db)
    ledger, auditor = start_gate_cluster(2), start_gate_cluster(1)
    app = None
    errors: list[str] = []
    try:
        # A request passes a ledger node's gate and moves money from an account in the ledger's
        # database to one in the auditor's (two commits: the case a pause must not tear), then
        # passes the auditor node's gate (a ScalarDL client talks to Ledger and Auditor in turn;
        # the bank tables allow one transfer log row per id and database, so it writes there
        # once).
        app = BankApp(
            components=[
                ([s.gate for s in ledger.servers], [(ledger_db, auditor_db)]),
                ([s.gate for s in auditor.servers], []),
            ],
            writers=a.writers,
        ).start()
        app.wait_for_acks(20)
        print(
            json.dumps(
                {
                    "ledger": [str(t) for t in ledger.targets],
                    "auditor": [str(t) for t in auditor.targets],
                }
            ),
            flush=True,
        )
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        try:
            app.stop()
        except BaseException as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if app is not None and not app._stop.is_set():
            app._stop.set()
        ledger.close()
        auditor.close()
    acks = [
        [x.id, x.sent_at.isoformat(), x.acked_at.isoformat(), x.latency_ms]
        for x in (app.acks if app else [])
    ]
    with open(a.acks, "w") as f:
        json.dump(acks, f)
    print(json.dumps({"acks": len(acks), "errors": errors}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
