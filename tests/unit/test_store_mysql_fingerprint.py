"""The MySQL store's fingerprint, read from a dump as it streams: rows, hashes, both methods,
and the C row sums against the Python ones."""

from __future__ import annotations

import hashlib
import os

import pytest
import xxhash

from pausepoint.errors import DumpFormatError
from pausepoint.stores import rowsum
from pausepoint.stores.mysql.fingerprint import (
    FINGERPRINT,
    FINGERPRINT_SHA256,
    DumpFingerprint,
    _split_rows,
)


@pytest.fixture(autouse=True, params=["native", "python"])
def row_sums(request, monkeypatch):
    """Every test here runs with the C row sums (rowsum, when built) and without them: the two
    paths must give the same fingerprints."""
    if request.param == "python":
        monkeypatch.setattr(rowsum, "_sum_lines", None)
    elif not rowsum.available():
        pytest.skip(f"{rowsum.LIBRARY.name} is not built (make builds it)")
    return request.param


def test_the_c_row_sums_are_built_where_make_ran():
    """make test builds them; without them captures of short rows cost a quarter more CPU."""
    if not os.environ.get("CI"):
        pytest.skip("checked in CI, where make test has built them")
    # Loaded afresh: the row_sums fixture hides it from the Python variant of each test.
    assert rowsum._load() is not None, (
        f"{rowsum.LIBRARY} is missing: run make (needs cc, libxxhash-dev)"
    )


def test_c_row_sums_equal_the_python_ones(row_sums):
    if row_sums == "python":
        pytest.skip("compares the C sums with the Python ones")
    rows = [b"(%d,'x%s')," % (i, b"y" * (i % 300)) for i in range(2000)] + [b"", b"(\\n),"]
    buf = b"junk\n" + b"\n".join(rows) + b"\ntail"
    start, end = 5, 5 + len(b"\n".join(rows)) + 1
    expected = sum(xxhash.xxh3_64(r).intdigest() for r in rows) % (1 << 64), len(rows)
    assert rowsum.sum_lines_xxh3(buf, start, end) == expected
    assert rowsum.sum_lines_xxh3(buf, start, start) == (0, 0)


HEAD = (
    b"/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19\n--\n"
    b"-- Current Database: `a`\n--\n\n"
    b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `a`;\n\nUSE `a`;\n\n"
)


def section(table: bytes, *statements: bytes) -> bytes:
    """A table's part of a MariaDB dump: structure, data section, a trigger."""
    return (
        b"--\n-- Table structure for table `" + table + b"`\n--\n\n"
        b"CREATE TABLE `" + table + b"` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB;\n\n"
        b"--\n-- Dumping data for table `" + table + b"`\n--\n\n"
        b"LOCK TABLES `" + table + b"` WRITE;\n" + b"".join(statements) + b"UNLOCK TABLES;\n"
        b"DELIMITER ;;\n/*!50003 CREATE*/ /*!50003 TRIGGER `tr` AFTER INSERT ON `" + table + b"`\n"
        b"FOR EACH ROW BEGIN\nINSERT INTO `log` VALUES\n(NEW.id);\nEND */;;\nDELIMITER ;\n"
    )


def mariadb_insert(table: bytes, rows: list[bytes]) -> bytes:
    """MariaDB 10.11: one row per line."""
    return b"INSERT INTO `" + table + b"` VALUES\n" + b",\n".join(rows) + b";\n"


def mysql_insert(table: bytes, rows: list[bytes]) -> bytes:
    """MySQL: a statement's rows on one line."""
    return b"INSERT INTO `" + table + b"` VALUES " + b",".join(rows) + b";\n"


ROWS = [
    b"(1,'plain',NULL)",
    b"(2,'',NULL)",  # '' is not NULL
    b"(3,'a),(b',0x00)",  # "),(" inside a value
    b"(4,'it\\'s \\\\',1.5)",  # escaped quote, escaped backslash before the closing quote
    b"(5,'x\\\\\\'),(y',-0)",  # backslash, then an escaped quote, then "),("
    b"(6,'line\\nbreak\\r\\Z\\0','\\xff\\xfe')",
]


def fingerprint_of(dump: bytes, chunk: int = 1 << 20, **kw):
    fp = DumpFingerprint(**kw)
    for i in range(0, len(dump), chunk):
        fp.feed(dump[i : i + chunk])
    return fp.result()


