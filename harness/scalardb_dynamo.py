"""ScalarDB's own tables on a DynamoDB endpoint (moto's server in the tests): ScalarDB's schema
loader (the class path ``require_tools()`` of harness/scalardb_node.py) run with its DynamoDB
adapter pointed at the endpoint (``scalar.db.dynamo.endpoint_override``), so a test works on
exactly the tables ScalarDB makes: ``<prefix><namespace>.<table>``, the coordinator's
``<prefix>coordinator.state`` and the metadata table ``<prefix>scalardb.metadata``, PITR on,
auto scaling registered."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from harness.moto_server import ACCESS_KEY, REGION, SECRET_KEY
from harness.scalardb_node import NodeError, require_tools

SCHEMA_LOADER_MAIN = "com.scalar.db.schemaloader.SchemaLoader"


def _table(pk: list[str], ck: list[str], columns: dict[str, str], tx: bool) -> dict:
    return {"transaction": tx, "partition-key": pk, "clustering-key": ck, "columns": columns}


def ledger_schema(namespace: str = "scalar") -> dict:
    """ScalarDL Ledger 3.12's tables: ``asset`` and ``asset_metadata`` written through
    consensus-commit transactions, the registries (certificates, secrets, contracts, functions)
    and ``tx_state`` as plain storage tables."""
    text, integer, bigint, blob = "TEXT", "INT", "BIGINT", "BLOB"
    tables = {
        "asset": _table(
            ["id"], ["age"],
            {"id": text, "age": integer, "argument": text, "contract_id": text, "hash": blob,
             "input": text, "output": text, "prev_hash": blob, "signature": blob},
            tx=True,
        ),
        "asset_metadata": _table(
            ["asset_id"], [], {"asset_id": text, "latest_age": integer}, tx=True
        ),
        "contract": _table(
            ["cert_holder_id"], ["cert_version", "id"],
            {"id": text, "cert_holder_id": text, "cert_version": integer, "binary_name": text,
             "properties": text, "registered_at": bigint, "signature": blob},
            tx=False,
        ),
        "contract_class": _table(
            ["binary_name"], [], {"binary_name": text, "byte_code": blob}, tx=False
        ),
        "function": _table(
            ["id"], [],
            {"id": text, "binary_name": text, "byte_code": blob, "registered_at": bigint},
            tx=False,
        ),
        "certificate": _table(
            ["holder_id"], ["version"],
            {"holder_id": text, "version": integer, "pem": text, "registered_at": bigint},
            tx=False,
        ),
        "secret": _table(
            ["entity_id"], ["key_version"],
            {"entity_id": text, "key_version": integer, "secret_key": blob,
             "registered_at": bigint},
            tx=False,
        ),
        "tx_state": _table(
            ["id"], [], {"id": text, "state": integer, "created_at": bigint}, tx=False
        ),
    }  # fmt: skip
    return {f"{namespace}.{name}": spec for name, spec in tables.items()}


def _write_properties(path: Path, props: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    path.chmod(0o600)
    return path


def create_ledger_tables(
    endpoint: str, prefix: str, workdir: Path, namespace: str = "scalar", timeout: float = 300
) -> str:
    """Run the schema loader for the Ledger's tables and the coordinator; returns its log."""
    lib = require_tools()
    workdir.mkdir(parents=True, exist_ok=True)
    props = {
        "scalar.db.storage": "dynamo",
        "scalar.db.contact_points": REGION,
        "scalar.db.username": ACCESS_KEY,
        "scalar.db.password": SECRET_KEY,  # moto's fake key, in a 0600 file, never in argv
        "scalar.db.dynamo.endpoint_override": endpoint,
        "scalar.db.dynamo.namespace.prefix": prefix,
    }
    config = _write_properties(workdir / "schema-loader.properties", props)
    schema = workdir / "ledger-schema.json"
    schema.write_text(json.dumps(ledger_schema(namespace), indent=2))
    java = shutil.which("java") or "java"
    r = subprocess.run(
        [java, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", f"{lib}/*",
         SCHEMA_LOADER_MAIN, "--config", str(config), "--schema-file", str(schema),
         "--coordinator"],
        cwd=workdir, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    output = (r.stdout + r.stderr).strip()
    (workdir / "schema-loader.log").write_text(output + "\n")
    if r.returncode != 0 or "ERROR" in output:
        raise NodeError(f"schema loader failed ({r.returncode}):\n{output[-3000:]}")
    return output
