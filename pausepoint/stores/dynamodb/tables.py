"""DynamoDB tables as the store sees them: which tables a config names, their restorable window
and the settings a restore resets (read at capture, re-applied after), and the fingerprint of
their items."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from pausepoint.errors import PausepointError
from pausepoint.stores._aws import AwsClients, error_code, utc
from pausepoint.stores._common import fold_row_hashes
from pausepoint.stores.base import Fingerprint, TableFingerprint
from pausepoint.stores.dynamodb.config import DynamoConfig, DynamoTableSettings

DDB = "dynamodb"
SCALING = "application-autoscaling"
NOT_FOUND = {"ResourceNotFoundException", "TableNotFoundException", "BackupNotFoundException"}


def list_tables(aws: AwsClients, error: type[PausepointError]) -> list[str]:
    names: list[str] = []
    start: str | None = None
    while True:
        page = aws.call(
            DDB,
            "ListTables",
            error,
            "listing the tables",
            **({"ExclusiveStartTableName": start} if start else {}),
        )
        names += page.get("TableNames", [])
        start = page.get("LastEvaluatedTableName")
        if not start:
            return names


def tables_of(
    config: DynamoConfig, aws: AwsClients, error: type[PausepointError]
) -> tuple[dict[str, str], list[str]]:
    """``{key: full name}`` of the config's namespaces (key: ``<namespace>.<table>``), and the
    namespaces without any table."""
    found: dict[str, str] = {}
    empty = []
    names = list_tables(aws, error)
    for ns in config.all_namespaces:
        start = f"{config.table_prefix}{ns}."
        mine = [n for n in names if n.startswith(start) and "." not in n[len(start) :]]
        if not mine:
            empty.append(ns)
        for n in mine:
            found[n[len(config.table_prefix) :]] = n
    return dict(sorted(found.items())), empty


def describe(aws: AwsClients, name: str, error: type[PausepointError]) -> dict[str, Any] | None:
    """The table's description, or None when there is no such table."""
    from botocore.exceptions import ClientError

    try:
        return aws.call(DDB, "DescribeTable", error, f"table {name}", TableName=name)["Table"]
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND:
            return None
        raise


def pitr(aws: AwsClients, name: str, error: type[PausepointError]) -> dict[str, Any] | None:
    """PointInTimeRecoveryDescription of a table; None when there is no such table."""
    from botocore.exceptions import ClientError

    try:
        answer = aws.call(
            DDB,
            "DescribeContinuousBackups",
            error,
            f"the point-in-time recovery of table {name}",
            TableName=name,
        )
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND:
            return None
        raise
    return answer["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})


def window(desc: dict[str, Any]) -> tuple[datetime, datetime] | None:
    early, late = desc.get("EarliestRestorableDateTime"), desc.get("LatestRestorableDateTime")
    if desc.get("PointInTimeRecoveryStatus") != "ENABLED" or early is None or late is None:
        return None
    return utc(early), utc(late)


def read_settings(
    aws: AwsClients, key: str, name: str, error: type[PausepointError]
) -> DynamoTableSettings:
    """Everything a restore resets, as the table has it now."""
    table = describe(aws, name, error)
    if table is None:
        raise error(f"store {aws.store}: table {name} vanished while its settings were read")
    p = pitr(aws, name, error) or {}
    win = window(p)
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode") or (
        "PROVISIONED"
        if (table.get("ProvisionedThroughput") or {}).get("ReadCapacityUnits")
        else "PAY_PER_REQUEST"
    )
    throughput = table.get("ProvisionedThroughput") or {}
    ttl = aws.call(DDB, "DescribeTimeToLive", error, f"the TTL of table {name}", TableName=name)[
        "TimeToLiveDescription"
    ]
    tags: dict[str, str] = {}
    token: str | None = None
    while True:
        page = aws.call(
            DDB,
            "ListTagsOfResource",
            error,
            f"the tags of table {name}",
            ResourceArn=table["TableArn"],
            **({"NextToken": token} if token else {}),
        )
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        token = page.get("NextToken")
        if not token:
            break
    resources = [f"table/{name}"] + [
        f"table/{name}/index/{i['IndexName']}" for i in table.get("GlobalSecondaryIndexes", [])
    ]
    targets = aws.call(
        SCALING,
        "DescribeScalableTargets",
        error,
        f"the auto scaling of table {name}",
        ServiceNamespace="dynamodb",
        ResourceIds=resources,
    ).get("ScalableTargets", [])
    policies = []
    for resource in resources:
        policies += aws.call(
            SCALING,
            "DescribeScalingPolicies",
            error,
            f"the auto scaling policies of table {name}",
            ServiceNamespace="dynamodb",
            ResourceId=resource,
        ).get("ScalingPolicies", [])
    # Only this table's (an answer that ignored the filter must not move another table's).
    targets = [x for x in targets if x.get("ResourceId") in resources]
    policies = [x for x in policies if x.get("ResourceId") in resources]
    stream = table.get("StreamSpecification") or {}
    return DynamoTableSettings(
        key=key,
        name=name,
        arn=table["TableArn"],
        earliest=win[0] if win else None,
        latest=win[1] if win else None,
        pitr_recovery_days=p.get("RecoveryPeriodInDays"),
        billing_mode=billing,
        read_capacity=throughput.get("ReadCapacityUnits") if billing == "PROVISIONED" else None,
        write_capacity=throughput.get("WriteCapacityUnits") if billing == "PROVISIONED" else None,
        ttl_attribute=ttl.get("AttributeName")
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
        else None,
        tags=tags,
        stream_view_type=stream.get("StreamViewType") if stream.get("StreamEnabled") else None,
        deletion_protection=bool(table.get("DeletionProtectionEnabled")),
        scalable_targets=[
            {k: t[k] for k in ("ResourceId", "ScalableDimension", "MinCapacity", "MaxCapacity")}
            for t in targets
        ],
        scaling_policies=[_policy(p) for p in policies],
    )