def test_dump_fingerprint_counts_rows_and_empty_tables():
    dump = HEAD + section(b"t", mariadb_insert(b"t", ROWS)) + section(b"empty")
    result = fingerprint_of(dump)
    assert set(result) == {"a.t", "a.empty"}  # not `log`: a trigger body is not a row
    assert result["a.t"].rows == len(ROWS)
    assert result["a.empty"].rows == 0
    assert result["a.t"].hash != result["a.empty"].hash == "0000000000000000"


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096])
def test_dump_fingerprint_is_the_same_whatever_the_blocks(chunk):
    dump = HEAD + section(b"t", mariadb_insert(b"t", ROWS[:3]), mariadb_insert(b"t", ROWS[3:]))
    assert fingerprint_of(dump, chunk) == fingerprint_of(dump)


def test_dump_fingerprint_ignores_row_order_statement_size_and_dump_style():
    one = fingerprint_of(HEAD + section(b"t", mariadb_insert(b"t", ROWS)))
    reordered = [ROWS[i] for i in (5, 2, 0, 4, 1, 3)]
    assert fingerprint_of(HEAD + section(b"t", mariadb_insert(b"t", reordered))) == one
    split = section(b"t", *(mariadb_insert(b"t", [r]) for r in reordered))
    assert fingerprint_of(HEAD + split) == one
    assert fingerprint_of(HEAD + section(b"t", mysql_insert(b"t", ROWS))) == one
    # With a column list, MariaDB writes the first row on the INSERT line.
    listed = b"INSERT INTO `t` (`id`, `v`, `w`) VALUES " + b",\n".join(ROWS) + b";\n"
    assert fingerprint_of(HEAD + section(b"t", listed)) == one


@pytest.mark.parametrize(
    "rows",
    [
        [*ROWS[:1], b"(1,'plain','')", *ROWS[2:]],  # NULL -> ''
        [b"(2,'plain',NULL)", b"(1,'',NULL)", *ROWS[2:]],  # two rows trade their ids
        [*ROWS[:5], b"(6,'line\\nbreak\\r\\Z\\0','\\xff\\xfd')"],  # one changed byte
        [*ROWS, b"(7,NULL,NULL)"],  # an extra row
        ROWS[1:],  # a missing row
        [*ROWS, ROWS[0]],  # a duplicated row
    ],
)
def test_dump_fingerprint_sees_every_difference(rows):
    one = fingerprint_of(HEAD + section(b"t", mariadb_insert(b"t", ROWS)))["a.t"]
    assert fingerprint_of(HEAD + section(b"t", mariadb_insert(b"t", rows)))["a.t"] != one


def test_dump_fingerprint_keys_use_the_mapped_database_names():
    dump = HEAD.replace(b"`a`", b"`a_copy`") + section(b"we``ird", mariadb_insert(b"we``ird", ROWS))
    assert set(fingerprint_of(dump, databases={"a_copy": "a"})) == {"a.we`ird"}


def test_dump_fingerprint_of_a_truncated_dump_is_refused():
    dump = HEAD + section(b"t", mariadb_insert(b"t", ROWS))
    with pytest.raises(DumpFormatError, match="ended inside"):
        fingerprint_of(dump[: dump.index(b"(4,")])
    with pytest.raises(DumpFormatError, match="unbalanced quote"):
        fingerprint_of(HEAD + section(b"t", mysql_insert(b"t", [b"(1,'a),(b)"])))


@pytest.mark.parametrize(
    "rows",
    [
        ROWS[:2],  # no `),(` inside a value: split in one pass
        [ROWS[0], b"(9,'it\\'s',NULL)"],  # escaped quotes, still even per row
        ROWS,  # `),(` inside values: split outside quotes only
        [b"(1,'a),(b),(c')"],  # one row whose value holds `),(` twice
    ],
)
def test_split_rows_gives_each_row_with_its_comma(rows):
    assert _split_rows(b",".join(rows) + b",") == [r + b"," for r in rows]


def test_dump_fingerprint_hashes_rows_by_the_method_it_is_given():
    """XXH3 by default; sha256 for points made before it, so that their restores still compare."""
    dump = HEAD + section(b"t", mariadb_insert(b"t", ROWS))
    texts = [r + b"," for r in ROWS]
    by_sha = sum(int.from_bytes(hashlib.sha256(t).digest()) for t in texts) % (1 << 64)
    by_xxh3 = sum(xxhash.xxh3_64(t).intdigest() for t in texts) % (1 << 64)
    assert fingerprint_of(dump)["a.t"].hash == f"{by_xxh3:016x}"
    assert fingerprint_of(dump, method=FINGERPRINT)["a.t"].hash == f"{by_xxh3:016x}"
    assert fingerprint_of(dump, method=FINGERPRINT_SHA256)["a.t"].hash == f"{by_sha:016x}"
