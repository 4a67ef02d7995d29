"""Shared store helpers that need no database: versions, hashes, artifacts, tools."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from decimal import Decimal

import pytest

from pausepoint.errors import CaptureError, CorruptArtifactError, InternalError, ToolMissingError
from pausepoint.stores._common import (
    PipeToFile,
    PipeWriter,
    ToolProcess,
    artifacts_checked_beside,
    find_tool,
    fold_row_hashes,
    list_artifacts,
    major_version,
    out_of_space,
    redact,
    run_tool,
    sum_row_hashes,
    verify_artifacts,
)


@pytest.mark.parametrize(
    ("line", "major"),
    [
        ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", 15),
        ("pg_restore (PostgreSQL) 9.6.24", 9),
        ("mariadb-dump from 11.8.2-MariaDB, client 10.19 for debian-linux-gnu (x86_64)", 11),
        ("mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)", 8),
        ("", None),
    ],
)
def test_major_version_reads_the_first_dotted_number(line, major):
    assert major_version(line) == major


def test_fold_row_hashes_is_the_sum_modulo_2_64_for_signed_and_unsigned_readings():
    values = [0xFFFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0001, 5]
    unsigned = sum(values)
    signed = sum(v - (1 << 64) if v >= 1 << 63 else v for v in values)
    assert fold_row_hashes(unsigned) == fold_row_hashes(Decimal(signed)) == "8000000000000005"
    assert fold_row_hashes(None) == "0000000000000000"


def test_list_then_verify_artifacts_accepts_intact_and_names_altered_files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.dat").write_bytes(b"x" * 5000)
    (tmp_path / "toc.dat").write_bytes(b"toc")
    artifacts = list_artifacts(tmp_path)
    assert [a.path for a in artifacts] == ["d/a.dat", "toc.dat"]
    assert artifacts[1].sha256 == hashlib.sha256(b"toc").hexdigest()
    verify_artifacts(tmp_path, artifacts, store="s1")

    (tmp_path / "toc.dat").write_bytes(b"tod")
    with pytest.raises(CorruptArtifactError, match=r"store s1: artifact toc\.dat has a wrong"):
        verify_artifacts(tmp_path, artifacts, store="s1")
    (tmp_path / "d" / "a.dat").unlink()
    with pytest.raises(CorruptArtifactError, match=r"d/a\.dat is missing \(and 1 more\)"):
        verify_artifacts(tmp_path, artifacts, store="s1")


def test_artifacts_checked_beside_lets_nothing_past_a_corrupt_artifact(tmp_path):
    (tmp_path / "a.dat").write_bytes(b"x" * 5000)
    artifacts = list_artifacts(tmp_path)
    steps = []
    with artifacts_checked_beside(tmp_path, artifacts, store="s1") as checked:
        steps.append("target checked")
        checked()
        steps.append("changed")
    assert steps == ["target checked", "changed"]

    (tmp_path / "a.dat").write_bytes(b"y" * 5000)
    steps.clear()
    with (
        pytest.raises(CorruptArtifactError, match=r"a\.dat has a wrong sha256"),
        artifacts_checked_beside(tmp_path, artifacts, store="s1") as checked,
    ):
        steps.append("target checked")
        checked()
        steps.append("changed")
    assert steps == ["target checked"]
    # Its error wins over one the caller's own checks raised meanwhile, and over none at all.
    with (
        pytest.raises(CorruptArtifactError),
        artifacts_checked_beside(tmp_path, artifacts, store="s1"),
    ):
        raise ValueError("the target is not empty")
    with (
        pytest.raises(CorruptArtifactError),
        artifacts_checked_beside(tmp_path, artifacts, store="s1"),
    ):
        pass


def test_find_tool_missing_names_tool_and_package(tmp_path):
    with pytest.raises(ToolMissingError, match=r"nope-dump not found in bin_dir .*apt-get install"):
        find_tool(["nope-dump"], bin_dir=str(tmp_path), package="pkg-x", store="s1")


def test_tool_process_refuses_a_secret_in_argv():
    with pytest.raises(InternalError, match="secret"):
        ToolProcess(["echo", "--password=hunter2"], secrets=["hunter2"])


def test_run_tool_failure_carries_the_redacted_stderr_tail():
    script = "import sys, os; sys.stderr.write('bad ' + os.environ['PW'] + '\\n'); sys.exit(3)"
    with pytest.raises(CaptureError) as err:
        run_tool(
            [sys.executable, "-c", script],
            error=CaptureError,
            what="store s1: dumping failed",
            env={"PW": "hunter2"},
            secrets=["hunter2"],
        )
    text = str(err.value)
    assert text.startswith("store s1: dumping failed: ") and text.endswith("exited with 3: bad ***")
    assert redact("a hunter2 b", ["hunter2", ""]) == "a *** b"


@pytest.mark.parametrize("level", [0, 1])
def test_pipe_to_file_hashes_what_it_writes(tmp_path, level):
    import gzip

    read_fd, write_fd = os.pipe()
    payload = os.urandom(3_000_000)
    sink = PipeToFile(io.FileIO(read_fd, "rb"), tmp_path / "out", gzip_level=level)
    with io.FileIO(write_fd, "wb") as w:
        w.write(payload)
    sink.join()
    written = (tmp_path / "out").read_bytes()
    assert sink.error is None and sink.bytes_in == len(payload)
    assert sink.bytes_written == len(written)
    assert sink.sha256 == hashlib.sha256(written).hexdigest()
    assert (gzip.decompress(written) if level else written) == payload


def test_sum_row_hashes_is_the_sum_of_sha256_values_whatever_the_order():
    rows = [b"(1,'a'),", b"(2,NULL),", b"(3,''),"]
    expected = sum(int.from_bytes(hashlib.sha256(r).digest()) for r in rows)
    assert sum_row_hashes(rows) == sum_row_hashes(reversed(rows)) == expected
    assert fold_row_hashes(sum_row_hashes(rows)) == f"{expected % (1 << 64):016x}"
    assert sum_row_hashes([]) == 0


@pytest.mark.parametrize("level", [0, 1])
def test_pipe_to_file_taps_the_uncompressed_stream_and_survives_a_failing_tap(tmp_path, level):
    payload = os.urandom(2_500_000)
    seen: list[bytes] = []

    def run(tap):
        read_fd, write_fd = os.pipe()
        sink = PipeToFile(io.FileIO(read_fd, "rb"), tmp_path / "out", gzip_level=level, tap=tap)
        with io.FileIO(write_fd, "wb") as w:
            for i in range(0, len(payload), 100_000):  # pieces, as a dump tool writes
                w.write(payload[i : i + 100_000])
        sink.join()
        return sink

    sink = run(seen.append)
    assert b"".join(seen) == payload and sink.tap_error is None and sink.error is None

    def failing(_data: bytes) -> None:
        raise ValueError("cannot read this")

    sink = run(failing)
    assert isinstance(sink.tap_error, ValueError) and sink.error is None
    assert sink.bytes_in == len(payload)  # the copy went on without the tap


def test_pipe_writer_delivers_file_ranges_and_bytes_to_a_slow_reader(tmp_path):
    source = tmp_path / "src"
    payload = os.urandom(3_000_000)
    source.write_bytes(payload)
    out = tmp_path / "out"
    # A reader that takes small bites, like a client reading 4 KiB at a time.
    reader = subprocess.Popen(
        [sys.executable, "-c", "import sys,shutil; shutil.copyfileobj(sys.stdin.buffer, "
         f"open({str(out)!r}, 'wb'), 4096)"],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    assert reader.stdin is not None
    pipe = PipeWriter(reader.stdin.fileno())
    with open(source, "rb") as f:
        pipe.send_file(f.fileno(), 0, 1_000_000)
        pipe.write(b"--edited--")
        pipe.send_file(f.fileno(), 1_000_010, len(payload))
    reader.stdin.close()
    assert reader.wait() == 0
    assert out.read_bytes() == payload[:1_000_000] + b"--edited--" + payload[1_000_010:]


def test_pipe_writer_raises_when_the_reader_is_gone(tmp_path):
    reader = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.buffer.read(10)"],
                              stdin=subprocess.PIPE)  # fmt: skip
    assert reader.stdin is not None
    pipe = PipeWriter(reader.stdin.fileno())
    with pytest.raises(BrokenPipeError):
        for _ in range(100):  # 100 MB: far more than the pipe holds
            pipe.write(b"x" * 1_000_000)
    reader.stdin.close()
    reader.wait()


def test_pipe_to_file_started_later_reads_nothing_until_then(tmp_path):
    read_fd, write_fd = os.pipe()
    sink = PipeToFile(io.FileIO(read_fd, "rb"), tmp_path / "out", start=False)
    writer = io.FileIO(write_fd, "wb")
    os.set_blocking(write_fd, False)
    sent = 0
    while (n := writer.write(b"x" * 65536)) is not None:  # None: the pipe is full
        sent += n
    assert sent > 0 and sink.bytes_in == 0 and not (tmp_path / "out").exists()
    sink.start()
    sink.start()  # once
    writer.close()
    sink.join()
    assert sink.error is None and sink.bytes_in == sent == (tmp_path / "out").stat().st_size


def test_pipe_to_file_never_started_closes_its_pipe_on_join(tmp_path):
    read_fd, write_fd = os.pipe()
    source = io.FileIO(read_fd, "rb")
    sink = PipeToFile(source, tmp_path / "out", start=False)
    sink.join()
    sink.join()  # an abort may come twice
    sink.start()  # too late: nothing starts after a join
    assert source.closed and sink.bytes_in == 0
    with pytest.raises(BrokenPipeError):  # a writer still on the pipe is stopped, not blocked
        os.write(write_fd, b"x")
    os.close(write_fd)


def test_out_of_space_by_errno_anywhere_in_the_causes_or_by_a_tools_words():
    full = OSError(28, os.strerror(28))
    try:
        try:
            raise full
        except OSError as exc:
            raise CaptureError("store s: writing dump.sql failed") from exc
    except CaptureError as wrapped:
        assert out_of_space(wrapped)
    said = CaptureError("pg_dump: error: could not write to output file: No space left on device")
    assert out_of_space(said)
    assert not out_of_space(CaptureError("pg_dump: error: connection to server lost"))
    assert not out_of_space(OSError(30, os.strerror(30)))  # read-only is not "full"
