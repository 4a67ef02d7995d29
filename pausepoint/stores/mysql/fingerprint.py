"""The fingerprint of a MySQL/MariaDB dump: its rows, split out of the dump text as it streams,
counted and summed per table (64-bit XXH3 per row; the C sums of ``stores/rowsum.py`` when
``make`` built them).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from itertools import repeat

from pausepoint.errors import DumpFormatError
from pausepoint.stores import rowsum
from pausepoint.stores._common import fold_row_hashes, sum_row_hashes
from pausepoint.stores.base import Fingerprint, TableFingerprint

# A table's rows are the `INSERT INTO `t` [(columns)] VALUES ...;` statements that follow its
# `-- Dumping data for table `t`` line. The dump escapes line breaks inside values (\n, \r), so
# a raw line break never falls inside a row. MariaDB's dump writes one row per line, `(1,'a'),`,
# the statement's last one ending in `);` (when the INSERT lists columns, its first row is on
# the INSERT line); MySQL's mysqldump writes all rows of a statement on its one line,
# `(1,'a'),(2,'b');`, split here at the `),(` that are outside quoted values. A row's hash is
# the 64-bit XXH3 of its text as the dump writes it, `(...)` plus `,` (the last row of a
# statement gets the comma it lacks): the dump renders every value (NULL unquoted, strings
# quoted and escaped), so the text is NULL-safe and unambiguous. Rows are summed
# (order-independent), see rowsum.sum_row_xxh3. Points made before it hashed rows with sha256
# (FINGERPRINT_SHA256); a restore of such a point is still compared, with that hash.
#
# Why from the dump rather than SQL on the server (the previous way): it is the captured
# snapshot itself, with no second snapshot to align, and it costs less. Measured on the test
# MariaDB 10.11 (2 cores; 1M rows of id, int, 1 KB text; CPU of a 1 GB dump): mariadb-dump
# 6-7.5 s and its server thread 1-2 s; SUM(MD5(CONCAT_WS(',', QUOTE(col), ...))) in a second
# scan 5.0 s of server CPU; reading the rows out of the stream here ~1.9 s of Python CPU with
# sha256 (split 0.5, sha256 1.1), ~0.8 s with XXH3, in the thread that already copies the stream.
# XXH3 replaced sha256 because a short row (a ScalarDL asset record, a bank transfer) cost 0.36 us
# to hash: 100k of them made a 10 MB capture a quarter slower than the raw dump (BENCHMARKS.md).
FINGERPRINT = "mysql-dump-rows-xxh3-v2"
FINGERPRINT_SHA256 = "mysql-dump-rows-sha256-v1"
_ROW_SUMS: dict[str, Callable[[Iterable[bytes]], int]] = {
    FINGERPRINT: rowsum.sum_row_xxh3,
    FINGERPRINT_SHA256: sum_row_hashes,
}

_DUMP_LINE = re.compile(
    rb"^(?:USE `(?P<database>(?:[^`\n]|``)+)`;$"
    rb"|-- Dumping data for table `(?P<data>(?:[^`\n]|``)+)`$"
    rb"|(?P<delimiter>DELIMITER )"
    rb"|INSERT INTO `(?P<insert>(?:[^`\n]|``)+)`(?: \([^\n]*?\))? VALUES(?P<inline> )?\n?)",
    re.MULTILINE,
)
_ESCAPE = re.compile(rb"\\.", re.DOTALL)


def _unquote(name: bytes) -> str:
    return name.replace(b"``", b"`").decode("utf-8", "surrogateescape")


def _quotes(text: bytes) -> int:
    """Quote characters in ``text`` that are not escaped by a backslash."""
    return (_ESCAPE.sub(b"", text) if b"\\" in text else text).count(b"'")


def _split_rows(line: bytes) -> list[bytes]:
    """`(r1),(r2),...,(rn),` as rows `(r1),` ... Splits at `),(` outside quoted values only."""
    # First every `),(` (in C, no Python per row): right when no row has an odd number of
    # quotes, which a `),(` inside a quoted value would leave on both sides of it.
    rows = line.replace(b"),(", b"),\n(").split(b"\n")
    texts = map(_ESCAPE.sub, repeat(b""), rows) if b"\\" in line else rows
    if not any(map(operator.and_, map(bytes.count, texts, repeat(b"'")), repeat(1))):
        return rows
    rows = []
    part = b""
    for piece in line[1:-2].split(b"),("):
        part = part + b"),(" + piece if part else piece
        if _quotes(part) % 2 == 0:
            rows.append(b"(" + part + b"),")
            part = b""
    if part:
        raise DumpFormatError(f"a row of the dump has an unbalanced quote: {line[:80]!r}...")
    return rows


def _line_end_semicolon(buf: bytes, pos: int, end: int) -> int:
    """Where the first line in buf[pos:end] that ends in `;` has it, or -1. Looks for `;` and
    then checks the next byte: a search for the two bytes `;\n` reads 1 GB in 0.74 s, memchr
    for `;` in 0.03 s."""
    i = buf.find(b";", pos, end)
    while i >= 0 and buf[i + 1] != 0x0A:  # buf[end - 1] is a line break: i + 1 < end
        i = buf.find(b";", i + 1, end)
    return i


class DumpFingerprint:
    """Per table, the row count and the row-hash sum of a dump, fed as it streams (``feed``).

    ``databases`` maps a database name as the dump writes it to the name the fingerprint keys
    use (a restore target's database back to the captured one). ``method`` picks the row hash
    (FINGERPRINT, or an earlier one that a point to compare was made with).
    """

    def __init__(self, databases: Mapping[str, str] | None = None, method: str = FINGERPRINT):
        self._names = dict(databases or {})
        self._sum = _ROW_SUMS[method]
        self._native = method == FINGERPRINT and rowsum.available()
        self._tables: dict[str, list[int]] = {}  # "db.table" -> [rows, sum]
        self._rest = b""  # an incomplete last line, kept for the next block
        self._database = ""
        self._data_of: str | None = None  # the table whose data section this is
        self._open: list[int] | None = None  # an INSERT whose rows, one per line, go on

    def feed(self, data: bytes) -> None:
        buf = self._rest + data if self._rest else data
        end = buf.rfind(b"\n") + 1
        self._rest = buf[end:]
        self._lines: list[bytes] | None = None  # buf split at line breaks, when rows need it
        pos = 0
        while pos < end:
            if self._open is not None:
                pos = self._row_lines(self._open, buf, pos, end)
                continue
            line = _DUMP_LINE.search(buf, pos, end)
            if line is None:
                break
            pos = line.end()
            if line["database"]:
                self._database = self._names.get(n := _unquote(line["database"]), n)
            elif line["data"]:
                self._data_of = f"{self._database}.{_unquote(line['data'])}"
                self._tables.setdefault(self._data_of, [0, 0])
            elif line["delimiter"]:
                self._data_of = None  # triggers follow: their bodies are not rows
            elif f"{self._database}.{_unquote(line['insert'])}" == self._data_of:
                table = self._tables[self._data_of]
                if not line["inline"]:
                    self._open = table
                    continue
                # Rows start on the INSERT line: all of them (the line ends the statement) or
                # the first one, the others following one per line.
                eol = buf.index(b"\n", pos, end)
                if buf[eol - 1] == 0x3B:  # ";"
                    self._add(table, _split_rows(buf[pos : eol - 1] + b","))
                else:
                    self._add(table, [buf[pos:eol]])
                    self._open = table
                pos = eol + 1

    def _row_lines(self, table: list[int], buf: bytes, pos: int, end: int) -> int:
        """Take the rows (one per line) of the open INSERT in buf[pos:end]; returns where
        reading goes on.

        The rows that end in `,` (every line up to `end`, or up to the statement's last line)
        are summed in C when it is built (rowsum), else as items of one split of the whole
        block, found by counting line breaks: a slice of the block per statement, then a split
        of it, cost twice the memory traffic (8 ms per 15 MB of short rows)."""
        stop = _line_end_semicolon(buf, pos, end)
        upto = end if stop < 0 else max(buf.rfind(b"\n", pos, stop) + 1, pos)
        if self._native:
            total, count = rowsum.sum_lines_xxh3(buf, pos, upto)
            table[0] += count
            table[1] += total
        elif pos < upto:
            if self._lines is None:
                self._lines = buf.split(b"\n")
            first = buf.count(b"\n", 0, pos)
            self._add(table, self._lines[first : first + buf.count(b"\n", pos, upto)])
        if stop < 0:
            return end
        self._open = None
        self._add(table, [buf[upto:stop] + b","])  # the last row: `(...);` -> `(...),`
        return stop + 2

    def result(self) -> Fingerprint:
        if self._open is not None or self._rest.strip():
            raise DumpFormatError("the dump ended inside a table's data")
        return {
            key: TableFingerprint(rows=rows, hash=fold_row_hashes(total))
            for key, (rows, total) in sorted(self._tables.items())
        }

    def _add(self, table: list[int], rows: list[bytes]) -> None:
        table[0] += len(rows)
        table[1] += self._sum(rows)
