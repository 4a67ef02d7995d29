"""The ScalarDB-backed nodes on real MariaDB + PostgreSQL, paused by pausepoint's admin client.

One cluster per module (a JVM start costs seconds): the ``ledger`` and ``auditor`` components,
two nodes each, every transfer a ScalarDB Consensus Commit transaction across both databases.
Two more nodes (on the ledger's databases) play the 3.13 and 3.14 releases for the pause
semantics over real gRPC. The negative control copies the databases at two moments without a
pause and asserts that the checker catches the tear; the same copy procedure inside a pause
passes, so the failure is the tear's and not the copy's.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from harness import scalardb_node as sn
from harness.scalardb_checker import check as check_copy
from harness.scalardb_workload import (
    CLIENTS,
    Workload,
    create_accounts,
    stall,
    throughput,
)
from pausepoint.admin._generated import scalar_admin_pb2, scalar_admin_pb2_grpc
from pausepoint.admin.client import AdminCallError, Reason
from pausepoint.admin.grpc_client import GrpcAdminClient, error_info
from pausepoint.site import Target

pytestmark = [pytest.mark.integration]

MEASURED: dict[str, float] = {}  # printed at module end (run with -s to see them)


@pytest.fixture(scope="module")
def cluster(scalardb_node_cp, pg_server, mysql_server, tmp_path_factory) -> Iterator[sn.Cluster]:
    work = tmp_path_factory.mktemp("scalardb-node")
    t0 = time.monotonic()
    c = sn.start_cluster(pg_server, mysql_server, "nd", work)
    MEASURED["cluster up (schema + 4 nodes), s"] = time.monotonic() - t0
    MEASURED["node start (max of 4 in parallel), s"] = max(n.start_seconds for n in c.all_nodes())
    try:
        c.creations = create_accounts(c.addresses("ledger"), c.addresses("auditor"))
        yield c
    finally:
        with GrpcAdminClient() as admin:  # never leave a node paused behind a failed test
            for t in c.targets():
                with contextlib.suppress(AdminCallError):
                    admin.unpause(Target.parse(t), timeout_s=5)
        c.stop()
        print("\nScalarDB node measurements:", {k: round(v, 2) for k, v in MEASURED.items()})


@pytest.fixture
def admin() -> Iterator[GrpcAdminClient]:
    with GrpcAdminClient() as client:
        yield client


def pause_all(admin: GrpcAdminClient, targets: list[str]) -> None:
    with concurrent.futures.ThreadPoolExecutor(len(targets)) as pool:
        futures = [
            pool.submit(
                admin.pause,
                Target.parse(t),
                wait_outstanding=True,
                max_pause_wait_ms=20_000,
                timeout_s=30,
            )
            for t in targets
        ]
        for f in futures:
            f.result()


def unpause_all(admin: GrpcAdminClient, targets: list[str]) -> None:
    for t in targets:
        admin.unpause(Target.parse(t), timeout_s=10)


def test_workload_commits_across_both_databases_and_the_live_check_passes(cluster, tmp_path):
    with Workload(cluster.addresses("ledger"), cluster.addresses("auditor")) as w:
        w.wait_for(100)
        time.sleep(3)
    log = w.stop()
    MEASURED["requests/s (8 clients, ledger + auditor)"] = throughput(log)
    acked = [e for e in log if e.outcome == "acked"]
    assert len(acked) >= 100
    assert [e for e in log if e.outcome not in ("acked",)] == []
    dumps = cluster.check()
    # every transfer moved money between a MariaDB and a PostgreSQL account
    ns = {a: v["namespace"] for a, v in dumps["ledger"]["accounts"].items()}
    for q in dumps["ledger"]["requests"].values():
        if q["kind"] == "transfer":
            assert {ns[q["src"]], ns[q["dst"]]} == {
                cluster.dbs["ledger"].mysql_namespace,
                cluster.dbs["ledger"].pg_namespace,
            }
    now = time.time()
    verdict = check_copy(dumps, cluster.creations + log, (now, now))
    assert verdict.ok, verdict.summary()
    assert len(dumps["ledger"]["requests"]) >= len(acked) + len(cluster.creations)


def test_pausing_all_four_nodes_holds_every_request_until_unpause(cluster, admin):
    targets = cluster.targets()
    assert len(targets) == 4
    with Workload(cluster.addresses("ledger"), cluster.addresses("auditor")) as w:
        w.wait_for(30)
        pause_sent = time.time()
        pause_all(admin, targets)
        start = time.time()
        assert all(admin.check_paused(Target.parse(t), timeout_s=5) for t in targets)
        # every client ends up held at one gate (ledger or auditor step); nothing in flight
        deadline = time.monotonic() + 10
        while True:
            pings = [n.ping() for n in cluster.all_nodes()]
            if sum(p["held"] for p in pings) == CLIENTS or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert sum(p["held"] for p in pings) == CLIENTS, pings
        assert all(p["paused"] and p["inflight"] == 0 for p in pings), pings
        time.sleep(1.0)
        end = time.time()
        acked_at_unpause = w.acked()
        unpause_all(admin, targets)
        w.wait_for(acked_at_unpause + 30)
    log = w.stop()
    during = [
        e
        for e in log
        if (e.ledger_acked and start < e.ledger_acked < end) or (e.acked and start < e.acked < end)
    ]
    assert during == [], f"{len(during)} requests completed while every node was paused"
    # requests sent while the nodes were pausing: done in the drain, or held until the unpause
    sent_in_window = [e for e in log if pause_sent <= e.sent <= end]
    assert sent_in_window, "no request arrived during the pause"
    assert all(e.acked is None or e.acked <= start or e.acked > end for e in sent_in_window)
    assert any(e.acked and e.acked > end for e in sent_in_window), "none held until the unpause"
    s = stall(log, pause_sent, end)
    assert s.requests and s.max_ms > (end - start) * 1000
    MEASURED["stall p50 ms (1 s+ pause)"] = s.p50_ms
    MEASURED["stall max ms (1 s+ pause)"] = s.max_ms
    now = time.time()
    verdict = check_copy(cluster.check(), cluster.creations + log, (now, now))
    assert verdict.ok, verdict.summary()


# --- the negative control, and the same copies inside a pause ----------------------------------


def _copy_both(cluster, servers, suffix: str, work, between_s: float) -> tuple[float, float]:
    """MariaDB of both components first, then (``between_s`` later) PostgreSQL of both."""
    copies = {c: cluster.dbs[c].copy_named(suffix) for c in cluster.dbs}
    pg, my = servers
    first = min(sn.copy_mysql(my, cluster.dbs[c], copies[c], work) for c in copies)
    time.sleep(between_s)
    last = max(sn.copy_postgres(pg, cluster.dbs[c], copies[c], work) for c in copies)
    cluster.copies = copies
    return first, last


def _check_copies(cluster, work) -> dict:
    return {c: sn.check(d, work) for c, d in cluster.copies.items()}


def test_copies_taken_inside_a_pause_pass_the_checker(
    cluster, admin, tmp_path, pg_server, mysql_server
):
    targets = cluster.targets()
    with Workload(cluster.addresses("ledger"), cluster.addresses("auditor")) as w:
        w.wait_for(30)
        pause_all(admin, targets)
        start = time.time()
        try:
            t1, t2 = _copy_both(cluster, (pg_server, mysql_server), "paused", tmp_path, 0.5)
            pings = [n.ping() for n in cluster.all_nodes()]
        finally:
            end = time.time()
            unpause_all(admin, targets)
        print(f"\npaused copy: start {start:.3f} mysql {t1:.3f} postgres {t2:.3f} end {end:.3f}")
        assert all(p["paused"] for p in pings), pings
        w.wait_for(w.acked() + 30)
    log = w.stop()
    verdict = check_copy(_check_copies(cluster, tmp_path), cluster.creations + log, (start, end))
    assert verdict.ok, verdict.summary()
    assert verdict.stats["acked before window"] >= 30


def test_negative_control_copies_at_two_moments_without_a_pause_are_caught(
    cluster, tmp_path, pg_server, mysql_server
):
    with Workload(cluster.addresses("ledger"), cluster.addresses("auditor")) as w:
        w.wait_for(30)
        t1, t2 = _copy_both(cluster, (pg_server, mysql_server), "torn", tmp_path, between_s=1.0)
        w.wait_for(w.acked() + 10)
    log = w.stop()
    committed_between = [e for e in log if e.ledger_acked and t1 < e.ledger_acked < t2]
    assert committed_between, "the workload committed nothing between the two copies"
    verdict = check_copy(_check_copies(cluster, tmp_path), cluster.creations + log, (t1, t2))
    print("\nnegative control:\n" + verdict.summary())
    assert not verdict.ok
    # the tear itself: transfers whose MariaDB half is missing from the copy
    assert not verdict.rules["balances_match_records"], verdict.summary()


# --- release modes over real gRPC ---------------------------------------------------------------


@pytest.fixture(scope="module")
def release_nodes(cluster) -> Iterator[dict[str, sn.NodeProcess]]:
    """One extra node per release, on the ledger's databases."""
    nodes = {
        r: sn.node_process(cluster.dbs["ledger"], f"mode-{r}", cluster.workdir, release=r)
        for r in sn.RELEASES
    }
    try:
        with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
            for f in [pool.submit(n.start) for n in nodes.values()]:
                f.result()
        yield nodes
    finally:
        for n in nodes.values():
            n.stop()


