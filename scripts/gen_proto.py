"""Regenerate the scalar-admin gRPC stubs in pausepoint/admin/_generated/.

Usage: python scripts/gen_proto.py [--out DIR]

The .proto is copied into a scratch tree at ``pausepoint/admin/_generated/`` and compiled from
there, so protoc itself writes package-qualified imports
(``from pausepoint.admin._generated import scalar_admin_pb2``) and registers the file under a
name no other module uses. No text is patched afterwards. The output depends only on the .proto
and the installed grpcio-tools version; tests/unit/test_proto_generated.py checks that the
committed files match, so after upgrading grpcio-tools run this script and commit the result.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "pausepoint" / "admin" / "proto" / "scalar_admin.proto"
PACKAGE_DIR = Path("pausepoint", "admin", "_generated")
DEFAULT_OUT = ROOT / PACKAGE_DIR

# Written verbatim so the package is importable; the stubs themselves come from protoc.
INIT = '"""gRPC stubs generated from ../proto/scalar_admin.proto by scripts/gen_proto.py."""\n'
GENERATED = ("scalar_admin_pb2.py", "scalar_admin_pb2.pyi", "scalar_admin_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Compile the proto and write the package's files into ``out_dir``; return their paths."""
    from grpc_tools import protoc  # dev dependency: imported here so --help works without it

    well_known = resources.files("grpc_tools") / "_proto"  # google/protobuf/empty.proto
    with tempfile.TemporaryDirectory(prefix="pausepoint-proto-") as scratch:
        src_root = Path(scratch, "src")
        gen_root = Path(scratch, "gen")
        (src_root / PACKAGE_DIR).mkdir(parents=True)
        gen_root.mkdir()
        shutil.copyfile(PROTO, src_root / PACKAGE_DIR / PROTO.name)
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{src_root}",
                f"-I{well_known}",
                f"--python_out={gen_root}",
                f"--pyi_out={gen_root}",
                f"--grpc_python_out={gen_root}",
                str(PACKAGE_DIR / PROTO.name),
            ]
        )
        if rc != 0:
            raise SystemExit(f"protoc failed with exit code {rc}; see its message above")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in GENERATED:
            target = out_dir / name
            shutil.copyfile(gen_root / PACKAGE_DIR / name, target)
            written.append(target)
        init = out_dir / "__init__.py"
        init.write_text(INIT)
        written.append(init)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
