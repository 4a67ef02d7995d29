"""The ``cassandra`` store: a snapshot of EVERY node taken inside the pause window, uploaded
after it; a restore puts every node back from the same snapshot (FACTS.md §3, §8).

- check: every configured node answers over JMX, is NORMAL and owns tokens, the ring has no
  other node and no node joining, leaving, moving or down; the keyspaces exist (CQL); each
  node's data directory has ``min_free_disk_mb`` free.
- prepare (before the pause): the resident JMX agent of every node started through the node's
  executor (``agent.py``), the ring recorded, ``flush`` of the keyspaces on every node (so the
  snapshot's own flush inside the window has little left), a thread per node ready.
- open (inside the window): ``snapshot -t <tag> <keyspaces>`` on every node at once, over the
  open agents; then the ring again: a node that joined, left, moved or went down fails the
  capture (``ClusterChangedError``). Any node's failure fails it; the snapshots taken on the
  others are cleared.
- finish (after the unpause): each node's snapshot files streamed as one ``tar`` through its
  executor into the artifact sink (sha256 on the way), the schema (CQL, and the snapshots' own
  ``schema.cql`` with table ids) and the ring (tokens per node), then the snapshot cleared.
- restore: see ``restore.py``.
- fingerprint: per table, rows and the sum of 64-bit row hashes read through CQL at
  consistency ALL (``cql-rows-sha256``).

A capture records no fingerprint: the snapshot can only be read by CQL after it is restored,
and the live tables go on changing after the unpause. The restore's check is the artifacts'
sha256 and, in the tests, the fingerprint of the data as it was in the window.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import tarfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pausepoint.errors import (
    CaptureError,
    ClusterChangedError,
    NodeCommandError,
    PausepointError,
    StoreCheckError,
)
from pausepoint.executors import NodeExecutor, open_executor
from pausepoint.stores._common import fold_row_hashes, sum_row_hashes
from pausepoint.stores.base import (
    CaptureContext,
    CaptureHandle,
    Fingerprint,
    PreparedCapture,
    ProgressFn,
    Store,
    StoreCapture,
    TableFingerprint,
)
from pausepoint.stores.cassandra.agent import Agent, ensure_agent
from pausepoint.stores.cassandra_config import (
    CapturedNode,
    CassandraCaptureDetails,
    CassandraConfig,
    CassandraNodeConfig,
)

METHOD = "cassandra-snapshot-all-nodes"
FINGERPRINT = "cql-rows-sha256"


def node_prefix(index: int, address: str) -> str:
    return f"nodes/{index}-{address.replace(':', '_')}"


@dataclass
class NodeHandle:
    """One node's resources for a capture or a restore: its executor and agent."""

    config: CassandraNodeConfig
    executor: NodeExecutor
    agent: Agent | None = None
    ring: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.config.address

    def close(self) -> None:
        try:
            if self.agent is not None:
                self.agent.close()
        finally:
            self.agent = None
            self.executor.close()


class CassandraPrepared(PreparedCapture):
    def __init__(
        self, ctx: CaptureContext, nodes: list[NodeHandle], tag: str, keyspaces: list[str]
    ):
        super().__init__(ctx)
        self.nodes = nodes
        self.tag = tag
        self.keyspaces = keyspaces
        self.pool = ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="cassandra")
        self.snapshotted: set[str] = set()  # nodes whose snapshot may exist (cleared on free)
        self._freed = False
        # Start the pool's threads now: none is created inside the window.
        list(self.pool.map(lambda _n: None, range(len(nodes) * 2)))

    def free(self) -> None:
        if self._freed:
            return
        self._freed = True
        try:
            clear_snapshots(self.nodes, self.tag, self.keyspaces, only=self.snapshotted)
        finally:
            for n in self.nodes:
                with contextlib.suppress(Exception):
                    n.close()
            self.pool.shutdown(wait=False)


def clear_snapshots(
    nodes: list[NodeHandle], tag: str, keyspaces: list[str], only: set[str] | None = None
) -> list[str]:
    """Clear the tag on each node (best effort); returns the problems."""
    problems = []
    for n in nodes:
        if only is not None and n.address not in only:
            continue
        try:
            if n.agent is not None:
                n.agent.call("clear", tag, ",".join(keyspaces), timeout=120)
        except PausepointError as exc:
            problems.append(str(exc))
    return problems


@dataclass(kw_only=True)
class CassandraHandle(CaptureHandle):
    prepared: CassandraPrepared


