"""Restore of a whole Cassandra cluster from one capture (the guide's procedure; Medusa's and
Cassy's order):

1. artifacts checked (sha256, or sizes after the flow verified them); the target's nodes
   matched to the captured ones (same address, else the same position in ``nodes:``), and
   each target node must own the captured node's tokens (a new cluster is started with
   ``initial_token`` set to them: the error lists the lines to put in each cassandra.yaml);
2. schema: a keyspace or table the target lacks is created from the captured schema (the
   snapshot's ``schema.cql``, which keeps the table id); the files of a table go into the
   target's directory of that table, whatever its id;
3. every node drained and stopped (its ``stop_command``); on every node the keyspaces' table
   files, the commitlog, hints and saved caches removed;
4. each node's snapshot files put into its table directories (one tar stream per node through
   its executor); every node started (``start_command``), waited for (CQL port, ring whole);
5. ``nodetool repair -full`` of the keyspaces on every node (``repair: true``).
"""

from __future__ import annotations

import re
import shlex
import socket
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pausepoint.errors import (
    NodeCommandError,
    PausepointError,
    RestoreError,
    StoreCheckError,
    TargetNotEmptyError,
)
from pausepoint.stores._common import verify_artifacts
from pausepoint.stores.base import StoreCapture
from pausepoint.stores.cassandra_config import CapturedNode, CassandraCaptureDetails

if TYPE_CHECKING:
    from pausepoint.stores.cassandra.store import CassandraStore, NodeHandle


def _details(store: CassandraStore, capture: StoreCapture) -> CassandraCaptureDetails:
    return store.captured_details(capture)


def match_nodes(store: CassandraStore, details: CassandraCaptureDetails) -> list[CapturedNode]:
    """The captured node each target node (in ``nodes:`` order) is restored from."""
    targets = [n.address for n in store.config.nodes]
    if len(targets) != len(details.nodes):
        raise RestoreError(
            f"store {store.name}: the capture has {len(details.nodes)} nodes and the target "
            f"{len(targets)}; a Cassandra restore needs a cluster of the same size (each node "
            "takes one captured node's files and tokens); nothing was changed"
        )
    by_address = {n.address: n for n in details.nodes}
    if set(targets) == set(by_address):
        return [by_address[a] for a in targets]
    return list(details.nodes)


def check_target(store: CassandraStore, capture: StoreCapture, replace: bool) -> None:
    details = _details(store, capture)
    match_nodes(store, details)
    try:
        cluster, session = store.cql()
    except StoreCheckError as exc:
        raise RestoreError(str(exc)) from None
    try:
        meta = cluster.metadata
        holding = []
        for key in sorted(details.table_ids):
            ks, table = key.split(".", 1)
            km = meta.keyspaces.get(ks)
            if km is None or table not in km.tables:
                continue
            if session.execute(f'SELECT * FROM "{ks}"."{table}" LIMIT 1').one() is not None:
                holding.append(key)
    finally:
        cluster.shutdown()
    if holding and not replace:
        raise TargetNotEmptyError(
            f"store {store.name}: the target cluster's tables {', '.join(holding[:5])} hold "
            "rows; give --replace to replace them (every node is stopped and its keyspaces' "
            "data, commitlog and hints are removed), or restore into an empty cluster"
        )


def restore(
    store: CassandraStore,
    capture: StoreCapture,
    source_dir: Path,
    replace: bool,
    *,
    verified: bool = False,
) -> None:
    details = _details(store, capture)
    verify_artifacts(source_dir, capture.artifacts, store=store.name, checksums=not verified)
    sources = match_nodes(store, details)
    check_target(store, capture, replace)
    try:
        nodes = store._open_nodes()
    except NodeCommandError as exc:
        raise RestoreError(f"store {store.name}: {exc}") from None
    try:
        _restore(store, details, source_dir, nodes, sources)
    except NodeCommandError as exc:
        raise RestoreError(
            f"store {store.name}: {exc}; the cluster may be partly restored: fix that and "
            "restore again with --replace"
        ) from None
    finally:
        for n in nodes:
            n.close()


