"""The cassandra store on a real 3-node Cassandra 5.0 cluster (tests/conftest.py
``cassandra_cluster``), with a bank workload writing through CQL.

What it proves: a capture of every node whose snapshots are opened while the writer is held
restores exactly the data of that moment (fingerprints and the bank's invariant), also into an
emptied cluster started with the recorded tokens; a snapshot that fails on one node fails the
backup and the flow leaves nothing paused and nothing registered; a node that goes down
during the window fails the capture; the ssh executor reaches a loopback sshd with the key
from a secret reference and refuses a host key it does not know.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from harness.cassandra_bank import Bank
from harness.gate_server import start_gate_cluster
from pausepoint.errors import (
    CaptureError,
    ClusterChangedError,
    NodeCommandError,
    RestoreError,
    StoreCheckError,
    TargetNotEmptyError,
)
from pausepoint.executors import SshExecutorConfig, open_executor
from pausepoint.secrets import SecretResolver
from pausepoint.stores.base import CaptureContext, CaptureWindow
from pausepoint.stores.cassandra.store import CassandraStore
from pausepoint.stores.cassandra_config import CassandraConfig

pytestmark = [pytest.mark.integration]

KEY_ENV = "PP_TEST_SSH_KEY"


def make_store(cluster, keyspaces, executors=None, **settings) -> CassandraStore:
    entry = {**cluster.store_settings(keyspaces, executors), **settings}
    entry.pop("kind")
    return CassandraStore(
        CassandraConfig(name="ledger-cassandra", **entry), SecretResolver(environ=dict(os.environ))
    )


@pytest.fixture
def bank(cassandra_cluster):
    c = cassandra_cluster
    b = Bank([n.address for n in c.nodes], c.native_port)
    b.create()
    yield b
    b.drop()
    b.close()


def capture_in_window(store, bank, workdir: Path):
    """prepare; hold the writer (the pause); the expected state; open; release; finish."""
    ctx = CaptureContext.local(workdir, store=store.name, point_id=f"t{time.time_ns()}")
    prepared = store.prepare_capture(ctx)
    with bank.paused():
        expected = store.fingerprint(), bank.invariant()
        handle = store.open_capture(ctx, prepared)
    at = handle.opened_at
    handle.ctx.window = CaptureWindow(start=at, end=at, mid=at)
    return store.finish_capture(handle), expected


def snapshot_dirs(cluster, keyspaces) -> list[Path]:
    return [
        p
        for n in cluster.nodes
        for ks in keyspaces
        for p in (n.data_dir / ks).glob("*/snapshots/*")
    ]


def test_round_trip_under_load_restores_the_windows_data(cassandra_cluster, bank, tmp_path):
    store = make_store(cassandra_cluster, bank.keyspaces)
    facts = store.check()
    assert facts["server_version"].startswith("Cassandra 5.0")
    bank.start_writer()
    time.sleep(1)
    capture, (fingerprint, invariant) = capture_in_window(store, bank, tmp_path / "capture")
    time.sleep(1)  # writes go on after the window
    bank.stop_writer()
    assert bank.invariant()[1] > invariant[1], "the writer wrote after the window"
    assert invariant[0] == 100 * 1000
    assert snapshot_dirs(cassandra_cluster, bank.keyspaces) == [], "snapshots cleared"
    # Every node's files are there, with checksums, plus the schema and the ring.
    names = {a.path for a in capture.artifacts}
    assert {"schema.cql", "ring.json"} <= names
    for i, n in enumerate(cassandra_cluster.nodes):
        assert any(p.startswith(f"nodes/{i}-{n.address}/{bank.bank}/account/") for p in names)
    assert {n.address for n in capture.details.nodes} == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}
    assert all(len(n.tokens) == 4 for n in capture.details.nodes)

    with pytest.raises(TargetNotEmptyError):
        store.check_restore_target(capture, replace=False)
    store.restore(capture, tmp_path / "capture", replace=True)
    assert store.fingerprint() == fingerprint
    assert bank.invariant() == invariant


def test_a_snapshot_failing_on_one_node_fails_the_backup_and_nothing_stays_paused(
    cassandra_cluster, bank, prefect_api, tmp_path, monkeypatch
):
    from flows.backup import backup
    from pausepoint.requests import BackupRequest

    node = cassandra_cluster.nodes[1]
    with start_gate_cluster(2) as ledger:
        entry = {"name": "ledger-cassandra", **cassandra_cluster.store_settings(bank.keyspaces)}
        site = tmp_path / "site.yaml"
        site.write_text(yaml.safe_dump({
            "site": "cass", "catalog": {"path": "catalog"},
            "pause": {"call_timeout_ms": 3000, "drain_timeout_ms": 5000},
            "ledger": {"targets": {"static": [str(t) for t in ledger.targets]},
                       "stores": [entry]},
        }))  # fmt: skip
        # Inside the window (the first Pause arrived), node 2's JMX agent dies: its snapshot
        # cannot be taken while the other two nodes' can.
        gate = ledger.servers[0]
        record = gate._record

        def on_call(method, pause_call=None):
            record(method, pause_call)
            if method == "Pause":
                for pid in agent_pids(node.jmx_port):
                    os.kill(pid, signal.SIGKILL)

        monkeypatch.setattr(gate, "_record", on_call)
        with pytest.raises(CaptureError) as e:
            backup(BackupRequest(site_file=str(site)))
        assert "127.0.0.2" in str(e.value) and "1 of 3 node(s)" in str(e.value)
        assert [s.target for s in ledger.servers if s.gate.check_paused()] == []
        assert all(s.calls.get("Unpause", 0) >= 1 for s in ledger.servers)
    assert not (tmp_path / "catalog" / "cass" / "points").exists() or not any(
        (p / "manifest.json").exists() for p in (tmp_path / "catalog" / "cass" / "points").iterdir()
    )
    assert snapshot_dirs(cassandra_cluster, bank.keyspaces) == [], "the others were cleared"


def agent_pids(jmx_port: int) -> list[int]:
    """The pids of the JMX agents of that node that this session started."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"NodeAgent" in argv and str(jmx_port).encode() in argv and _ours(int(entry)):
            found.append(int(entry))
    return found


