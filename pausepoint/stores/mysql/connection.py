"""How the MySQL/MariaDB kind reaches a server: PyMySQL's connection (one TLS context for every
connect), and the command-line tools' connection arguments with their option file, which holds
the user and the password in memory (``SecretFile``: a 0600 memfd the tool inherits), never in
argv and never in a file on disk.
"""

from __future__ import annotations

import ssl
from typing import ClassVar

import pymysql

from pausepoint.stores._common import SecretFile

CLIENT_PACKAGE = "mariadb-client"


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def option_file(user: str, password: str | None) -> str:
    """A [client] option file with the password double-quoted: inside quotes the option
    parser reads backslash escapes, and an unescaped quote would end the value early (a ``#``
    after it would start a comment), so backslashes, quotes and line breaks are escaped.
    Checked against mariadb 10.11 with passwords like ``a"b#c`` and ``x\\y``."""
    lines = ["[client]", f"user={user}"]
    if password is not None:
        escaped = (
            password.replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
        lines.append(f'password="{escaped}"')
    return "\n".join(lines) + "\n"


def client_options(user: str, password: str | None) -> SecretFile:
    """The tools' option file (user and password), in memory. Start the tool with
    ``pass_fds=[options.fd]`` and close it after."""
    return SecretFile(option_file(user, password), "pausepoint-client.cnf")


def tool_args(host: str, port: int, options: SecretFile) -> list[str]:
    """A tool's connection arguments. --defaults-extra-file must come first; it carries the user
    and the password."""
    return [
        f"--defaults-extra-file={options.path}",
        f"--host={host}",
        f"--port={port}",
        "--protocol=TCP",
    ]


class Connection(pymysql.connections.Connection):
    """PyMySQL's connection, minus one cost: without TLS options it uses TLS when the server
    offers it (PREFERRED, no certificate check) and builds a new SSL context for that on every
    connect, loading the system's CA certificates: 17 ms of the 18 ms a connect took on the test
    machine. That context is the same every time, so it is built once. open_capture connects
    inside the pause window, and a 10 MB dump takes ~80 ms."""

    _preferred: ClassVar[ssl.SSLContext | None] = None

    def _create_ssl_ctx(self, sslp, *args, **kwargs):
        if sslp != {}:  # explicit TLS options: as PyMySQL does
            return super()._create_ssl_ctx(sslp, *args, **kwargs)
        if Connection._preferred is None:
            Connection._preferred = super()._create_ssl_ctx(sslp, *args, **kwargs)
        return Connection._preferred