def _restore(
    store: CassandraStore,
    details: CassandraCaptureDetails,
    source_dir: Path,
    nodes: list[NodeHandle],
    sources: list[CapturedNode],
) -> None:
    for n in nodes:
        assert n.agent is not None
        n.ring = n.agent.call("ring", timeout=60)
    wrong = [
        (n, src) for n, src in zip(nodes, sources, strict=True)
        if sorted(n.ring.get("local_tokens", []), key=int) != sorted(src.tokens, key=int)
    ]  # fmt: skip
    if wrong:
        lines = "; ".join(
            f"{n.address}: initial_token: {','.join(sorted(src.tokens, key=int))}"
            for n, src in wrong
        )
        raise RestoreError(
            f"store {store.name}: target nodes do not own the captured tokens, so the "
            f"captured files would land on nodes that do not own their data. Start the target "
            f"cluster empty with each node's tokens set ({lines}; num_tokens the same count), "
            "then restore again; nothing was changed"
        )
    dirs = _table_dirs(store, details, source_dir)
    # Stop every node: drain first (flushes everything, empties the commitlog), then stop.
    store._all(_drain, nodes)
    store._all(lambda n: n.executor.run(n.config.stop_command, timeout=600), nodes)
    for n in nodes:
        _wait_port(n.address, store.config.port, up=False, timeout=store.config.start_timeout_s)
    store._all(lambda item: _replace_files(store, details, source_dir, dirs, *item),
               list(zip(nodes, sources, strict=True)))  # fmt: skip
    store._all(lambda n: n.executor.run(n.config.start_command, timeout=600), nodes)
    for n in nodes:
        _wait_port(n.address, store.config.port, up=True, timeout=store.config.start_timeout_s)
    _wait_ring(store)
    if store.config.repair:
        for n in nodes:
            for ks in details.keyspaces:
                n.executor.run([*n.config.nodetool, "repair", "-full", ks], timeout=3600)


def _drain(n: NodeHandle) -> None:
    assert n.agent is not None
    n.agent.call("drain", timeout=600)
    n.agent.close()
    n.agent = None


def _table_dirs(
    store: CassandraStore, details: CassandraCaptureDetails, source_dir: Path
) -> dict[str, str]:
    """ "ks.table" -> the target's directory name of that table (``<table>-<id hex>``),
    creating what the target lacks from the captured schema (with the captured table id)."""
    cluster, session = store.cql()
    try:
        meta = cluster.metadata
        for ks in details.keyspaces:
            if ks not in meta.keyspaces:
                session.execute(_keyspace_statement(source_dir / details.schema_file, ks))
        ids = store._table_ids(session)
        for key in sorted(details.table_ids):
            if key in ids:
                continue
            ks, table = key.split(".", 1)
            statement = _table_statement(source_dir, details, ks, table)
            session.execute(statement)
        cluster.refresh_schema_metadata()
        ids = store._table_ids(session)
    finally:
        cluster.shutdown()
    missing = sorted(set(details.table_ids) - set(ids))
    if missing:
        raise RestoreError(f"store {store.name}: could not create tables {', '.join(missing)}")
    return {k: f"{k.split('.', 1)[1]}-{ids[k].replace('-', '')}" for k in details.table_ids}


def _keyspace_statement(schema: Path, ks: str) -> str:
    text = schema.read_text()
    m = re.search(rf"CREATE KEYSPACE {re.escape(ks)} [^;]*;", text)
    if m is None:
        raise RestoreError(f"the captured schema has no CREATE KEYSPACE {ks}")
    return m.group(0).replace("CREATE KEYSPACE", "CREATE KEYSPACE IF NOT EXISTS", 1)