def _policy(p: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "PolicyName",
        "ResourceId",
        "ScalableDimension",
        "PolicyType",
        "TargetTrackingScalingPolicyConfiguration",
        "StepScalingPolicyConfiguration",
    )
    return json.loads(json.dumps({k: p[k] for k in keep if k in p}, default=str))


def restore_overrides(s: DynamoTableSettings) -> dict[str, Any]:
    """Billing mode and capacity given to the restore call itself (the restored table is
    created with them)."""
    out: dict[str, Any] = {"BillingModeOverride": s.billing_mode}
    if s.billing_mode == "PROVISIONED" and s.read_capacity and s.write_capacity:
        out["ProvisionedThroughputOverride"] = {
            "ReadCapacityUnits": s.read_capacity,
            "WriteCapacityUnits": s.write_capacity,
        }
    return out


def reapply(
    aws: AwsClients, s: DynamoTableSettings, target: str, error: type[PausepointError]
) -> list[str]:
    """Re-apply on ``target`` what a restore resets; idempotent. Returns what was done."""
    done = []
    table = describe(aws, target, error)
    if table is None:
        raise error(f"store {aws.store}: table {target} is missing; its restore did not finish")
    current = pitr(aws, target, error) or {}
    if current.get("PointInTimeRecoveryStatus") != "ENABLED" or (
        s.pitr_recovery_days and current.get("RecoveryPeriodInDays") != s.pitr_recovery_days
    ):
        spec: dict[str, Any] = {"PointInTimeRecoveryEnabled": True}
        if s.pitr_recovery_days:
            spec["RecoveryPeriodInDays"] = s.pitr_recovery_days
        aws.call(
            DDB,
            "UpdateContinuousBackups",
            error,
            f"turning PITR on for {target}",
            TableName=target,
            PointInTimeRecoverySpecification=spec,
        )
        done.append("PITR")
    if s.ttl_attribute:
        ttl = aws.call(
            DDB, "DescribeTimeToLive", error, f"the TTL of table {target}", TableName=target
        )["TimeToLiveDescription"]
        if ttl.get("AttributeName") != s.ttl_attribute or ttl.get("TimeToLiveStatus") not in (
            "ENABLED",
            "ENABLING",
        ):
            aws.call(
                DDB,
                "UpdateTimeToLive",
                error,
                f"the TTL of table {target}",
                TableName=target,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": s.ttl_attribute},
            )
            done.append("TTL")
    if s.tags:
        aws.call(
            DDB,
            "TagResource",
            error,
            f"tagging table {target}",
            ResourceArn=table["TableArn"],
            Tags=[{"Key": k, "Value": v} for k, v in sorted(s.tags.items())],
        )
        done.append("tags")
    for t in s.scalable_targets:
        aws.call(
            SCALING,
            "RegisterScalableTarget",
            error,
            f"the auto scaling of {target}",
            ServiceNamespace="dynamodb",
            ResourceId=_moved(t["ResourceId"], s.name, target),
            ScalableDimension=t["ScalableDimension"],
            MinCapacity=t["MinCapacity"],
            MaxCapacity=t["MaxCapacity"],
        )
    for p in s.scaling_policies:
        aws.call(
            SCALING,
            "PutScalingPolicy",
            error,
            f"the auto scaling policies of {target}",
            ServiceNamespace="dynamodb",
            **{**p, "ResourceId": _moved(p["ResourceId"], s.name, target)},
        )
    if s.scalable_targets or s.scaling_policies:
        done.append("auto scaling")
    update: dict[str, Any] = {}
    stream = table.get("StreamSpecification") or {}
    if s.stream_view_type and not stream.get("StreamEnabled"):
        update["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": s.stream_view_type,
        }
    if s.deletion_protection and not table.get("DeletionProtectionEnabled"):
        update["DeletionProtectionEnabled"] = True
    if update:
        # Last: the table is UPDATING for a while afterwards.
        aws.call(
            DDB,
            "UpdateTable",
            error,
            f"streams and deletion protection of {target}",
            TableName=target,
            **update,
        )
        done.append("streams/deletion protection")
    return done