def _ours(pid: int) -> bool:
    me = os.getpid()
    while pid > 1:
        if pid == me:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return False


def test_a_node_going_down_during_the_window_fails_the_capture(cassandra_cluster, bank, tmp_path):
    store = make_store(cassandra_cluster, bank.keyspaces)
    third = cassandra_cluster.nodes[2]
    ctx = CaptureContext.local(tmp_path / "c", store=store.name, point_id="left")
    prepared = store.prepare_capture(ctx)
    try:
        # Node 3 stops gossiping: the others see it down, though its own JMX still answers
        # (so its snapshot is taken: only the ring check can tell).
        cassandra_cluster.nodetool(third, "disablegossip")
        deadline = time.monotonic() + 120
        while "DN  127.0.0.3" not in cassandra_cluster.nodetool(
            cassandra_cluster.nodes[0], "status"
        ):
            assert time.monotonic() < deadline, "node 3 never seen down"
            time.sleep(1)
        with pytest.raises(ClusterChangedError) as e:
            store.open_capture(ctx, prepared)
        assert "down: 127.0.0.3" in str(e.value)
    finally:
        prepared.release()
        cassandra_cluster.nodetool(third, "enablegossip")
    assert snapshot_dirs(cassandra_cluster, bank.keyspaces) == []
    deadline = time.monotonic() + 120
    while "DN" in cassandra_cluster.nodetool(cassandra_cluster.nodes[0], "status"):
        assert time.monotonic() < deadline, "node 3 never came back"
        time.sleep(1)


# --- ssh --------------------------------------------------------------------------------------


def ssh_executor(sshd, monkeypatch, **overrides):
    monkeypatch.setenv(KEY_ENV, sshd.client_key)
    config = SshExecutorConfig(**{**sshd.executor_settings(KEY_ENV), **overrides})
    return open_executor(config, SecretResolver())


