"""The MySQL tools' password never lands in the system temp directory: not while a capture,
restore or fingerprint dump runs, and not after the process doing a capture fails or is killed
(issue 10, defect 7). Against a private MariaDB, as a user with a password of its own."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.servers import MysqlServer
from pausepoint.errors import CaptureError
from pausepoint.secrets import SecretRef, SecretResolver
from pausepoint.stores._common import ToolProcess
from pausepoint.stores.mysql import MysqlStore
from pausepoint.stores.mysql import dump as mysql_dump
from pausepoint.stores.mysql import restore as mysql_restore
from pausepoint.stores.mysql_config import MysqlConfig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def files_holding(root: Path, secret: str) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``secret``."""
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and secret.encode() in path.read_bytes():
                found.append(path)
        except OSError:
            continue  # vanished or unreadable meanwhile: not a file left behind
    return found


@pytest.fixture
def account(mysql_server: MysqlServer) -> Iterator[dict]:
    """A database and a user with a password no other file on this machine holds."""
    suffix = uuid.uuid4().hex[:8]
    db, user, password = f"sec_{suffix}", f"sec_{suffix}", f"pw-{secrets.token_hex(12)}"
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB")
        cur.execute(f"INSERT INTO {db}.t SELECT seq, REPEAT('x', 100) FROM {db}.seq_1_to_2000")
        cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
        cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'127.0.0.1'")
    yield {
        "host": mysql_server.host,
        "port": mysql_server.port,
        "user": user,
        "db": db,
        "password": password,
    }
    with mysql_server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        cur.execute(f"DROP DATABASE IF EXISTS {db}")
        cur.execute(f"DROP DATABASE IF EXISTS {db}_r")


def make_store(account: dict, **kw) -> MysqlStore:
    config = MysqlConfig(
        **{
            "name": "ledger-my",
            "host": account["host"],
            "port": account["port"],
            "user": account["user"],
            "password": SecretRef(env="PP_TEST_MY_PASSWORD"),
            "databases": [account["db"]],
            **kw,
        }
    )
    return MysqlStore(config, SecretResolver(environ={"PP_TEST_MY_PASSWORD": account["password"]}))


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch) -> Path:
    """tempfile.gettempdir() of this test: a directory nothing else writes to."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    assert tempfile.gettempdir() == str(directory)
    return directory


def test_no_tool_run_puts_the_password_in_the_temp_dir(account, temp_dir, tmp_path, monkeypatch):
    """Looked at the moment each tool starts (a kill then would leave what is there)."""
    seen: dict[str, list[Path]] = {}
    started = ToolProcess

    def watching(argv, **kw):
        seen[f"{len(seen)}:{Path(argv[0]).name}"] = files_holding(temp_dir, account["password"])
        return started(argv, **kw)

    # The dumps start in mysql.dump, the client in mysql.restore.
    monkeypatch.setattr(mysql_dump, "ToolProcess", watching)
    monkeypatch.setattr(mysql_restore, "ToolProcess", watching)
    store = make_store(account)
    capture = store.finish_capture(store.open_capture(tmp_path / "cap"))
    target = make_store(account, database_map={account["db"]: f"{account['db']}_r"})
    target.restore(capture, tmp_path / "cap", replace=False)
    assert target.fingerprint() == capture.fingerprint
    assert [k.split(":")[1] for k in seen] == ["mariadb-dump", "mariadb", "mariadb-dump"]
    assert seen == {k: [] for k in seen}
    assert files_holding(temp_dir, account["password"]) == []
    assert files_holding(tmp_path / "cap", account["password"]) == []


def test_a_failed_open_leaves_no_password_file(account, temp_dir, tmp_path):
    store = make_store(account, databases=[f"missing_{uuid.uuid4().hex[:8]}"])
    with pytest.raises(CaptureError, match="failed before its snapshot opened"):
        store.open_capture(tmp_path / "cap", store.prepare_capture(tmp_path / "cap"))
    assert files_holding(temp_dir, account["password"]) == []


CAPTURING = """
import sys, time
from pathlib import Path
from pausepoint.secrets import SecretRef, SecretResolver
from pausepoint.stores.mysql import MysqlStore
from pausepoint.stores.mysql_config import MysqlConfig

host, port, user, db, workdir, how = sys.argv[1:]
store = MysqlStore(
    MysqlConfig(name="ledger-my", host=host, port=int(port), user=user,
                password=SecretRef(env="PP_TEST_MY_PASSWORD"), databases=[db]),
    SecretResolver(),
)
handle = store.open_capture(Path(workdir), store.prepare_capture(Path(workdir)))
print(handle.dump.pid, flush=True)
if how == "fail":
    raise RuntimeError("the run failed between opening and finishing its capture")
time.sleep(600)
"""


@pytest.mark.parametrize("how", ["fail", "sigterm", "sigkill"])
def test_a_capturing_process_that_dies_leaves_no_password_file(account, tmp_path, how):
    """The process doing a capture ends without releasing it: an uncaught error, a SIGTERM
    (Prefect cancelling a run) or a SIGKILL. Nothing that holds the password may stay."""
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(temp_dir),  # the child's tempfile.gettempdir()
        "PYTHONPATH": str(ROOT),
        "PP_TEST_MY_PASSWORD": account["password"],
    }
    argv = [sys.executable, "-c", CAPTURING]
    argv += [account["host"], str(account["port"]), account["user"], account["db"]]
    argv += [str(tmp_path / "cap"), how]
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dump_pid = None
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip().isdigit(), child.stderr.read().decode() if child.stderr else line
        dump_pid = int(line)
        if how != "fail":
            child.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        child.wait(timeout=60)
        assert child.returncode != 0
        assert files_holding(temp_dir, account["password"]) == []
        assert files_holding(tmp_path / "cap", account["password"]) == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if dump_pid is not None:  # the dump the child started (own session): ours to end
            with contextlib.suppress(ProcessLookupError):
                os.kill(dump_pid, signal.SIGKILL)


def test_the_option_file_is_private_and_named_by_descriptor(account, tmp_path):
    prepared = make_store(account).prepare_capture(tmp_path / "cap")
    try:
        fd = prepared.options.fd
        assert os.fstat(fd).st_mode & 0o777 == 0o600  # MariaDB ignores a world-writable one
        assert prepared.argv[1] == f"--defaults-extra-file=/dev/fd/{fd}"
        assert account["password"] not in " ".join(prepared.argv)
    finally:
        prepared.release()
    assert prepared.options.closed
