"""ScalarDB's own tables on a DynamoDB endpoint (moto's server in the tests): the schema loader
of .cache/scalardl/lib run with its DynamoDB adapter pointed at the endpoint
(``scalar.db.dynamo.endpoint_override``), so a test works on exactly the tables ScalarDB makes:
``<prefix><namespace>.<table>``, the coordinator's ``<prefix>coordinator.state`` and the
metadata table ``<prefix>scalardb.metadata``, PITR on, auto scaling registered."""

from __future__ import annotations

import json
from pathlib import Path

from harness import ledger
from harness.moto_server import ACCESS_KEY, REGION, SECRET_KEY


def create_ledger_tables(
    endpoint: str, prefix: str, workdir: Path, namespace: str = "scalar", timeout: float = 300
) -> str:
    """Run the schema loader for the Ledger's tables and the coordinator; returns its log."""
    lib = ledger.require_tools()
    workdir.mkdir(parents=True, exist_ok=True)
    props = {
        "scalar.db.storage": "dynamo",
        "scalar.db.contact_points": REGION,
        "scalar.db.username": ACCESS_KEY,
        "scalar.db.password": SECRET_KEY,  # moto's fake key, in a 0600 file, never in argv
        "scalar.db.dynamo.endpoint_override": endpoint,
        "scalar.db.dynamo.namespace.prefix": prefix,
    }
    config = ledger._write_properties(workdir / "schema-loader.properties", props)
    schema = workdir / "ledger-schema.json"
    schema.write_text(json.dumps(ledger.ledger_schema(namespace), indent=2))
    r = ledger._run_java(
        f"{lib}/*",
        ledger.SCHEMA_LOADER_MAIN,
        ["--config", str(config), "--schema-file", str(schema), "--coordinator"],
        cwd=workdir,
        timeout=timeout,
    )
    output = (r.stdout + r.stderr).strip()
    (workdir / "schema-loader.log").write_text(output + "\n")
    if r.returncode != 0 or "ERROR" in output:
        raise ledger.LedgerError(f"schema loader failed ({r.returncode}):\n{output[-3000:]}")
    return output
