"""Two MySQL stores on one server, one user: each must wait for its OWN dump's snapshot.

Regression test: the snapshot signal once matched any new connection of the same user running a
post-snapshot statement, so store A could take store B's running dump for its own and return
before A's dump had even connected; a write after that point then landed in A's "consistent"
dump. A's dump is delayed here by a wrapper in ``bin_dir`` (a slow or busy host).
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from pydantic import TypeAdapter

from harness.servers import PASSWORD
from pausepoint.secrets import SecretResolver
from pausepoint.stores import StoreConfig, open_store

pytestmark = [pytest.mark.integration]
_n = itertools.count()


def test_open_capture_ignores_another_stores_dump_of_the_same_user(
    mysql_server, tmp_path, monkeypatch
):
    n = next(_n)
    a_db, b_db = f"race{n}_a", f"race{n}_b"
    with mysql_server.connect() as conn:
        cur = conn.cursor()
        for db in (a_db, b_db):
            cur.execute(f"CREATE DATABASE {db}")
            cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY) ENGINE=InnoDB")
            cur.execute(f"INSERT INTO {db}.t VALUES (1)")
        # B's dump runs long enough to be seen in the process list while A waits.
        cur.execute(f"CREATE TABLE {b_db}.big (id BIGINT PRIMARY KEY, v TEXT) ENGINE=InnoDB")
        cur.execute(
            f"INSERT INTO {b_db}.big SELECT seq, REPEAT('x', 500) FROM {b_db}.seq_1_to_100000"
        )

    slow = tmp_path / "slowbin"
    slow.mkdir()
    wrapper = slow / "mariadb-dump"
    wrapper.write_text(
        '#!/bin/sh\ncase "$*" in *--version*) ;; *) sleep 1;; esac\n'
        'exec /usr/bin/mariadb-dump "$@"\n'
    )
    wrapper.chmod(0o755)
    (slow / "mariadb").symlink_to("/usr/bin/mariadb")  # check() also wants the client
    monkeypatch.setenv("RACE_PW", PASSWORD)

    def store(name: str, db: str, **extra):
        cfg = {
            "kind": "mysql",
            "name": name,
            "host": mysql_server.host,
            "port": mysql_server.port,
            "user": mysql_server.user,
            "password": {"env": "RACE_PW"},
            "databases": [db],
            **extra,
        }
        return open_store(TypeAdapter(StoreConfig).validate_python(cfg), SecretResolver())

    a = store("a-store", a_db, bin_dir=str(slow))
    b = store("b-store", b_db)
    a.check()
    b.check()
    out: dict = {}

    def open_a():
        out["handle"] = a.open_capture(tmp_path / "a")
        out["returned"] = time.monotonic()

    started = time.monotonic()
    thread = threading.Thread(target=open_a)
    thread.start()
    time.sleep(0.05)
    hb = b.open_capture(tmp_path / "b")  # B's dump is now running its SELECTs
    thread.join(timeout=60)
    assert "handle" in out, "store A never established its snapshot"
    # A must have waited for its own (delayed) dump, not returned on B's signal.
    assert out["returned"] - started >= 0.9, out["handle"]
    with mysql_server.connect() as conn:
        conn.cursor().execute(f"INSERT INTO {a_db}.t VALUES (2)")  # after A's window closed
    cap_a = a.finish_capture(out["handle"])
    b.finish_capture(hb)
    dump = (tmp_path / "a" / cap_a.artifacts[0].path).read_text()
    assert "(1)" in dump and "(2)" not in dump
    assert cap_a.fingerprint[f"{a_db}.t"].rows == 1
