"""The committed gRPC stubs are exactly what scripts/gen_proto.py produces from the .proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "pausepoint" / "admin" / "_generated"


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_gen_proto_fresh_run_matches_committed_stubs_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    fresh, committed = _files(tmp_path), _files(COMMITTED)
    assert sorted(fresh) == sorted(committed), "run `python scripts/gen_proto.py` and commit"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"{stale} differ from a fresh run: run `python scripts/gen_proto.py`"


def test_generated_stub_imports_messages_through_the_package() -> None:
    stub = (COMMITTED / "scalar_admin_pb2_grpc.py").read_text()
    assert "from pausepoint.admin._generated import scalar_admin_pb2 as" in stub
    assert "\nimport scalar_admin_pb2" not in stub


def test_generated_service_uses_the_wire_method_names() -> None:
    from pausepoint.admin._generated import scalar_admin_pb2

    service = scalar_admin_pb2.DESCRIPTOR.services_by_name["Admin"]
    assert service.full_name == "rpc.Admin"
    assert [m.name for m in service.methods] == ["Pause", "Unpause", "CheckPaused"]
    request = scalar_admin_pb2.PauseRequest(wait_outstanding=True)
    assert not request.HasField("max_pause_wait_time")  # optional: unset means server default