def ring_problems(ring: dict[str, Any], expected: list[str]) -> list[str]:
    """What keeps a ring from being captured whole: nodes down, in motion, unlisted."""
    problems = []
    owners = set(ring.get("tokens", {}).values())
    for key in ("joining", "leaving", "moving", "unreachable"):
        if ring.get(key):
            problems.append(f"{key}: {', '.join(sorted(ring[key]))}")
    missing = [a for a in expected if a not in set(ring.get("live", []))]
    if missing:
        problems.append(f"not up: {', '.join(missing)}")
    unlisted = sorted(owners - set(expected))
    if unlisted:
        problems.append(
            f"the ring has nodes the store does not list: {', '.join(unlisted)} (list EVERY "
            "node under nodes:, each is snapshotted)"
        )
    not_owning = [a for a in expected if a not in owners]
    if not_owning:
        problems.append(f"owning no tokens: {', '.join(not_owning)}")
    return problems


def ring_signature(ring: dict[str, Any]) -> tuple:
    return (
        tuple(sorted(ring.get("tokens", {}).items())),
        tuple(sorted(ring.get("live", []))),
        tuple(sorted(ring.get("joining", []) + ring.get("leaving", []) + ring.get("moving", []))),
    )


class CassandraStore(Store[CassandraConfig]):
    kind = "cassandra"
    fingerprint_method = FINGERPRINT
    prepared_type = CassandraPrepared
    handle_type = CassandraHandle

    # --- connections --------------------------------------------------------------------------

    def _secret(self, ref: Any) -> str | None:
        value = self._resolve(ref) if ref is not None else None
        return value.get_secret_value() if value is not None else None

    def cql(self) -> Any:
        """A cassandra-driver Cluster and Session over the contact points."""
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import Cluster
        from cassandra.policies import RoundRobinPolicy

        c = self.config
        auth = None
        if c.user:
            auth = PlainTextAuthProvider(c.user, self._secret(c.password) or "")
        cluster = Cluster(
            c.contact_points, port=c.port, auth_provider=auth,
            connect_timeout=c.connect_timeout_s, control_connection_timeout=c.connect_timeout_s,
            load_balancing_policy=RoundRobinPolicy(), protocol_version=5,
        )  # fmt: skip
        try:
            session = cluster.connect()
        except Exception as exc:
            cluster.shutdown()
            raise StoreCheckError(
                f"store {self.name}: cannot connect to Cassandra at "
                f"{', '.join(c.contact_points)} port {c.port}: {exc}; check contact_points, "
                "port and that the nodes are up"
            ) from None
        session.default_timeout = 120
        return cluster, session

    def _credentials(self) -> tuple[str, str] | None:
        if not self.config.jmx_user:
            return None
        return (self.config.jmx_user, self._secret(self.config.jmx_password) or "")

    def _open_nodes(self, with_agents: bool = True) -> list[NodeHandle]:
        """Every node's executor and (``with_agents``) JMX agent, in parallel."""

        def one(node: CassandraNodeConfig) -> NodeHandle:
            h = NodeHandle(node, open_executor(node.executor, self._resolve))
            if with_agents:
                try:
                    h.agent = self._start_agent(h)
                except BaseException:
                    h.close()
                    raise
            return h

        return self._all(one, self.config.nodes)

    def _start_agent(self, h: NodeHandle) -> Agent:
        node = h.config
        return Agent(
            h.executor, address=node.address, java=node.java,
            agent_dir=ensure_agent(h.executor, node.agent_dir), jmx_host=node.jmx_host,
            jmx_port=node.jmx_port, credentials=self._credentials(),
            timeout=self.config.connect_timeout_s,
        )  # fmt: skip

    @staticmethod
    def _all(fn: Any, items: list[Any], pool: ThreadPoolExecutor | None = None) -> list[Any]:
        """``fn`` on every item in parallel; every result, or the first error once all ended
        (the successful results' handles are closed then)."""
        own = pool is None
        pool = pool or ThreadPoolExecutor(max_workers=max(1, len(items)))
        try:
            futures = [pool.submit(fn, item) for item in items]
            results, errors = [], []
            for f in futures:
                try:
                    results.append(f.result())
                except BaseException as exc:
                    errors.append(exc)
            if errors:
                for r in results:
                    if isinstance(r, NodeHandle):
                        with contextlib.suppress(Exception):
                            r.close()
                raise errors[0]
            return results
        finally:
            if own:
                pool.shutdown(wait=True)

    # --- preflight ---------------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        c = self.config
        try:
            nodes = self._open_nodes()
        except NodeCommandError as exc:
            raise StoreCheckError(f"store {self.name}: {exc}") from None
        try:
            expected = [n.address for n in c.nodes]
            problems: list[str] = []
            free: dict[str, int] = {}
            for h in nodes:
                assert h.agent is not None
                ring = h.agent.call("ring", timeout=60)
                if ring.get("mode") != "NORMAL":
                    problems.append(f"node {h.address} is {ring.get('mode')}, not NORMAL")
                if not ring.get("local_tokens"):
                    problems.append(f"node {h.address} owns no tokens")
                problems += [f"seen from {h.address}: {p}" for p in ring_problems(ring, expected)]
                for d in ring.get("data_dirs", []):
                    free[f"{h.address}:{d}"] = self._free_mb(h, d)
            low = {k: v for k, v in free.items() if v < c.min_free_disk_mb}
            if low:
                problems.append(
                    "too little free disk for the snapshots' compactions and the restore: "
                    + ", ".join(f"{k} {v} MB" for k, v in sorted(low.items()))
                    + f" (min_free_disk_mb {c.min_free_disk_mb})"
                )
        except NodeCommandError as exc:
            raise StoreCheckError(f"store {self.name}: {exc}") from None
        finally:
            for h in nodes:
                h.close()
        cluster, session = self.cql()
        try:
            version = session.execute("SELECT release_version FROM system.local").one()[0]
            present = {
                r[0] for r in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")
            }
        finally:
            cluster.shutdown()
        missing = [k for k in c.keyspaces if k not in present]
        if missing:
            problems.append(
                f"keyspaces missing on the cluster: {', '.join(missing)} (the site file lists "
                "them under keyspaces:; create them with ScalarDB's schema loader or fix the list)"
            )
        if problems:
            raise StoreCheckError(f"store {self.name}: " + "; ".join(problems))
        return {"server_version": f"Cassandra {version}", "nodes": len(nodes),
                "free_mb": free}  # fmt: skip

    @staticmethod
    def _free_mb(h: NodeHandle, path: str) -> int:
        out = h.executor.run(["df", "-Pk", path], timeout=60).stdout.decode().splitlines()
        return int(out[-1].split()[3]) // 1024

    # --- capture -----------------------------------------------------------------------------

    def _prepare(self, ctx: CaptureContext) -> CassandraPrepared:
        c = self.config
        tag = f"pausepoint-{ctx.point_id or uuid.uuid4().hex[:12]}"
        try:
            nodes = self._open_nodes()
        except NodeCommandError as exc:
            raise CaptureError(f"store {self.name}: {exc}") from None
        prepared = CassandraPrepared(ctx, nodes, tag, list(c.keyspaces))
        try:
            expected = [n.address for n in c.nodes]

            def ready(h: NodeHandle) -> None:
                assert h.agent is not None
                h.ring = h.agent.call("ring", timeout=60)
                problems = ring_problems(h.ring, expected)
                if problems:
                    raise ClusterChangedError(
                        f"store {self.name}: the ring seen from {h.address} is not whole: "
                        f"{'; '.join(problems)}; nothing was paused. Back up once `nodetool "
                        "status` shows every node up and normal"
                    )
                if c.flush_before_pause:
                    for ks in c.keyspaces:
                        h.agent.call("flush", ks, timeout=600)

            self._all(ready, nodes, prepared.pool)
        except NodeCommandError as exc:
            prepared.release()
            raise CaptureError(f"store {self.name}: {exc}") from None
        except BaseException:
            prepared.release()
            raise
        return prepared

    def _open(self, prepared: CassandraPrepared) -> CassandraHandle:
        p = prepared
        keyspaces = ",".join(p.keyspaces)

        def snapshot(h: NodeHandle) -> None:
            assert h.agent is not None
            p.snapshotted.add(h.address)
            h.agent.call("snapshot", p.tag, keyspaces, timeout=600)

        futures = [(h, p.pool.submit(snapshot, h)) for h in p.nodes]
        failed = []
        for h, f in futures:
            try:
                f.result()
            except Exception as exc:
                failed.append(f"{h.address}: {exc}")
        if failed:
            raise CaptureError(
                f"store {self.name}: the snapshot failed on {len(failed)} of {len(p.nodes)} "
                f"node(s): {'; '.join(failed)}. A Cassandra backup needs every node's snapshot: "
                "no restore point was registered (the others were cleared)"
            )
        # Who is in the ring now, seen from every node: the same as before the pause?
        rings = [(h, p.pool.submit(h.agent.call, "ring", timeout=60)) for h in p.nodes]  # type: ignore[union-attr]
        changed = []
        for h, f in rings:
            try:
                now = f.result()
            except Exception as exc:
                changed.append(f"{h.address} no longer answers ({exc})")
                continue
            if ring_signature(now) != ring_signature(h.ring):
                changed.append(f"{h.address} sees {ring_change(h.ring, now)}")
        if changed:
            raise ClusterChangedError(
                f"store {self.name}: the cluster changed during the pause window: "
                f"{'; '.join(changed)}. Snapshots of a changing ring are not one backup: no "
                "restore point was registered; back up again once the ring is stable"
            )
        return CassandraHandle(ctx=p.ctx, prepared=p, opened_at=datetime.now(UTC))

    def _finish(self, h: CassandraHandle, progress: ProgressFn | None) -> StoreCapture:
        p = h.prepared
        sink = h.ctx.sink
        copied = [0]
        lock = threading.Lock()

        def count(n: int) -> None:
            with lock:
                copied[0] += n
                total = copied[0]
            if progress is not None:
                progress(self.name, total)

        artifacts: list[Any] = []
        captured: list[CapturedNode] = []

        def upload(item: tuple[int, NodeHandle]) -> tuple[CapturedNode, list[Any]]:
            i, n = item
            prefix = node_prefix(i, n.address)
            arts, tables = self._upload_node(n, p.tag, p.keyspaces, prefix, sink, count)
            node = CapturedNode(
                address=n.address, host_id=n.ring.get("host_id", ""),
                tokens=list(n.ring.get("local_tokens", [])), prefix=prefix, tables=tables,
            )  # fmt: skip
            return node, arts

        try:
            for node, arts in self._all(upload, list(enumerate(p.nodes)), p.pool):
                captured.append(node)
                artifacts += arts
        except NodeCommandError as exc:
            raise CaptureError(f"store {self.name}: copying the snapshot: {exc}") from None
        missing = [n.address for n in captured if not n.tables]
        if missing:
            raise CaptureError(
                f"store {self.name}: the snapshot {p.tag} holds no table files on "
                f"{', '.join(missing)}; no restore point was registered"
            )
        cluster, session = self.cql()
        try:
            table_ids = self._table_ids(session)
            meta = cluster.metadata
            schema = "\n\n".join(meta.keyspaces[k].export_as_string() for k in p.keyspaces)
            version = session.execute("SELECT release_version FROM system.local").one()[0]
        finally:
            cluster.shutdown()
        with sink.open("schema.cql") as w:
            w.write(schema.encode() + b"\n")
            artifacts.append(w.close())
        ring = {
            "tokens": p.nodes[0].ring.get("tokens", {}),
            "nodes": {n.address: n.ring.get("local_tokens", []) for n in p.nodes},
            "host_ids": {n.address: n.ring.get("host_id", "") for n in p.nodes},
        }
        with sink.open("ring.json") as w:
            w.write(json.dumps(ring, indent=1, sort_keys=True).encode())
            artifacts.append(w.close())
        return StoreCapture(
            name=self.name, kind=self.kind, method=METHOD, artifacts=artifacts,
            fingerprint={}, fingerprint_method=self.fingerprint_method,
            tool_versions={"cassandra": version},
            snapshot_established_at=h.opened_at,
            details=CassandraCaptureDetails(
                tag=p.tag, keyspaces=p.keyspaces, nodes=captured, table_ids=table_ids,
                cassandra_version=version,
            ),
        )  # fmt: skip

    def _release(self, h: CassandraHandle) -> None:
        """The snapshot is cleared when the preparation is freed (right after this)."""

    def _upload_node(
        self,
        n: NodeHandle,
        tag: str,
        keyspaces: list[str],
        prefix: str,
        sink: Any,
        count: Any,
    ) -> tuple[list[Any], dict[str, int]]:
        """The node's snapshot files as one tar stream through its executor, each member an
        artifact ``<prefix>/<ks>/<table>/<file>`` (the table id is recorded apart)."""
        artifacts: list[Any] = []
        tables: dict[str, int] = {}
        for data_dir in n.ring.get("data_dirs", []):
            script = (
                f"cd {shlex.quote(data_dir)} && "
                f"find {' '.join(shlex.quote(k) for k in keyspaces)} -type f "
                f"-path {shlex.quote(f'*/snapshots/{tag}/*')} -print0 2>/dev/null "
                "| tar --null -T - -cf -"
            )
            proc = n.executor.spawn(["sh", "-c", script], stdin=None)
            try:
                assert proc.stdout is not None
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    for member in tar:
                        if not member.isfile():
                            continue
                        ks, table_dir, _snap, _tag, *rest = member.name.split("/")
                        table = table_dir.rsplit("-", 1)[0]
                        name = f"{prefix}/{ks}/{table}/{'/'.join(rest)}"
                        src = tar.extractfile(member)
                        assert src is not None
                        with sink.open(name) as w:
                            while chunk := src.read(1 << 20):
                                w.write(chunk)
                                count(len(chunk))
                            artifacts.append(w.close())
                        key = f"{ks}.{table}"
                        tables[key] = tables.get(key, 0) + 1
                err = proc.stderr.read() if proc.stderr else b""
                if proc.wait(timeout=600) != 0:
                    raise NodeCommandError(
                        f"{n.executor.describe()}: tar of the snapshot failed: "
                        f"{err.decode(errors='replace')[-400:]}"
                    )
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return artifacts, tables

    def _table_ids(self, session: Any) -> dict[str, str]:
        out = {}
        for ks in self.config.keyspaces:
            rows = session.execute(
                "SELECT table_name, id FROM system_schema.tables WHERE keyspace_name = %s", (ks,)
            )
            out.update({f"{ks}.{r[0]}": str(r[1]) for r in rows})
        return out

    # --- restore (restore.py) ----------------------------------------------------------------

    def check_restore_target(self, capture: StoreCapture, replace: bool) -> None:
        from pausepoint.stores.cassandra.restore import check_target

        check_target(self, capture, replace)

    def restore(
        self,
        capture: StoreCapture,
        source_dir: Path,
        replace: bool,
        *,
        verified: bool = False,
        journal: Any = None,
    ) -> None:
        from pausepoint.stores.cassandra.restore import restore

        restore(self, capture, Path(source_dir), replace, verified=verified)

    # --- fingerprint -------------------------------------------------------------------------

    def fingerprint(
        self, tables: list[str] | None = None, method: str | None = None
    ) -> Fingerprint:
        from cassandra import ConsistencyLevel
        from cassandra.query import SimpleStatement

        cluster, session = self.cql()
        try:
            names = sorted(self._table_ids(session)) if tables is None else list(tables)
            out: Fingerprint = {}
            for key in names:
                ks, table = key.split(".", 1)
                meta = cluster.metadata.keyspaces.get(ks)
                if meta is None or table not in meta.tables:
                    continue
                columns = sorted(meta.tables[table].columns)
                stmt = SimpleStatement(
                    f'SELECT {", ".join(f"{chr(34)}{c}{chr(34)}" for c in columns)} '
                    f'FROM "{ks}"."{table}"',
                    consistency_level=ConsistencyLevel.ALL, fetch_size=5000,
                )  # fmt: skip
                rows = 0
                total = 0
                batch: list[bytes] = []
                for row in session.execute(stmt, timeout=300):
                    rows += 1
                    batch.append(_row_bytes(columns, row))
                    if len(batch) >= 5000:
                        total += sum_row_hashes(batch)
                        batch.clear()
                total += sum_row_hashes(batch)
                out[key] = TableFingerprint(rows=rows, hash=fold_row_hashes(total))
            return out
        finally:
            cluster.shutdown()


