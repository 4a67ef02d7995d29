"""Contract adapters of the AWS kinds (``dynamodb``, ``rds``), on moto's server (session
fixture ``moto``). A place is a table prefix (DynamoDB: ScalarDB's tables ``<prefix><ns>.<t>``)
or a DB instance (RDS).

What a local endpoint cannot show is declared in ``lacks`` (the tests that need it skip with
the reason): moto restores the CURRENT items whatever the time, so no test here can tell the
point's state from the state at restore time (FACTS.md §8).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar

from harness.moto_server import REGION
from pausepoint.stores.base import StoreConfigBase
from pausepoint.stores.dynamodb.config import DynamoConfig
from pausepoint.stores.dynamodb.store import DynamoStore
from pausepoint.stores.rds.config import RdsConfig
from pausepoint.stores.rds.store import RdsStore
from tests.contract.adapters import ACCOUNTS, INITIAL, Place, StoreAdapter
from tests.support.aws import age_rds, aws_settings, move_time, now_minus, resolver

MOTO_COPIES_NOW = (
    "moto's server restores the items as they are at restore time, whatever the point, so "
    "the point's exact state cannot be shown on a local endpoint (FACTS.md §8)"
)
PITR_NO_FINGERPRINT = (
    "a point-in-time capture copies nothing: the data at the point cannot be read at capture "
    "time, so it records no fingerprint"
)
NO_TOOLS = "the kind drives a cloud API through boto3: no dump tools, no bin_dir"
NO_PASSWORD = (
    "AWS credentials, not a password (refused credentials: tests/integration/"
    "test_store_dynamodb.py::test_refused_credentials_are_named_without_the_secret)"
)
NO_CONNECTION = "a point-in-time capture holds no snapshot and no server connection"
NEW_TABLES_ONLY = (
    "DynamoDB restores only into a NEW table name: an existing target table, even empty, "
    "is replaced only with --replace"
)


def _item(**attrs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if v is None:
            out[k] = {"NULL": True}
        elif isinstance(v, bool):
            out[k] = {"BOOL": v}
        elif isinstance(v, int | Decimal):
            out[k] = {"N": str(v)}
        elif isinstance(v, bytes):
            out[k] = {"B": v}
        else:
            out[k] = {"S": v}
    return out


class AwsAdapter(StoreAdapter):
    server_fixture = "moto"
    dump_tool = ""
    tool_package = ""
    default_port = 0

    def _config(self, **settings: Any) -> StoreConfigBase:
        return self.config_model.model_validate(
            {
                "name": f"ledger-{self.kind}",
                "kind": self.kind,
                **aws_settings(self.server.endpoint),
                **settings,
            }
        )

    def connections(self) -> set[int]:
        return set()  # HTTP requests: nothing is held between calls

    @classmethod
    def moved_to(cls, database: str, other: str) -> dict:
        raise NotImplementedError

    @classmethod
    def other_servers(cls, database: str) -> dict[str, dict]:
        # A restore target cannot move an AWS store to another region or endpoint (refused
        # by the kind's retarget): only other names (moved_to) are elsewhere.
        return {}


# --- DynamoDB -----------------------------------------------------------------------------------

TYPED = [
    _item(
        id=1,
        note="a",
        label="x",
        bin=b"\x00\xff",
        flag=True,
        big=9007199254740993,
        amount=Decimal("1.5"),
    )
    | {
        "doc": {"M": {"k": {"L": [{"N": "1"}, {"N": "2"}]}}},
        "tags": {"SS": ["a", "b"]},
        "nums": {"NS": ["1", "2"]},
        "blobs": {"BS": [b"\x01"]},
        "lst": {"L": [{"S": "a"}, {"NULL": True}]},
    },
    _item(id=2, note="", label="", bin=b"", flag=False, big=0, amount=0)
    | {"doc": {"M": {}}, "lst": {"L": []}},
    _item(id=3, note=None),
]


def _update(key: int, expr: str, values: dict[str, Any]) -> Callable[[Any, str], None]:
    def change(ddb: Any, table: str) -> None:
        ddb.update_item(
            TableName=table,
            Key={"id": {"N": str(key)}},
            UpdateExpression=expr,
            ExpressionAttributeValues=values,
        )

    return change


DYNAMO_CHANGES: dict[str, tuple[str, Callable[[Any, str], None]]] = {
    "a string": ("typed", _update(1, "SET note = :v", {":v": {"S": "b"}})),
    "empty string to NULL": ("typed", _update(2, "SET note = :v", {":v": {"NULL": True}})),
    "NULL to empty string": ("typed", _update(3, "SET note = :v", {":v": {"S": ""}})),
    "a byte of binary": ("typed", _update(1, "SET bin = :v", {":v": {"B": b"\x00\xfe"}})),
    "a number": ("typed", _update(1, "SET amount = :v", {":v": {"N": "1.51"}})),
    "string to number": ("typed", _update(1, "SET label = :v", {":v": {"N": "1"}})),
    "a boolean": ("typed", _update(1, "SET flag = :v", {":v": {"BOOL": False}})),
    "a set element": ("typed", _update(1, "SET tags = :v", {":v": {"SS": ["a", "c"]}})),
    "a number set": ("typed", _update(1, "SET nums = :v", {":v": {"NS": ["1", "3"]}})),
    "list order": (
        "typed",
        _update(1, "SET lst = :v", {":v": {"L": [{"NULL": True}, {"S": "a"}]}}),
    ),
    "a nested map value": (
        "typed",
        _update(1, "SET doc = :v", {":v": {"M": {"k": {"L": [{"N": "1"}]}}}}),
    ),
    "rows trade a value": (
        "typed",
        lambda ddb, t: (
            _update(1, "SET big = :v", {":v": {"N": "0"}})(ddb, t),
            _update(2, "SET big = :v", {":v": {"N": "9007199254740993"}})(ddb, t),
        ),
    ),
    "an extra row": ("typed", lambda ddb, t: ddb.put_item(TableName=t, Item=_item(id=4))),
    "a missing row": ("typed", lambda ddb, t: ddb.delete_item(TableName=t, Key={"id": {"N": "2"}})),
    "a row in the empty table": (
        "nothing",
        lambda ddb, t: ddb.put_item(TableName=t, Item=_item(id=1)),
    ),
}


class DynamoAdapter(AwsAdapter):
    kind = "dynamodb"
    store_class = DynamoStore
    config_model = DynamoConfig
    changes = list(DYNAMO_CHANGES)
    lacks: ClassVar[dict[str, str]] = {
        "exact_point": MOTO_COPIES_NOW,
        "capture_fingerprint": PITR_NO_FINGERPRINT,
        "empty_target": NEW_TABLES_ONLY,
        "server_snapshot": NO_CONNECTION,
        "tools": NO_TOOLS,
        "password": NO_PASSWORD,
        "in_place_by_default": (
            "a DynamoDB restore goes side by side unless the target says in_place: true "
            "(the safer default: the restore never deletes the live tables unasked)"
        ),
    }

    @property
    def ddb(self) -> Any:
        return self.server.client("dynamodb")

    def _tables(self, prefix: str) -> list[str]:
        pages = self.ddb.get_paginator("list_tables").paginate()
        return [n for p in pages for n in p["TableNames"] if n.startswith(prefix)]

    def _create(self, name: str, key_type: str = "N", pitr: bool = True) -> None:
        self.ddb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": key_type}],
            BillingMode="PAY_PER_REQUEST",
        )
        if pitr:
            self.ddb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )

    def _put(self, table: str, items: list[dict[str, Any]]) -> None:
        for i in range(0, len(items), 25):
            self.ddb.batch_write_item(
                RequestItems={table: [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]}
            )

    def bank(self) -> Place:
        prefix = f"pp{uuid.uuid4().hex[:10]}_"
        account, transfer = f"{prefix}scalar.account", f"{prefix}coordinator.transfer"
        self._create(account)
        self._create(transfer, key_type="S")
        self._put(
            account,
            [
                _item(
                    id=i,
                    balance=INITIAL,
                    note=None if i % 3 == 0 else f"n{i}",
                    data=uuid.UUID(int=i).bytes,
                    ratio=Decimal(i) / 7,
                )
                for i in range(ACCOUNTS)
            ],
        )
        return Place((prefix,), account, transfer)

    def elsewhere(self, place: Place, tag: str) -> Place:
        prefix = f"{place.databases[0]}{tag}_"
        return Place(
            (prefix,),
            place.account.replace(place.databases[0], prefix, 1),
            place.transfer.replace(place.databases[0], prefix, 1) if place.transfer else "",
        )

    def exists(self, place: Place) -> bool:
        return bool(self._tables(place.databases[0]))

    def create_empty(self, place: Place) -> None:
        self._create(place.account)
        if place.transfer:
            self._create(place.transfer, key_type="S")

    def settings(self, place: Place) -> dict[str, Any]:
        return {
            "namespaces": ["scalar"],
            "coordinator_namespace": "coordinator" if place.transfer else None,
            "metadata_namespace": None,
            "table_prefix": place.databases[0],
            "in_place": True,  # the suite restores over live places with --replace
        }

    def target_settings(self, live: Place, target: Place) -> dict[str, Any]:
        return {"table_prefix": target.databases[0], "in_place": False}

    def store(self, config: StoreConfigBase, password: str | None = None) -> DynamoStore:
        store = DynamoStore(config, resolver())  # type: ignore[arg-type]
        # As AWS answers for tables with PITR on for an hour, caught up with now (moto's
        # window never moves: FACTS.md §8).
        move_time(store.aws.client("dynamodb"), earliest=now_minus(3600), latest=now_minus(0))
        return store

    def writer_connection(self, place: Place) -> Any:
        client = self.server.client("dynamodb")
        client.close = lambda: None  # the writer "closes" its connection
        return client

    def transfer(self, place: Place) -> Callable[[Any, int, int], None]:
        def transfer(ddb: Any, account: int, amount: int) -> None:
            ddb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": place.account,
                            "Key": {"id": {"N": str(account)}},
                            "UpdateExpression": "SET balance = balance - :a",
                            "ExpressionAttributeValues": {":a": {"N": str(amount)}},
                        }
                    },
                    {
                        "Put": {
                            "TableName": place.transfer,
                            "Item": _item(id=uuid.uuid4().hex, account=account, amount=amount),
                        }
                    },
                ]
            )

        return transfer

    def _scan(self, table: str) -> list[dict[str, Any]]:
        pages = self.ddb.get_paginator("scan").paginate(TableName=table)
        return [i for p in pages for i in p["Items"]]

    def invariant(self, place: Place) -> tuple[int, int]:
        balances = sum(int(i["balance"]["N"]) for i in self._scan(place.account))
        moved = self._scan(place.transfer)
        return balances + sum(int(i["amount"]["N"]) for i in moved), len(moved)

    def rows(self, place: Place) -> list[tuple]:
        accounts = sorted(
            (int(i["id"]["N"]), int(i["balance"]["N"])) for i in self._scan(place.account)
        )
        moved = sorted((i["id"]["S"], i["amount"]["N"]) for i in self._scan(place.transfer))
        return [*accounts, *moved]

    def bank_tables(self, place: Place) -> set[str]:
        return {"scalar.account", "coordinator.transfer"}

    def assert_capture_shape(self, capture: Any, settings: dict[str, Any]) -> None:
        assert capture.method == "dynamodb-pitr"
        assert [a.path for a in capture.artifacts] == ["pitr.json"]

    def assert_check_facts(self, facts: dict[str, Any], place: Place) -> None:
        assert facts["tables"] == 2  # account and transfer
        assert facts["restorable_from"] < facts["restorable_until"]

    def non_empty_words(self, place: Place) -> list[str]:
        return [place.account]

    def missing(self, place: Place) -> tuple[dict[str, Any], str]:
        return {"namespaces": ["scalar", "nope"]}, "nope"

    def add_large_table(self, place: Place) -> int:
        raise NotImplementedError  # only for tests that need "server_snapshot"

    def typed(self, change: str | None = None, reverse: bool = False) -> Place:
        prefix = f"ty{uuid.uuid4().hex[:10]}_"
        self._create(f"{prefix}scalar.typed")
        self._create(f"{prefix}scalar.nothing")
        self._put(f"{prefix}scalar.typed", TYPED[::-1] if reverse else TYPED)
        place = Place((prefix,))
        if change:
            self.apply_change(place, change)
        return place

    def apply_change(self, place: Place, change: str) -> None:
        table, fn = DYNAMO_CHANGES[change]
        fn(self.ddb, f"{place.databases[0]}scalar.{table}")

    def changed_table(self, change: str) -> str:
        return f"scalar.{DYNAMO_CHANGES[change][0]}"

    @staticmethod
    def relative(fingerprint: Any, place: Place) -> Any:
        return fingerprint  # keys are already without the prefix

    @classmethod
    def site_store(cls, name: str, database: str) -> dict:
        return {
            "kind": "dynamodb",
            "name": name,
            "region": REGION,
            "namespaces": ["scalar"],
            "table_prefix": f"{database}_",
        }

    @classmethod
    def spellings(cls, database: str) -> dict[str, dict]:
        return {
            "in place, as the target says": {"in_place": True},
            "the same prefix written out": {"table_prefix": f"{database}_", "in_place": True},
            "the same prefix in other case": {"table_prefix": f"{database.upper()}_"},
            "a setting that does not move it (parallel_tables: 1)": {
                "in_place": True,
                "parallel_tables": 1,
            },
        }

    @classmethod
    def moved_to(cls, database: str, other: str) -> dict:
        return {"table_prefix": f"{other}_"}


# --- RDS ----------------------------------------------------------------------------------------

NO_ENGINE = (
    "pausepoint drives RDS's control plane only and never connects to the engine: the restored "
    "data is checked by ScalarDB's checker or ledger validation, not by a fingerprint"
)


class RdsAdapter(AwsAdapter):
    kind = "rds"
    store_class = RdsStore
    config_model = RdsConfig
    changes: ClassVar[list[str]] = []
    lacks: ClassVar[dict[str, str]] = {
        "exact_point": MOTO_COPIES_NOW,
        "capture_fingerprint": PITR_NO_FINGERPRINT,
        "fingerprint": NO_ENGINE,
        "rows": NO_ENGINE,
        "empty_target": "an RDS restore creates a new instance; an existing one is never used",
        "server_snapshot": NO_CONNECTION,
        "tools": NO_TOOLS,
        "password": NO_PASSWORD,
        "in_place": "an RDS restore always creates a NEW instance or cluster (restore_as)",
        "in_place_by_default": "an RDS restore always creates a new instance (restore_as)",
    }

    @property
    def rds(self) -> Any:
        return self.server.client("rds")

    def bank(self) -> Place:
        place = Place((f"pp-{uuid.uuid4().hex[:10]}",))
        self.create_empty(place)
        return place

    def create_empty(self, place: Place) -> None:
        self.rds.create_db_instance(
            DBInstanceIdentifier=place.databases[0],
            Engine="postgres",
            DBInstanceClass="db.t3.micro",
            MasterUsername="scalar",
            MasterUserPassword="not-used-by-pausepoint-1",
            AllocatedStorage=20,
            BackupRetentionPeriod=7,
        )

    def elsewhere(self, place: Place, tag: str) -> Place:
        return Place((f"{place.databases[0]}-{tag}",))

    def exists(self, place: Place) -> bool:
        return bool(self.rows(place))

    def rows(self, place: Place) -> list[tuple]:
        """What the control plane shows of an instance (engine, class); nothing when absent."""
        found = self.rds.describe_db_instances()["DBInstances"]
        return [
            (i["Engine"], i["DBInstanceClass"])
            for i in found
            if i["DBInstanceIdentifier"] == place.databases[0]
        ]

    def settings(self, place: Place) -> dict[str, Any]:
        return {"instance": place.databases[0]}

    def target_settings(self, live: Place, target: Place) -> dict[str, Any]:
        return {"restore_as": target.databases[0]}

    def store(self, config: StoreConfigBase, password: str | None = None) -> RdsStore:
        store = RdsStore(config, resolver())  # type: ignore[arg-type]
        age_rds(store.aws.client("rds"))  # as for an instance an hour old (moto's are new)
        return store

    def assert_capture_shape(self, capture: Any, settings: dict[str, Any]) -> None:
        assert capture.method == "rds-pitr"
        assert [a.path for a in capture.artifacts] == ["pitr.json"]
        assert capture.details.engine == "postgres"

    def assert_check_facts(self, facts: dict[str, Any], place: Place) -> None:
        assert facts["server_version"].startswith("postgres") and facts["retention_days"] == 7

    def non_empty_words(self, place: Place) -> list[str]:
        return [place.databases[0]]

    def missing(self, place: Place) -> tuple[dict[str, Any], str]:
        return {"instance": "nope-db"}, "nope-db"

    @classmethod
    def site_store(cls, name: str, database: str) -> dict:
        return {"kind": "rds", "name": name, "region": REGION, "instance": f"{database}-db"}

    @classmethod
    def spellings(cls, database: str) -> dict[str, dict]:
        return {
            "restore_as the source's identifier": {"restore_as": f"{database}-db"},
            "the same identifier in other case": {"restore_as": f"{database.upper()}-DB"},
        }

    @classmethod
    def moved_to(cls, database: str, other: str) -> dict:
        return {"restore_as": f"{other}-db".replace("_", "-")}

    # Only tests that need what this kind lacks call these.
    def writer_connection(self, place: Place) -> Any:
        raise NotImplementedError

    def transfer(self, place: Place) -> Callable[[Any, int, int], None]:
        raise NotImplementedError

    def bank_tables(self, place: Place) -> set[str]:
        return set()

    def add_large_table(self, place: Place) -> int:
        raise NotImplementedError

    def typed(self, change: str | None = None, reverse: bool = False) -> Place:
        raise NotImplementedError

    def apply_change(self, place: Place, change: str) -> None:
        raise NotImplementedError

    def changed_table(self, change: str) -> str:
        raise NotImplementedError