class RawAdmin:
    """scalar-admin calls without pausepoint's error mapping: the status as the node sent it."""

    def __init__(self, target: str):
        self._channel = grpc.insecure_channel(target)
        self.stub = scalar_admin_pb2_grpc.AdminStub(self._channel)

    def pause(self, wait: bool, max_ms: int | None = None) -> grpc.RpcError | None:
        req = scalar_admin_pb2.PauseRequest(wait_outstanding=wait)
        if max_ms is not None:
            req.max_pause_wait_time = max_ms
        try:
            self.stub.Pause(req, timeout=20)
            return None
        except grpc.RpcError as err:
            return err

    def unpause(self) -> None:
        from google.protobuf import empty_pb2

        self.stub.Unpause(empty_pb2.Empty(), timeout=10)

    def paused(self) -> bool:
        from google.protobuf import empty_pb2

        return self.stub.CheckPaused(empty_pb2.Empty(), timeout=10).paused

    def close(self) -> None:
        self._channel.close()


def _in_flight(node: sn.NodeProcess, ms: int) -> threading.Thread:
    """A request that stays in flight for ``ms`` (the node's hold op); returns once it is."""
    t = threading.Thread(target=sn.request, args=(node.request_address, {"op": "hold", "ms": ms}))
    t.start()
    deadline = time.monotonic() + 10
    while node.ping()["inflight"] < 1:
        assert time.monotonic() < deadline, "the hold request never got in flight"
        time.sleep(0.01)
    return t