def _row_bytes(columns: list[str], row: Any) -> bytes:
    """One row in one spelling: column names and typed values (repr keeps types apart:
    '' vs None, 1 vs '1', b'' vs '')."""
    return repr([(c, _canonical(v)) for c, v in zip(columns, row, strict=True)]).encode()


def _canonical(value: Any) -> Any:
    if isinstance(value, (set, frozenset)) or type(value).__name__ in {"SortedSet"}:
        return ("set", sorted((_canonical(v) for v in value), key=repr))
    if isinstance(value, dict) or type(value).__name__ == "OrderedMapSerializedKey":
        return ("map", sorted(((_canonical(k), _canonical(v)) for k, v in value.items()), key=repr))
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def ring_change(before: dict[str, Any], now: dict[str, Any]) -> str:
    b_owners, n_owners = set(before.get("tokens", {}).values()), set(now.get("tokens", {}).values())
    parts = []
    if n_owners - b_owners:
        parts.append(f"joined: {', '.join(sorted(n_owners - b_owners))}")
    if b_owners - n_owners:
        parts.append(f"left: {', '.join(sorted(b_owners - n_owners))}")
    down = set(before.get("live", [])) - set(now.get("live", []))
    if down:
        parts.append(f"down: {', '.join(sorted(down))}")
    moving = now.get("joining", []) + now.get("leaving", []) + now.get("moving", [])
    if moving:
        parts.append(f"in motion: {', '.join(sorted(moving))}")
    if not parts and before.get("tokens") != now.get("tokens"):
        parts.append("tokens moved")
    return ", ".join(parts) or "another ring"