def test_ssh_executor_runs_commands_with_the_key_from_a_secret(sshd, monkeypatch, tmp_path):
    with ssh_executor(sshd, monkeypatch) as ex:
        out = ex.run(["sh", "-c", 'echo "$1"; cat', "-", "a b'c"], input=b"piped")
        assert out.stdout == b"a b'c\npiped"
        argv = ex._argv(["true"])
        assert sshd.client_key.strip() not in " ".join(argv)
        assert "StrictHostKeyChecking=yes" in argv
        with pytest.raises(NodeCommandError) as e:
            ex.run(["sh", "-c", "echo oops >&2; exit 3"])
        assert "exit 3" in str(e.value) and "oops" in str(e.value)


def test_ssh_executor_refuses_a_host_key_it_does_not_know(sshd, monkeypatch, tmp_path):
    other = tmp_path / "known_hosts"
    line = sshd.known_hosts.read_text().split()
    # The same host name with another key: a man in the middle, for the client.
    other.write_text(
        f"{line[0]} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN0aGlzIGlzIG5vdCB0aGUga2V5IGF0IGFsbCE=\n"
    )
    with ssh_executor(sshd, monkeypatch, known_hosts=str(other)) as ex:
        with pytest.raises(NodeCommandError) as e:
            ex.run(["true"])
        assert "host key" in str(e.value).lower()


def test_capture_through_ssh_executors(cassandra_cluster, bank, sshd, monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_ENV, sshd.client_key)
    ssh = sshd.executor_settings(KEY_ENV)
    store = make_store(cassandra_cluster, bank.keyspaces, executors=[ssh] * 3)
    store.check()
    capture, (_fingerprint, _) = capture_in_window(store, bank, tmp_path / "c")
    assert (
        len({a.path.split("/")[1] for a in capture.artifacts if a.path.startswith("nodes/")}) == 3
    )
    assert snapshot_dirs(cassandra_cluster, bank.keyspaces) == []


def test_restore_refuses_a_cluster_with_other_tokens(cassandra_cluster, tmp_path):
    """A target whose nodes own other tokens would receive files of ranges it does not own."""
    c = cassandra_cluster
    bank = Bank([n.address for n in c.nodes], c.native_port)
    bank.create(accounts=10)
    try:
        store = make_store(c, bank.keyspaces)
        capture, _ = capture_in_window(store, bank, tmp_path / "c")
        shifted = capture.details.model_copy(update={"nodes": [
            n.model_copy(update={"tokens": [str(int(t) + 1) for t in n.tokens]})
            for n in capture.details.nodes
        ]})  # fmt: skip
        moved = capture.model_copy(update={"details": shifted})
        with pytest.raises(RestoreError) as e:
            store.restore(moved, tmp_path / "c", replace=True)
        assert "initial_token" in str(e.value) and "nothing was changed" in str(e.value)
        assert store.fingerprint()[f"{bank.bank}.account"].rows == 10
    finally:
        bank.drop()
        bank.close()


# --- restore into another cluster (runs last: it empties the session's cluster) ---------------


def test_zz_restore_into_an_emptied_cluster_with_the_recorded_tokens(
    cassandra_cluster, bank, tmp_path
):
    """What it proves: the capture alone (files, schema with table ids, tokens) rebuilds the
    data on a cluster that has none of it: no keyspace, no table, new host ids (the same
    machines emptied and started anew as a new cluster, with ``initial_token`` = the recorded
    tokens, as an operator starts the new cluster). Not proven here: other addresses (the
    nodes are matched by position when the addresses differ)."""
    store = make_store(cassandra_cluster, bank.keyspaces)
    bank.start_writer()
    capture, (fingerprint, invariant) = capture_in_window(store, bank, tmp_path / "c")
    bank.stop_writer()
    bank.close()
    cassandra_cluster.wipe()
    cassandra_cluster.start()
    fresh = make_store(cassandra_cluster, bank.keyspaces)
    with pytest.raises(StoreCheckError):  # the keyspaces are gone
        fresh.check()
    fresh.check_restore_target(capture, replace=False)  # empty: accepted
    fresh.restore(capture, tmp_path / "c", replace=False)
    assert fresh.fingerprint() == fingerprint
    check = Bank([n.address for n in cassandra_cluster.nodes], cassandra_cluster.native_port,
                 prefix=bank.bank.removesuffix("_bank"))  # fmt: skip
    try:
        assert check.invariant() == invariant
    finally:
        check.close()