def _reason(err: grpc.RpcError) -> str | None:
    info = error_info(err)
    return None if info is None else info.reason


@pytest.mark.parametrize("release", sn.RELEASES)
def test_release_pause_semantics_over_grpc(release, release_nodes, admin):
    node = release_nodes[release]
    raw = RawAdmin(node.admin_target)
    target = Target.parse(node.admin_target)
    try:
        # A zero maximum wait: 3.14 refuses it; 3.13 takes the 30 s default and pauses.
        err = raw.pause(True, 0)
        if release == "3.14":
            assert err is not None and err.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert not raw.paused()
        else:
            assert err is None and raw.paused()
            raw.unpause()

        # A drain that times out on an open gate: the gate is reopened either way; only 3.14
        # says why in an ErrorInfo.
        hold = _in_flight(node, 2500)
        err = raw.pause(True, 300)
        assert err is not None and err.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert _reason(err) == ("TIMED_OUT" if release == "3.14" else None)
        assert not raw.paused()
        with pytest.raises(AdminCallError) as exc:  # pausepoint's client reads both the same
            admin.pause(target, wait_outstanding=True, max_pause_wait_ms=300, timeout_s=10)
        assert exc.value.reason is Reason.TIMED_OUT
        hold.join()

        # A drain that times out under an EARLIER pause: 3.14 keeps the gate closed and says
        # so (TIMED_OUT_STILL_PAUSED); 3.13 reopens it, revoking the earlier pause.
        hold = _in_flight(node, 2500)
        assert raw.pause(False) is None  # closes the gate, the request stays in flight
        err = raw.pause(True, 300)
        assert err is not None and err.code() is grpc.StatusCode.FAILED_PRECONDITION
        if release == "3.14":
            assert _reason(err) == "TIMED_OUT_STILL_PAUSED"
            assert raw.paused()
        else:
            assert _reason(err) is None
            assert not raw.paused()
        raw.unpause()
        hold.join()

        # A second pause while one is draining: serialised in 3.14 (PAUSE_IN_PROGRESS, with an
        # ErrorInfo), simply done in 3.13.
        hold = _in_flight(node, 2500)
        first: list[grpc.RpcError | None] = []
        drain = threading.Thread(target=lambda: first.append(raw.pause(True, 10_000)))
        drain.start()
        deadline = time.monotonic() + 10
        while not raw.paused():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        err = raw.pause(False)
        if release == "3.14":
            assert err is not None and err.code() is grpc.StatusCode.ABORTED
            assert _reason(err) == "PAUSE_IN_PROGRESS"
        else:
            assert err is None
        hold.join()
        drain.join()
        assert first == [None] and raw.paused()

        # Paused and drained: a request waits at the gate until Unpause, then completes.
        done = threading.Event()

        def read() -> None:
            sn.request(node.request_address, {"op": "read", "account": "my-0"})
            done.set()

        reader = threading.Thread(target=read)
        reader.start()
        deadline = time.monotonic() + 10
        while node.ping()["held"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not done.wait(0.5)
        admin.unpause(target, timeout_s=5)
        reader.join(30)
        assert done.is_set()
    finally:
        raw.unpause()
        raw.close()
