"""The MySQL store's pure helpers: the snapshot signal and the database renaming filter."""

from __future__ import annotations

import pytest

from pausepoint.stores.mysql import (
    database_lines,
    is_post_snapshot,
    option_file,
    rename_databases,
)

# What mariadb-dump 10.11 sends before its snapshot (general log), and FLUSHes of other modes.
BEFORE = [
    "/*!40100 SET @@SQL_MODE='' */",
    "/*!40103 SET TIME_ZONE='+00:00' */",
    "/*M!100100 SET @@MAX_STATEMENT_TIME=0.000000 */",
    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "START TRANSACTION /*!40100 WITH CONSISTENT SNAPSHOT */",
    "FLUSH /*!40101 LOCAL */ TABLES",
    "FLUSH TABLES WITH READ LOCK",
    None,
    "",
]
AFTER = [
    "UNLOCK TABLES",
    "SHOW CREATE DATABASE IF NOT EXISTS `a`",
    "SAVEPOINT sp",
    "show create table `t1`",
    "SELECT /*!40001 SQL_NO_CACHE */ `id`, `v` FROM `t1`",
    "ROLLBACK TO SAVEPOINT sp",
]


@pytest.mark.parametrize("statement", BEFORE)
def test_is_post_snapshot_statement_before_snapshot_is_false(statement):
    assert not is_post_snapshot(statement)


@pytest.mark.parametrize("statement", AFTER)
def test_is_post_snapshot_statement_after_snapshot_is_true(statement):
    assert is_post_snapshot(statement)


DUMP = (
    b"-- Current Database: `a`\n"
    b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `a` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\n"
    b"\nUSE `a`;\n"
    b"INSERT INTO `t` VALUES\n(1,'USE `a`;\\nCREATE DATABASE /*!32312 IF NOT EXISTS*/ `a`'),\n"
    b"(2,NULL);\n"
    b"USE `b`;\n"
    b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `we``ird` ;\nUSE `we``ird`;\n"
)


@pytest.mark.parametrize("size", [1, 7, 64, 10_000])
def test_rename_databases_rewrites_only_database_lines_across_chunks(size):
    chunks = [DUMP[i : i + size] for i in range(0, len(DUMP), size)]
    out = b"".join(rename_databases(chunks, {"a": "a_copy", "we`ird": "plain"}))
    assert out == (
        b"-- Current Database: `a`\n"
        b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `a_copy` /*!40100 DEFAULT CHARACTER SET "
        b"utf8mb4 */;\n"
        b"\nUSE `a_copy`;\n"
        b"INSERT INTO `t` VALUES\n(1,'USE `a`;\\nCREATE DATABASE /*!32312 IF NOT EXISTS*/ `a`'),\n"
        b"(2,NULL);\n"
        b"USE `b`;\n"
        b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `plain` ;\nUSE `plain`;\n"
    )


def apply(dump: bytes, edits) -> bytes:
    out, pos = [], 0
    for start, end, text in edits:
        out += [dump[pos:start], text]
        pos = end
    return b"".join([*out, dump[pos:]])


@pytest.mark.parametrize("dump", [DUMP, DUMP.rstrip(b"\n"), b"USE `a`;\n" + DUMP])
def test_database_lines_edit_a_whole_dump_like_rename_databases_does(dump):
    mapping = {"a": "a_copy", "we`ird": "plain"}
    edits = database_lines(dump, mapping)
    assert apply(dump, edits) == b"".join(rename_databases([dump], mapping))
    lines = zip(dump.split(b"\n"), apply(dump, edits).split(b"\n"), strict=True)
    changed = [a for a, b in lines if a != b]
    assert len(edits) == len(changed) and all(c.startswith((b"USE", b"CREATE")) for c in changed)
    assert database_lines(dump, {}) == []


def test_rename_databases_without_mapping_passes_the_stream_through():
    assert b"".join(rename_databases([DUMP[:10], DUMP[10:]], {})) == DUMP


def test_option_file_escapes_the_password():
    text = option_file("app", 'p"a\\ss\nword')
    assert text == '[client]\nuser=app\npassword="p\\"a\\\\ss\\nword"\n'