def _table_statement(
    source_dir: Path, details: CassandraCaptureDetails, ks: str, table: str
) -> str:
    """The snapshot's own CREATE TABLE (it carries ``WITH ID``): the recreated table keeps
    the captured id."""
    for node in details.nodes:
        path = source_dir / node.prefix / ks / table / "schema.cql"
        if path.is_file():
            text = path.read_text()
            m = re.search(r"CREATE TABLE[^;]*;", text, re.S)
            if m:
                return m.group(0)
    raise RestoreError(f"the capture has no schema.cql of table {ks}.{table}")


def _replace_files(
    store: CassandraStore,
    details: CassandraCaptureDetails,
    source_dir: Path,
    dirs: dict[str, str],
    n: NodeHandle,
    src: CapturedNode,
) -> None:
    data_dirs = n.ring.get("data_dirs", [])
    commitlog = n.ring.get("commitlog") or ""
    hints = n.config.hints_dir or str(Path(commitlog).parent / "hints")
    caches = n.ring.get("saved_caches") or ""
    q = shlex.quote
    parts = ["set -e"]
    for d in data_dirs:
        for ks in details.keyspaces:
            # Live SSTables only: the table directories' files, not their snapshots/backups.
            parts.append(
                f"if [ -d {q(d + '/' + ks)} ]; then find {q(d + '/' + ks)} -mindepth 2 "
                "-maxdepth 2 -type f -delete; fi"
            )
    for d in (commitlog, hints, caches):
        if d:
            parts.append(f"if [ -d {q(d)} ]; then find {q(d)} -mindepth 1 -delete; fi")
    n.executor.run(["sh", "-c", "; ".join(parts)], timeout=600)
    # The captured files into the first data directory, as one tar stream.
    target = data_dirs[0]
    proc = n.executor.spawn(["tar", "-C", target, "-xf", "-"], stdout=None)
    try:
        assert proc.stdin is not None
        with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
            root = source_dir / src.prefix
            for key in sorted(src.tables):
                ks, table = key.split(".", 1)
                folder = root / ks / table
                for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                    rel = path.relative_to(folder).as_posix()
                    if rel in {"manifest.json", "schema.cql"}:
                        continue  # the snapshot's own notes, not table files
                    tar.add(str(path), arcname=f"{ks}/{dirs[key]}/{rel}", recursive=False)
        proc.stdin.close()
        err = proc.stderr.read() if proc.stderr else b""
        if proc.wait(timeout=600) != 0:
            raise NodeCommandError(
                f"{n.executor.describe()}: tar into {target} failed: "
                f"{err.decode(errors='replace')[-400:]}"
            )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_port(address: str, port: int, *, up: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.settimeout(1)
            is_up = s.connect_ex((address, port)) == 0
        if is_up == up:
            return
        if time.monotonic() > deadline:
            raise NodeCommandError(
                f"node {address}: its CQL port {port} did not {'open' if up else 'close'} "
                f"within {timeout:.0f} s"
            )
        time.sleep(0.5)


def _wait_ring(store: CassandraStore, timeout: float | None = None) -> None:
    """Until every node sees every other up and NORMAL."""
    from pausepoint.stores.cassandra.store import ring_problems

    deadline = time.monotonic() + (timeout or store.config.start_timeout_s)
    expected = [n.address for n in store.config.nodes]
    last: Any = None
    while True:
        try:
            nodes = store._open_nodes()
            try:
                problems = []
                for n in nodes:
                    assert n.agent is not None
                    ring = n.agent.call("ring", timeout=60)
                    problems += ring_problems(ring, expected)
                    if ring.get("mode") != "NORMAL":
                        problems.append(f"{n.address} is {ring.get('mode')}")
            finally:
                for n in nodes:
                    n.close()
            if not problems:
                return
            last = problems
        except PausepointError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise NodeCommandError(f"the restored cluster did not come up whole: {last}")
        time.sleep(2)
