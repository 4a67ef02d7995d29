"""The cassandra store's settings, its registry entry and the node executors' command lines
(no servers: the cluster itself is in tests/integration/test_store_cassandra.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from pausepoint.errors import ConfigError, NodeCommandError
from pausepoint.executors import (
    KubernetesExecutor,
    KubernetesExecutorConfig,
    LocalExecutor,
    SshExecutorConfig,
    open_executor,
)
from pausepoint.locations import THIS_MACHINE
from pausepoint.secrets import SecretResolver
from pausepoint.stores import registry
from pausepoint.stores.cassandra.store import ring_change, ring_problems
from pausepoint.stores.cassandra_config import CassandraConfig

NODES = [{"address": "127.0.0.1"}, {"address": "127.0.0.2", "jmx_port": 7299}]


def config(**extra) -> CassandraConfig:
    settings = {"contact_points": ["127.0.0.1"], "keyspaces": ["scalar", "coordinator"],
                "nodes": NODES, **extra}  # fmt: skip
    return CassandraConfig(name="c", **settings)


def test_registry_entry_is_a_snapshot_kind_that_is_not_transactional():
    caps = registry.capabilities(config())
    assert caps.capture == "snapshot" and caps.transactional is False
    assert registry.get("cassandra").store_class().__name__ == "CassandraStore"


def test_locations_are_every_keyspace_on_every_node():
    locs = registry.locations(config(), as_target=False)
    assert {(loc.server, loc.database) for loc in locs} == {
        (f"{THIS_MACHINE}:9042", "scalar"), (f"{THIS_MACHINE}:9042", "coordinator"),
    }  # fmt: skip


def test_a_node_listed_twice_and_no_node_are_refused():
    with pytest.raises(ValidationError, match="each node's address must appear once"):
        config(nodes=[{"address": "127.0.0.1"}, {"address": "127.0.0.1"}])
    with pytest.raises(ValidationError):
        config(nodes=[])


def test_an_inline_ssh_key_is_refused_without_being_repeated():
    with pytest.raises(ValidationError) as e:
        config(nodes=[{"address": "10.0.0.1", "executor": {
            "kind": "ssh", "host": "n1", "user": "cassandra", "key": "-----BEGIN SECRET-----",
            "known_hosts": "/k"}}])  # fmt: skip
    assert "BEGIN SECRET" not in str(e.value)
    assert "by reference" in str(e.value)


def test_kubernetes_executor_command_line():
    """Not run against a cluster (none here): the command it would run."""
    ex = KubernetesExecutor(KubernetesExecutorConfig(
        pod="cassandra-0", namespace="db", container="cassandra", context="prod"))  # fmt: skip
    assert ex._argv(["nodetool", "status"]) == [
        "kubectl", "--context", "prod", "-n", "db", "exec", "-i", "cassandra-0",
        "-c", "cassandra", "--", "nodetool", "status",
    ]  # fmt: skip


def test_ssh_executor_needs_its_known_hosts_and_keeps_the_key_off_the_command_line(tmp_path):
    known = tmp_path / "known_hosts"
    cfg = SshExecutorConfig(host="n1", user="u", key={"env": "K"}, known_hosts=str(known))
    resolve = SecretResolver(environ={"K": "PRIVATE-KEY-TEXT"})
    with pytest.raises(ConfigError, match="known_hosts file"):
        open_executor(cfg, resolve)
    known.write_text("n1 ssh-ed25519 AAAA\n")
    with open_executor(cfg, resolve) as ex:
        argv = ex._argv(["echo", "a b"])
        assert "PRIVATE-KEY-TEXT" not in " ".join(argv)
        key_path = argv[argv.index("-i") + 1]
        assert Path(key_path).read_text() == "PRIVATE-KEY-TEXT\n"
        assert os.stat(key_path).st_mode & 0o077 == 0
        assert argv[-1] == "echo 'a b'" and f"UserKnownHostsFile={known}" in argv


def test_local_executor_reports_a_failing_command_with_its_stderr():
    ex = LocalExecutor()
    assert ex.run(["sh", "-c", "cat"], input=b"x").stdout == b"x"
    with pytest.raises(NodeCommandError, match=r"exit 2.*nope"):
        ex.run(["sh", "-c", "echo nope >&2; exit 2"])
    with pytest.raises(NodeCommandError, match="cannot start"):
        ex.run(["/no/such/tool"])


RING = {
    "live": ["a", "b"], "unreachable": [], "joining": [], "leaving": [], "moving": [],
    "tokens": {"1": "a", "2": "b"},
}  # fmt: skip


def test_ring_problems_name_what_keeps_a_ring_from_being_captured():
    assert ring_problems(RING, ["a", "b"]) == []
    assert "not up: b" in ring_problems({**RING, "live": ["a"]}, ["a", "b"])
    assert any("does not list: b" in p for p in ring_problems(RING, ["a"]))
    assert "leaving: b" in ring_problems({**RING, "leaving": ["b"]}, ["a", "b"])
    assert ring_change(RING, {**RING, "tokens": {"1": "a", "2": "b", "3": "c"}}) == "joined: c"
    assert ring_change(RING, {**RING, "live": ["a"]}) == "down: b"
