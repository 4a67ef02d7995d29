"""Test helpers for the AWS store kinds against moto's server (harness/moto_server.py).

- ``aws_settings(moto)``: the settings that point a store at moto (keys by reference);
- ``CallLog``: every AWS call a store's clients make, in order, with the parameters as the
  store gave them (botocore's ``before-parameter-build`` hook);
- ``move_time``: rewrite the restorable window a describe call answers (moto never advances
  DynamoDB's latest restorable time; a test moves it as AWS would);
- ``throttle``: answer the next N calls of an operation with a throttling error before they are
  sent (botocore's retries then see what AWS sends when it throttles);
- ``MemoryJournal`` / ``FileJournal``: a StoreJournal in memory or in a JSON file (the latter
  survives a SIGKILL of the restoring process).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness.moto_server import ACCESS_KEY, REGION, SECRET_KEY
from pausepoint.secrets import SecretResolver
from pausepoint.stores.base import StoreJournal

KEY_ENV, SECRET_ENV = "PP_TEST_AWS_KEY", "PP_TEST_AWS_SECRET"


def aws_settings(endpoint: str) -> dict[str, Any]:
    return {
        "region": REGION,
        "endpoint_url": endpoint,
        "credentials": {
            "source": "keys",
            "access_key_id": {"env": KEY_ENV},
            "secret_access_key": {"env": SECRET_ENV},
        },
        "poll_interval_s": 0.05,
        "wait_timeout_s": 60,
    }


def resolver(key: str = ACCESS_KEY, secret: str = SECRET_KEY) -> SecretResolver:
    return SecretResolver(environ={KEY_ENV: key, SECRET_ENV: secret})


class CallLog:
    """(service, operation, params) of every call, in the order the store made them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_name

        def record(model: Any, params: Any, **_: Any) -> None:
            with self._lock:
                self.calls.append((service, model.name, dict(params)))

        client.meta.events.register("before-parameter-build.*.*", record)

    def ops(self, *, table: str | None = None, mutating: bool = False) -> list[str]:
        """Operation names, optionally those naming ``table`` (any table parameter) or only
        those that change something."""
        out = []
        for _, op, params in self.calls:
            if mutating and op.startswith(("Describe", "List", "Scan", "Get", "Query")):
                continue
            if table is not None and table not in _tables_named(params):
                continue
            out.append(op)
        return out

    def params(self, op: str) -> list[dict[str, Any]]:
        return [p for _, o, p in self.calls if o == op]


def _tables_named(params: Mapping[str, Any]) -> set[str]:
    # The tables a call changes or reads; a restore's source (SourceTableName) is only read.
    keys = ("TableName", "TargetTableName", "ResourceArn", "ResourceId")
    out = set()
    for k in keys:
        v = params.get(k)
        if isinstance(v, str):
            out.add(v.rsplit("table/", 1)[-1].split("/index/")[0])
    return out


def move_time(
    client: Any,
    earliest: Callable[[], datetime] | None = None,
    latest: Callable[[], datetime] | None = None,
) -> None:
    """DescribeContinuousBackups answers the window the test says (what AWS would answer at
    another moment)."""

    def rewrite(parsed: Any, **_: Any) -> None:
        desc = parsed.get("ContinuousBackupsDescription", {}).get(
            "PointInTimeRecoveryDescription", {}
        )
        if desc.get("PointInTimeRecoveryStatus") != "ENABLED":
            return
        if earliest is not None:
            desc["EarliestRestorableDateTime"] = earliest()
        if latest is not None:
            desc["LatestRestorableDateTime"] = latest()

    client.meta.events.register("after-call.dynamodb.DescribeContinuousBackups", rewrite)


def now_minus(seconds: float) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) - timedelta(seconds=seconds)


def throttle(
    client: Any, operation: str, times: int, code: str = "ThrottlingException"
) -> list[int]:
    """The next ``times`` requests of ``operation`` are answered with HTTP 400 ``code``
    without reaching the endpoint; returns a list that grows by one per request seen."""
    from botocore.awsrequest import AWSResponse

    seen: list[int] = []
    lock = threading.Lock()
    body = json.dumps(
        {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "Rate exceeded"}
    )

    class _Raw:
        def __init__(self, data: bytes):
            self._data = data

        def stream(self, **_: Any):
            yield self._data

    def answer(request: Any, **_: Any) -> Any:
        with lock:
            seen.append(1)
            if len(seen) > times:
                return None
        return AWSResponse(
            request.url,
            400,
            {"x-amzn-requestid": "throttled", "content-type": "application/x-amz-json-1.0"},
            _Raw(body.encode()),
        )

    service = client.meta.service_model.service_name
    client.meta.events.register(f"before-send.{service}.{operation}", answer)
    return seen


class MemoryJournal(StoreJournal):
    def __init__(self) -> None:
        self._step: str | None = None
        self._data: dict[str, Any] = {}
        self.records = 0

    @property
    def step(self) -> str | None:
        return self._step

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._data))

    def record(self, step: str, data: Mapping[str, Any] | None = None) -> None:
        self._step, self._data = step, json.loads(json.dumps(dict(data or {})))
        self.records += 1


class FileJournal(StoreJournal):
    """A journal in a JSON file, replaced atomically on each record."""

    def __init__(self, path: Path):
        self.path = path

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    @property
    def step(self) -> str | None:
        return self._read().get("step")

    @property
    def data(self) -> dict[str, Any]:
        return self._read().get("data", {})

    def record(self, step: str, data: Mapping[str, Any] | None = None) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"step": step, "data": dict(data or {})}))
        tmp.replace(self.path)


def age_rds(client: Any, seconds: float = 3600) -> None:
    """RDS answers as for an instance/cluster created ``seconds`` ago whose latest restorable
    time is now (moto's sources are as old as the test)."""

    def rewrite(parsed: Any, **_: Any) -> None:
        now = datetime.now(UTC)
        for inst in parsed.get("DBInstances", []):
            inst["InstanceCreateTime"] = now - timedelta(seconds=seconds)
            inst["LatestRestorableTime"] = now
        for c in parsed.get("DBClusters", []):
            c["EarliestRestorableTime"] = now - timedelta(seconds=seconds)
            c["LatestRestorableTime"] = now

    client.meta.events.register("after-call.rds.DescribeDBInstances", rewrite)
    client.meta.events.register("after-call.rds.DescribeDBClusters", rewrite)
