"""The MySQL/MariaDB store kind, one module per job:

- ``store``: ``MysqlStore``, the store protocol's primitives;
- ``dump``: the dump tool's command line and the signal that its snapshot is open;
- ``fingerprint``: a dump's rows, counted and hashed per table (``DumpFingerprint``);
- ``restore``: the dump fed into the client tool, databases renamed on the way;
- ``connection``: PyMySQL's connection, the tools' arguments and option file in memory.

Tests that change a module's constants or helpers patch that module
(``dump.FALLBACK_AFTER_S``), not this package. Its site-file settings are
``pausepoint.stores.mysql_config`` (the registry imports them without loading this package).
"""

from __future__ import annotations

from pausepoint.stores.mysql.connection import option_file, quote_ident
from pausepoint.stores.mysql.dump import (
    POST_SNAPSHOT,
    DumpTalk,
    client_ports,
    host_port,
    is_post_snapshot,
)
from pausepoint.stores.mysql.fingerprint import FINGERPRINT, FINGERPRINT_SHA256, DumpFingerprint
from pausepoint.stores.mysql.restore import database_lines, rename_databases
from pausepoint.stores.mysql.store import MysqlCaptureHandle, MysqlPreparedCapture, MysqlStore
from pausepoint.stores.mysql_config import MysqlCaptureDetails, MysqlConfig

__all__ = [
    "FINGERPRINT",
    "FINGERPRINT_SHA256",
    "POST_SNAPSHOT",
    "DumpFingerprint",
    "DumpTalk",
    "MysqlCaptureDetails",
    "MysqlCaptureHandle",
    "MysqlConfig",
    "MysqlPreparedCapture",
    "MysqlStore",
    "client_ports",
    "database_lines",
    "host_port",
    "is_post_snapshot",
    "option_file",
    "quote_ident",
    "rename_databases",
]
