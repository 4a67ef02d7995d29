"""`pausepoint unpause`, the operator's emergency command, against real gRPC test admin nodes.

When it cannot unpause a node itself, its advice must name that node and what to do next (the
node's admin port, a restart), not "run `pausepoint unpause`" (issue 10, defect 8).
"""

from __future__ import annotations

import pytest
import yaml

from harness.gate_server import start_gate_cluster
from pausepoint.cli import main


def write_site(path, targets) -> str:
    path.write_text(
        yaml.safe_dump(
            {
                "site": "demo",
                "catalog": {"path": str(path.parent / "catalog")},
                "pause": {"call_timeout_ms": 1000, "unpause_backoff_ms": 1},
                "ledger": {
                    "targets": {"static": [str(t) for t in targets]},
                    "stores": [{"kind": "postgres", "name": "a", "user": "u", "database": "d"}],
                },
            }
        )
    )
    return str(path)


def test_unpause_that_cannot_unpause_a_node_says_what_to_do_instead(tmp_path, capsys):
    with start_gate_cluster(2) as nodes:
        stuck = nodes.servers[1]
        stuck.gate.pause(wait_outstanding=False)
        stuck.drop_unpause_calls = 99  # the node takes no Unpause
        site = write_site(tmp_path / "site.yaml", nodes.targets)
        with pytest.raises(SystemExit) as exit_:
            main(["unpause", "--site", site])
        err = capsys.readouterr().err
    assert exit_.value.code == 5
    assert f"ledger/{stuck.target}" in err and "may still be PAUSED" in err
    assert "pausepoint unpause" not in err  # not the command that just failed
    assert "admin port" in err and "restart that node" in err
    assert f"ledger/{nodes.targets[0]}" not in err.split("may still be PAUSED")[0]
