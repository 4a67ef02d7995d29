"""A small HTTPS server that speaks the parts of Azure Resource Manager (and of the Microsoft
identity platform's token endpoint) that the ``cosmos`` store calls, for the REAL
azure-mgmt-cosmosdb and azure-identity clients. Test support only; never shipped.

What it serves (paths and wire names as Azure documents them, api-version recorded):

- ``POST /{tenant}/oauth2/v2.0/token`` and the OpenID discovery document: a client-credentials
  grant; the client secret is checked against the one the test set (a wrong one gets 401
  ``invalid_client``, as Entra ID answers);
- ``GET|PUT|PATCH .../databaseAccounts/{name}``: accounts; a PUT with ``createMode: Restore``
  creates a restored account whose databases are the requested ones; PUT and PATCH answer 200
  with ``Azure-AsyncOperation`` and the operation is polled until it succeeds after
  ``lro_polls`` polls;
- ``HEAD /providers/Microsoft.DocumentDB/databaseAccountNames/{name}``: 200 taken / 404 free;
- ``GET .../locations/{loc}/restorableDatabaseAccounts``: the restorable accounts;
- ``GET .../sqlDatabases`` and ``.../sqlDatabases/{db}/containers``;
- ``POST .../containers/{c}/retrieveContinuousBackupInformation``: the latest restorable time.

Knobs: ``fail_next`` (status, code, message, retry_after) answers the next matching request with
an error (429 with Retry-After, 403, 409 ...); ``requests`` keeps every request (method, path,
query, JSON body) for field-by-field checks; ``latest_restorable`` sets the provider's latest
restorable time (the test moves time; a local endpoint cannot prove the real provider's lag).

What it cannot prove: that Azure's service accepts these bodies (only that they carry the
documented wire names and values), how long a real restore takes, that the restored account
holds the data as of the timestamp (there is no data plane here), RBAC decisions.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.tls import make_pki

ACCOUNT = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.DocumentDB/databaseAccounts/(?P<name>[^/]+)(?P<rest>/.*)?$"
)
RESTORABLE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.DocumentDB/locations/(?P<loc>[^/]+)/"
    r"restorableDatabaseAccounts(?:/(?P<id>[^/]+))?$"
)
NAME_EXISTS = re.compile(r"^/providers/Microsoft\.DocumentDB/databaseAccountNames/(?P<name>[^/]+)$")
OPERATION = re.compile(r"^/operations/(?P<id>[^/]+)$")
TOKEN = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$")
DISCOVERY = re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration$")


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


@dataclass
class Account:
    name: str
    resource_group: str
    location: str
    databases: dict[str, list[str]]  # database -> containers
    instance_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    backup: str = "Continuous"  # or "Periodic"
    consistency: str = "Session"
    provisioning: str = "Succeeded"
    create_body: dict | None = None  # the PUT that created it (restored accounts)

    def document_endpoint(self, host: str) -> str:
        return f"https://{self.name}.documents.{host}:443/"


@dataclass
class Failure:
    status: int
    code: str
    message: str
    match: str = ""  # a substring of "METHOD path"; empty: any request
    retry_after: int | None = None


class ArmState:
    def __init__(self, subscription: str, tenant: str, client_id: str, client_secret: str):
        self.subscription, self.tenant = subscription, tenant
        self.client_id, self.client_secret = client_id, client_secret
        self.accounts: dict[str, Account] = {}
        self.requests: list[Request] = []
        self.failures: list[Failure] = []
        self.operations: dict[str, tuple[str, int]] = {}  # id -> (account, polls left)
        self.lro_polls = 2
        self.latest_restorable: datetime | None = None  # None: now
        self.tokens: set[str] = set()
        self.lock = threading.Lock()

    def add_account(self, name: str, resource_group: str, location: str, **kw: Any) -> Account:
        acc = Account(name=name, resource_group=resource_group, location=location, **kw)
        self.accounts[name] = acc
        return acc

    def fail_next(self, status: int, code: str, message: str, match: str = "", **kw: Any) -> None:
        self.failures.append(Failure(status, code, message, match, **kw))

    def calls(self, method: str | None = None, contains: str = "") -> list[Request]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and contains in r.path
        ]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet: the tests read ``requests``
        pass

    # --- plumbing ------------------------------------------------------------------------

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if raw:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)

    def _error(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        self._send(status, {"error": {"code": code, "message": message}}, headers)

    def _read(self) -> tuple[Any, bytes]:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        ctype = self.headers.get("Content-Type", "")
        if raw and "json" in ctype:
            return json.loads(raw), raw
        return (parse_qs(raw.decode()) if raw else None), raw

    def _handle(self) -> None:
        st = self.server.state
        url = urlsplit(self.path)
        body, _ = self._read()
        req = Request(self.command, url.path, parse_qs(url.query), body, dict(self.headers))
        with st.lock:
            st.requests.append(req)
            failure = next(
                (f for f in st.failures if f.match in f"{self.command} {url.path}"), None
            )
            if failure is not None:
                st.failures.remove(failure)
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else None
            return self._error(failure.status, failure.code, failure.message, headers)
        if m := DISCOVERY.match(url.path):
            return self._discovery(m["tenant"])
        if m := TOKEN.match(url.path):
            return self._token(m["tenant"], body or {})
        if not self._authorized():
            return self._error(401, "AuthenticationFailed", "missing or invalid bearer token")
        if "api-version" not in req.query:
            return self._error(400, "MissingApiVersionParameter", "api-version is required")
        for pattern, fn in (
            (OPERATION, self._operation),
            (NAME_EXISTS, self._name_exists),
            (RESTORABLE, self._restorable),
            (ACCOUNT, self._account),
        ):
            if m := pattern.match(url.path):
                return fn(m, body)
        return self._error(404, "NotFound", f"no route {self.command} {url.path}")

    do_GET = do_PUT = do_PATCH = do_POST = do_HEAD = do_DELETE = _handle

    # --- identity --------------------------------------------------------------------------

    def _base(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def _discovery(self, tenant: str) -> None:
        base = f"{self._base()}/{tenant}"
        self._send(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            },
        )

    def _token(self, tenant: str, form: dict[str, list[str]]) -> None:
        st = self.server.state
        get = lambda k: (form.get(k) or [""])[0]  # noqa: E731
        if (
            tenant != st.tenant
            or get("client_id") != st.client_id
            or get("client_secret") != st.client_secret
        ):
            return self._send(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
            )
        token = uuid.uuid4().hex
        with st.lock:
            st.tokens.add(token)
        self._send(
            200,
            {
                "token_type": "Bearer",
                "expires_in": 3600,
                "ext_expires_in": 3600,
                "access_token": token,
            },
        )

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.server.state.tokens

    # --- resources ---------------------------------------------------------------------------

    def _account_json(self, acc: Account) -> dict:
        st = self.server.state
        return {
            "id": (
                f"/subscriptions/{st.subscription}/resourceGroups/{acc.resource_group}/providers/"
                f"Microsoft.DocumentDB/databaseAccounts/{acc.name}"
            ),
            "name": acc.name,
            "location": acc.location,
            "type": "Microsoft.DocumentDB/databaseAccounts",
            "kind": "GlobalDocumentDB",
            "properties": {
                "provisioningState": acc.provisioning,
                "documentEndpoint": acc.document_endpoint("azure.example"),
                "instanceId": acc.instance_id,
                "databaseAccountOfferType": "Standard",
                "backupPolicy": {"type": acc.backup},
                "consistencyPolicy": {"defaultConsistencyLevel": acc.consistency},
                "locations": [{"locationName": acc.location, "failoverPriority": 0}],
            },
        }

    def _lro(self, acc: Account, status: int = 200) -> None:
        st = self.server.state
        op = uuid.uuid4().hex
        with st.lock:
            st.operations[op] = (acc.name, st.lro_polls)
        headers = {"Azure-AsyncOperation": f"{self._base()}/operations/{op}?api-version=x"}
        self._send(status, self._account_json(acc), headers)

    def _operation(self, m: re.Match, body: Any) -> None:
        st = self.server.state
        with st.lock:
            name, left = st.operations[m["id"]]
            st.operations[m["id"]] = (name, left - 1)
            acc = st.accounts[name]
            if left <= 1:
                acc.provisioning = "Succeeded"
        self._send(200, {"status": "Succeeded" if left <= 1 else "InProgress"})

    def _name_exists(self, m: re.Match, body: Any) -> None:
        self._send(200 if m["name"] in self.server.state.accounts else 404)

    def _restorable(self, m: re.Match, body: Any) -> None:
        st = self.server.state
        items = []
        for acc in st.accounts.values():
            if acc.location != m["loc"] or acc.backup != "Continuous":
                continue
            items.append(
                {
                    "id": (
                        f"/subscriptions/{st.subscription}/providers/Microsoft.DocumentDB/"
                        f"locations/{acc.location}/restorableDatabaseAccounts/{acc.instance_id}"
                    ),
                    "name": acc.instance_id,
                    "type": "Microsoft.DocumentDB/locations/restorableDatabaseAccounts",
                    "location": acc.location,
                    "properties": {
                        "accountName": acc.name,
                        "creationTime": iso(acc.created),
                        "oldestRestorableTime": iso(acc.created),
                        "apiType": "Sql",
                    },
                }
            )
        if m["id"]:
            found = [i for i in items if i["name"] == m["id"]]
            return self._send(200, found[0]) if found else self._error(404, "NotFound", "gone")
        self._send(200, {"value": items})

    def _account(self, m: re.Match, body: Any) -> None:
        st = self.server.state
        name, rest = m["name"], m["rest"] or ""
        acc = st.accounts.get(name)
        if rest == "":
            if self.command == "GET":
                if acc is None:
                    return self._error(404, "ResourceNotFound", f"account {name} not found")
                return self._send(200, self._account_json(acc))
            if self.command == "PUT":
                return self._create(m, body)
            if self.command == "PATCH":
                if acc is None:
                    return self._error(404, "ResourceNotFound", f"account {name} not found")
                props = (body or {}).get("properties", {})
                level = props.get("consistencyPolicy", {}).get("defaultConsistencyLevel")
                if level:
                    acc.consistency = level
                acc.provisioning = "Updating"
                return self._lro(acc)
        if acc is None:
            return self._error(404, "ResourceNotFound", f"account {name} not found")
        if rest == "/sqlDatabases" and self.command == "GET":
            return self._send(
                200,
                {
                    "value": [
                        {"name": d, "properties": {"resource": {"id": d}}} for d in acc.databases
                    ]
                },
            )
        parts = rest.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "sqlDatabases" and parts[2] == "containers":
            containers = acc.databases.get(parts[1])
            if containers is None:
                return self._error(404, "NotFound", f"database {parts[1]} not found")
            return self._send(
                200,
                {"value": [{"name": c, "properties": {"resource": {"id": c}}} for c in containers]},
            )
        if len(parts) == 5 and parts[4] == "retrieveContinuousBackupInformation":
            latest = st.latest_restorable or datetime.now(UTC)
            return self._send(
                200, {"continuousBackupInformation": {"latestRestorableTimestamp": iso(latest)}}
            )
        self._error(404, "NotFound", f"no route {self.command} {self.path}")

    def _create(self, m: re.Match, body: Any) -> None:
        st = self.server.state
        name = m["name"]
        if name in st.accounts:
            return self._error(409, "Conflict", f"account {name} exists")
        props = (body or {}).get("properties", {})
        if props.get("createMode") != "Restore":
            return self._error(400, "BadRequest", "this endpoint only creates restored accounts")
        params = props.get("restoreParameters") or {}
        source = params.get("restoreSource", "")
        src = next((a for a in st.accounts.values() if source.endswith("/" + a.instance_id)), None)
        if src is None:
            return self._error(
                404, "NotFound", f"restorable account {source} not found in this location"
            )
        wanted = params.get("databasesToRestore") or []
        dbs = {d["databaseName"]: list(d.get("collectionNames") or []) for d in wanted}
        acc = st.add_account(
            name,
            m["rg"],
            body.get("location", src.location),
            databases=dbs or {k: list(v) for k, v in src.databases.items()},
            provisioning="Creating",
            create_body=body,
        )
        acc.consistency = (props.get("consistencyPolicy") or {}).get(
            "defaultConsistencyLevel", "Session"
        )
        self._lro(acc)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ArmState


@dataclass
class ArmEndpoint:
    url: str
    ca_file: Path
    state: ArmState
    _server: _Server
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def start_arm(directory: Path, state: ArmState) -> ArmEndpoint:
    """Serve ``state`` over HTTPS on 127.0.0.1 (a fresh CA in ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = make_pki()
    ca, cert, key = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca.write_bytes(pki.ca_pem)
    cert.write_bytes(pki.server.cert_chain_pem)
    key.write_bytes(pki.server.private_key_pem)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="arm-endpoint", daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{server.server_address[1]}"
    time.sleep(0)  # the socket listens already: bound and listening in the constructor
    return ArmEndpoint(url, ca, state, server, thread)