def _moved(resource: str, source: str, target: str) -> str:
    head = f"table/{source}"
    return f"table/{target}{resource[len(head) :]}" if resource.startswith(head) else resource


# --- ScalarDB's metadata under a new prefix ----------------------------------------------------


def scan_all(aws: AwsClients, name: str, error: type[PausepointError]) -> list[dict[str, Any]]:
    """Every item of a table (a consistent scan, page by page)."""
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        page = aws.call(
            DDB,
            "Scan",
            error,
            f"reading table {name}",
            TableName=name,
            ConsistentRead=True,
            **({"ExclusiveStartKey": start} if start else {}),
        )
        items += page.get("Items", [])
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def rename_keys(
    aws: AwsClients, name: str, renames: dict[str, str], error: type[PausepointError]
) -> int:
    """In table ``name``, every item whose (string) partition key is a key of ``renames`` is
    written again under the new key and then deleted under the old one; returns how many.

    ScalarDB keys its DynamoDB metadata by prefixed names (``metadata``: ``table`` =
    ``<prefix><namespace>.<table>``; ``namespaces``, where a ScalarDB version keeps it:
    ``namespace_name`` = ``<prefix><namespace>``), so tables restored under another prefix are
    invisible to ScalarDB until their entries are renamed. Put before delete, the whole table
    read first: a rerun after a failure renames what is left and nothing twice."""
    desc = describe(aws, name, error)
    if desc is None:
        raise error(f"store {aws.store}: the restored table {name} is gone; restore again")
    keys = [k["AttributeName"] for k in desc.get("KeySchema", [])]
    partition = next(k["AttributeName"] for k in desc["KeySchema"] if k["KeyType"] == "HASH")
    count = 0
    for item in scan_all(aws, name, error):
        old = item.get(partition, {}).get("S")
        if old not in renames:
            continue
        what = f"renaming ScalarDB's entry {old} to {renames[old]} in {name}"
        aws.call(
            DDB,
            "PutItem",
            error,
            what,
            TableName=name,
            Item={**item, partition: {"S": renames[old]}},
        )
        aws.call(DDB, "DeleteItem", error, what, TableName=name, Key={k: item[k] for k in keys})
        count += 1
    return count


# --- fingerprint -------------------------------------------------------------------------------


def _canonical(value: dict[str, Any]) -> Any:
    """A DynamoDB attribute value in a form that is the same however it was written (numbers
    normalised, sets sorted, binary as base64)."""
    (kind, v), *_ = value.items()
    if kind == "N":
        return ["N", _number(v)]
    if kind == "NS":
        return ["NS", sorted(_number(x) for x in v)]
    if kind == "B":
        return ["B", base64.b64encode(bytes(v)).decode()]
    if kind == "BS":
        return ["BS", sorted(base64.b64encode(bytes(x)).decode() for x in v)]
    if kind == "SS":
        return ["SS", sorted(v)]
    if kind == "L":
        return ["L", [_canonical(x) for x in v]]
    if kind == "M":
        return ["M", {k: _canonical(x) for k, x in sorted(v.items())}]
    return [kind, v]  # S, BOOL, NULL


def _number(text: str) -> str:
    d = Decimal(text)
    return "0" if d == 0 else format(d.normalize(), "f")


def item_hash(item: dict[str, Any]) -> int:
    text = json.dumps({k: _canonical(v) for k, v in item.items()}, sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def fingerprint_table(aws: AwsClients, name: str, error: type[PausepointError]) -> TableFingerprint:
    """Rows and the order-independent sum of item hashes (a consistent scan, page by page)."""
    rows, total = 0, 0
    start: dict[str, Any] | None = None
    while True:
        page = aws.call(
            DDB,
            "Scan",
            error,
            f"reading table {name}",
            TableName=name,
            ConsistentRead=True,
            **({"ExclusiveStartKey": start} if start else {}),
        )
        for item in page.get("Items", []):
            rows += 1
            total += item_hash(item)
        start = page.get("LastEvaluatedKey")
        if not start:
            return TableFingerprint(rows=rows, hash=fold_row_hashes(total))


def fingerprint(
    aws: AwsClients, tables: dict[str, str], error: type[PausepointError]
) -> Fingerprint:
    return {key: fingerprint_table(aws, name, error) for key, name in tables.items()}
