"""The S3 catalog driver (pausepoint/catalog/s3.py) through the real boto3 on moto's S3 server.

The driver's generic contract runs in tests/contract/test_catalog_driver_contract.py[s3]; these
are what only S3 has: multipart uploads and their checksums, conditional writes racing across
processes, stale lease holders, a corrupted object, refused credentials and IAM permissions,
the sweep of a failed run's uploads, and a real backup and restore through the S3 catalog.

What moto's server cannot prove, for all of them: it accepts a WRONG SHA-256 with an upload
(FACTS.md §8) and does not check part checksums the way S3 does; its conditional writes are a
check-then-write inside a threaded server, so the atomicity S3 guarantees under true concurrency
is not proven by a race passing here (only that the driver sends the right conditions and reads
412 right); its IAM evaluation is an approximation of AWS's; multipart uploads' start times are
fixed; there is no network latency, throttling (503 SlowDown) or eventual consistency.
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import queue
import random
import re
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from pausepoint.catalog import Catalog, Lease, layout, open_catalog
from pausepoint.catalog.config import S3CatalogConfig
from pausepoint.catalog.s3 import RESERVED, S3Driver
from pausepoint.errors import (
    CaptureError,
    CatalogConflictError,
    CatalogError,
    CorruptArtifactError,
    CredentialsError,
    LeaseError,
)
from pausepoint.secrets import SecretResolver
from pausepoint.stores._common import verify_artifacts
from pausepoint.stores.base import Artifact
from tests.support.catalog_drivers import (
    S3_ENDPOINT_ENV,
    S3_KEY_ENV,
    S3_SECRET_ENV,
    ensure_bucket,
    race_registrations,
    restore_point,
    s3_config,
    s3_driver,
    s3_settings,
    write_half_then_die,
)

pytestmark = [pytest.mark.integration]

SITE = "demo"
MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 28, 0, 31, 19, tzinfo=UTC)


@pytest.fixture
def driver(s3_endpoint, tmp_path) -> S3Driver:
    return s3_driver(tmp_path)  # type: ignore[return-value]


def _b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _uploads(driver: S3Driver, prefix: str = "") -> list[dict[str, Any]]:
    s3prefix = driver._key(prefix) + "/" if prefix else driver.prefix
    answer = driver._client.list_multipart_uploads(Bucket=driver.bucket, Prefix=s3prefix)
    return answer.get("Uploads", [])


# --- multipart and checksums ---------------------------------------------------------------


def test_an_artifact_larger_than_a_part_goes_up_in_parts_each_with_its_sha256(driver):
    """A 12 MiB artifact with 5 MiB parts is a three-part upload whose every part carried its
    SHA-256 (ChecksumAlgorithm=SHA256); a small one is one PUT whose stored SHA-256 is the
    content's. The object appears only when the upload completes.

    moto cannot prove: that S3 rejects a part whose content does not match its checksum (moto
    stores whatever was sent), nor S3's composite checksum arithmetic."""
    rng = random.Random(3)
    data = rng.randbytes(12 * MiB)
    key = "s/points/p1/ledger/pg/dump/3001.dat.gz"
    with driver.open_write(key) as out:
        for start in range(0, len(data), MiB):
            out.write(data[start : start + MiB])
            if start == 6 * MiB:  # a part is up, the object is not
                assert len(_uploads(driver, "s")) == 1
                assert not driver.exists(key)
    assert (out.size, out.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    head = driver._client.head_object(
        Bucket=driver.bucket, Key=driver._key(key), ChecksumMode="ENABLED"
    )
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 2 MiB
    assert head["ContentLength"] == len(data)
    assert "ChecksumSHA256" in head  # stored because the upload named the algorithm
    assert driver.sha256(key) == hashlib.sha256(data).hexdigest()
    assert _uploads(driver, "s") == []

    small = b"toc of the dump\n" * 100
    driver.write_atomic("s/points/p1/ledger/pg/toc.list", small)
    head = driver._client.head_object(
        Bucket=driver.bucket,
        Key=driver._key("s/points/p1/ledger/pg/toc.list"),
        ChecksumMode="ENABLED",
    )
    assert head["ChecksumSHA256"] == _b64(small)


def test_the_sink_of_a_capture_streams_and_uploads_spooled_files_to_s3(driver, tmp_path):
    """What a store's finish_capture writes through Catalog.artifact_sink lands in S3: a stream
    (``open``) directly, spooled files (``collect``, ``written``) right away, and the local spool
    is gone once the point is registered; the artifacts are what the sink reported.

    moto cannot prove: S3's checks of the part checksums sent on the way."""
    catalog = Catalog(driver)
    pending = catalog.begin_point(SITE)
    sink = catalog.artifact_sink(pending, "ledger", "pg")
    big = random.Random(5).randbytes(7 * MiB)  # two parts
    with sink.open("stream.bin") as w:
        w.write(big)
        streamed = w.close()
    spooled = sink.spool("dump/1.dat")
    spooled.write_bytes(b"rows" * 1000)
    (collected,) = sink.collect([spooled])
    dump = sink.spool("dump.sql")
    dump.write_bytes(b"INSERT 1;\n" * 100)
    written = sink.written(dump, dump.stat().st_size, hashlib.sha256(dump.read_bytes()).hexdigest())
    assert sink.size() >= len(big) + 4000 + 1000
    store_key = layout.store_key(SITE, pending.id, "ledger", "pg")
    keys = {f.key for f in driver.list_files(store_key)}
    assert keys == {f"{store_key}/{n}" for n in ("stream.bin", "dump/1.dat", "dump.sql")}
    for a in (streamed, collected, written):
        assert driver.sha256(f"{store_key}/{a.path}") == a.sha256
    # A spooled file changed after its writer hashed it is refused, not uploaded as good.
    other = sink.spool("other.sql")
    other.write_bytes(b"abc")
    with pytest.raises(CaptureError, match="changed after it was written"):
        sink.written(other, 3, hashlib.sha256(b"abd").hexdigest())

    catalog.register(pending, restore_point(SITE, pending.id, [streamed, collected, written], "t"))
    assert not pending.staging.exists()  # the local spool went with the registration
    assert [p.id for p in catalog.list_points(SITE)] == [pending.id]


def test_a_failed_stream_leaves_no_object_and_no_unfinished_upload(driver):
    """An error inside a store's stream aborts its multipart upload.

    moto cannot prove: S3's billing of unfinished uploads (why aborting matters)."""
    catalog = Catalog(driver)
    pending = catalog.begin_point(SITE)
    sink = catalog.artifact_sink(pending, "ledger", "pg")
    with pytest.raises(RuntimeError), sink.open("dump.sql") as w:
        w.write(b"x" * (6 * MiB))  # one part sent
        assert len(_uploads(driver, SITE)) == 1
        raise RuntimeError("pg_dump died")
    assert _uploads(driver, SITE) == []
    assert driver.list_files(layout.point_key(SITE, pending.id)) == []


# --- conditional writes racing ------------------------------------------------------------


def _spawn(target, args_for: list[tuple[Any, ...]]) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    barrier = ctx.Barrier(len(args_for))
    procs = [ctx.Process(target=target, args=(*a, barrier, results)) for a in args_for]
    for p in procs:
        p.start()
    out = []
    try:
        while any(p.is_alive() for p in procs) or not results.empty():
            try:
                out.append(results.get(timeout=0.5))
            except queue.Empty:
                continue
    finally:
        for p in procs:
            p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return out


def _threads(target, args_for: list[tuple[Any, ...]]) -> list[Any]:
    results: queue.Queue[Any] = queue.Queue()
    barrier = threading.Barrier(len(args_for))
    threads = [threading.Thread(target=target, args=(*a, barrier, results)) for a in args_for]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return [results.get() for _ in range(results.qsize())]


@pytest.fixture(scope="module", autouse=True)
def _stop_resource_tracker():
    """Spawning starts multiprocessing's resource tracker; stop it with the module."""
    yield
    from multiprocessing import resource_tracker

    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if stop is not None:
        stop()


@pytest.mark.parametrize("how", ["threads", "processes"])
def test_two_registrations_of_the_same_point_exactly_one_wins(s3_endpoint, tmp_path, how):
    """Two runs (threads, or processes like two workers on two machines) register the same
    point ids at the same moment: for every id exactly one manifest lands (If-None-Match: *),
    it is the winner's, and the loser is told it is already registered.

    moto cannot prove: S3's atomicity of If-None-Match under true concurrency (moto checks,
    then writes, in a threaded server); only that the driver asks for it and reads the 412."""
    driver = s3_driver(tmp_path)
    catalog = Catalog(driver)
    points = []
    for _ in range(8):
        pending = catalog.begin_point(SITE)
        with catalog.write_artifact(pending, "ledger", "pg", "dump.sql") as out:
            out.write(pending.id.encode())
        points.append((pending.id, [Artifact(path="dump.sql", size=out.size, sha256=out.sha256)]))
    run = _threads if how == "threads" else _spawn
    results = run(
        race_registrations,
        [(s3_driver, tmp_path, SITE, points, who) for who in ("run-a", "run-b")],
    )
    assert len(results) == 2 * len(points)
    for point_id, _ in points:
        outcomes = {who: outcome for pid, who, outcome in results if pid == point_id}
        winners = [who for who, outcome in outcomes.items() if outcome == "won"]
        assert len(winners) == 1, outcomes
        [loser] = set(outcomes) - set(winners)
        assert "already registered" in outcomes[loser]
        assert catalog.get_point(SITE, point_id).pausepoint_version == winners[0]


def test_a_lease_renewed_by_a_stale_holder_is_refused(driver):
    """A run's lease is broken by the watchdog; the run's heartbeat, holding the ETag it read
    before, is refused (If-Match: 412) and the lease stays broken; a second create of the
    same lease is refused too (If-None-Match). Checked at the S3 API as well as through the
    catalog.

    moto cannot prove: that S3 applies If-Match atomically against a concurrent writer."""
    catalog = Catalog(driver)
    lease = Lease(
        site=SITE,
        run_id="run-1",
        owner="backup/host-a pid 4242",
        nodes=["ledger/10.0.0.1:50053"],
        created_at=T0,
        deadline=T0 + timedelta(minutes=2),
    )
    catalog.write_lease(lease)
    key = layout.lease_key(SITE, "run-1")
    stale = driver.read_versioned(key)  # the run's last read
    catalog.mark_broken(SITE, "run-1", "the watchdog unpaused 1 node")

    renewed = lease.model_copy(update={"deadline": T0 + timedelta(minutes=5)}).model_dump_json()
    with pytest.raises(CatalogConflictError, match="rewritten since it was read"):
        driver.replace_if_unchanged(key, renewed.encode(), stale.version)
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as raw:  # the same write straight to S3
        driver._client.put_object(
            Bucket=driver.bucket, Key=driver._key(key), Body=renewed.encode(), IfMatch=stale.version
        )
    assert raw.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(LeaseError, match="already ended its lease"):
        catalog.write_lease(lease.model_copy(update={"deadline": T0 + timedelta(minutes=5)}))
    with pytest.raises(CatalogConflictError, match="already exists"):
        driver.create_if_absent(key, renewed.encode())
    assert catalog.get_lease(SITE, "run-1").state == "broken"


# --- a corrupted object ----------------------------------------------------------------------


def test_a_corrupted_artifact_is_found_on_read_though_s3_keeps_the_old_checksum(driver):
    """An artifact overwritten with other bytes of the same size, uploaded with the ORIGINAL
    SHA-256 as its checksum (moto accepts the lie), is caught by pausepoint's own hashing:
    Catalog.verify_point (the restore's validate step) names it, and a restore's local copy
    fails verify_artifacts. S3's stored checksum still says "original": not to be trusted alone.

    moto cannot prove: real S3 would reject that upload (BadDigest); the test shows pausepoint
    does not depend on it (another writer, a bucket replicated from elsewhere, bit rot)."""
    catalog = Catalog(driver)
    pending = catalog.begin_point(SITE)
    good = b"COPY account FROM stdin;\n" + b"1\t1000\n" * 5000
    with catalog.write_artifact(pending, "ledger", "pg", "dump.sql") as out:
        out.write(good)
    artifact = Artifact(path="dump.sql", size=out.size, sha256=out.sha256)
    catalog.register(pending, restore_point(SITE, pending.id, [artifact], "t"))
    assert catalog.verify_point(SITE, pending.id) == []

    key = f"{layout.store_key(SITE, pending.id, 'ledger', 'pg')}/dump.sql"
    bad = good.replace(b"1000", b"9999", 1)
    assert len(bad) == len(good)
    driver._client.put_object(
        Bucket=driver.bucket,
        Key=driver._key(key),
        Body=bad,
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=_b64(good),  # a wrong checksum: moto stores it
    )
    head = driver._client.head_object(
        Bucket=driver.bucket, Key=driver._key(key), ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"] == _b64(good)  # S3 (moto) vouches for the old content

    [problem] = catalog.verify_point(SITE, pending.id)
    assert "wrong sha256" in problem and driver.location(key) in problem
    source = catalog.store_dir(SITE, pending.id, "ledger", "pg")  # the restore's local copy
    with pytest.raises(CorruptArtifactError):
        verify_artifacts(source, [artifact], store="pg")


# --- credentials and permissions ---------------------------------------------------------------

IAM_BUCKET = "pausepoint-iam"
POLICY_RE = re.compile(r"<!-- s3-catalog-policy -->\s*```json\n(.*?)```", re.S)


# moto authorizes each S3 request by its operation's name (s3:ListObjectsV2), AWS by the IAM
# action that operation needs (s3:ListBucket; AWS's "Actions, resources, and condition keys for
# Amazon S3"). The IAM actions pausepoint documents, as the operations moto checks them by:
AWS_ACTION_OPERATIONS = {
    "s3:ListBucket": ["s3:ListObjectsV2"],
    "s3:ListBucketMultipartUploads": ["s3:ListMultipartUploads"],
    "s3:GetObject": ["s3:GetObject", "s3:HeadObject", "s3:CopyObject"],  # copy: the source
    "s3:PutObject": [  # copy: the destination; multipart: each step
        "s3:PutObject",
        "s3:CopyObject",
        "s3:CreateMultipartUpload",
        "s3:UploadPart",
        "s3:CompleteMultipartUpload",
    ],
    "s3:DeleteObject": ["s3:DeleteObject"],
    "s3:AbortMultipartUpload": ["s3:AbortMultipartUpload"],
    "s3:ListMultipartUploadParts": ["s3:ListParts"],
}


def as_moto_policy(policy: dict[str, Any], bucket: str) -> str:
    """A policy with IAM actions, as moto evaluates it: each action by its operations' names,
    no conditions (moto supplies no value for S3's ``s3:prefix`` condition key, so it denies
    every statement that has one). DeleteObjects, which AWS authorizes per object with
    s3:DeleteObject, moto checks on the bucket."""
    statements = []
    for st in policy["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        unknown = [a for a in actions if a not in AWS_ACTION_OPERATIONS]
        assert not unknown, f"no operations known for {unknown}: add them to the table"
        operations = sorted({op for a in actions for op in AWS_ACTION_OPERATIONS[a]})
        statements.append(
            {"Effect": st["Effect"], "Action": operations, "Resource": st["Resource"]}
        )
        if "s3:DeleteObject" in actions:
            statements.append(
                {
                    "Effect": "Allow",
                    "Action": ["s3:DeleteObjects"],
                    "Resource": f"arn:aws:s3:::{bucket}",
                }
            )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def documented_policy(bucket: str, prefix: str) -> dict[str, Any]:
    """The IAM policy of docs/operations.md for ``bucket``/``prefix``."""
    text = (ROOT / "docs/operations.md").read_text()
    match = POLICY_RE.search(text)
    assert match, "docs/operations.md lost its S3 catalog policy block"
    policy = json.loads(match.group(1).replace("BUCKET", bucket).replace("PREFIX", prefix))
    assert any("Condition" in st for st in policy["Statement"])  # the listing stays confined
    return policy


@pytest.fixture
def moto_iam(tmp_path, monkeypatch):
    """A private moto server in IAM mode: after the first 7 requests (the setup below:
    users, keys, policies, the bucket) every request must be signed by a known key whose
    policy allows it. Stopped with the test."""
    from harness.moto_server import start_moto

    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "7")
    server = start_moto(tmp_path / "moto-iam")
    try:
        yield server
    finally:
        server.stop()


def _iam_user(iam: Any, name: str, policy: str) -> dict[str, str]:
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    iam.put_user_policy(UserName=name, PolicyName="pausepoint", PolicyDocument=policy)
    return {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


def _driver_with(server: Any, monkeypatch, tmp_path: Path, key_id: str, secret: str) -> S3Driver:
    monkeypatch.setenv(S3_KEY_ENV, key_id)
    monkeypatch.setenv(S3_SECRET_ENV, secret)
    monkeypatch.setenv(S3_ENDPOINT_ENV, server.endpoint)
    config = s3_config(tmp_path, prefix="site-a", bucket=IAM_BUCKET)
    return S3Driver.from_config(config, SecretResolver())


def test_refused_credentials_and_missing_permissions_say_so_and_the_documented_policy_is_enough(
    moto_iam, monkeypatch, tmp_path
):
    """With moto's IAM mode on: an unknown access key and a wrong secret fail with
    CredentialsError naming the credentials (never the secret); a user with exactly the policy
    of docs/operations.md registers, lists, leases, reads and deletes; a user without
    s3:PutObject gets a CatalogError naming the object and the docs.

    moto cannot prove: AWS's own policy evaluation (moto checks operation names, mapped here
    from the documented IAM actions by AWS's table, and cannot evaluate the documented
    s3:prefix condition, which is dropped), STS sessions expiring, instance or task roles,
    KMS key policies."""
    bucket = IAM_BUCKET
    iam = moto_iam.client("iam")
    allowed = _iam_user(
        iam, "pausepoint", as_moto_policy(documented_policy(bucket, "site-a"), bucket)
    )
    reader_policy = {
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}
        ]
    }
    read_only = _iam_user(iam, "reader", as_moto_policy(reader_policy, bucket))
    moto_iam.client("s3").create_bucket(Bucket=bucket)  # the 7th unauthenticated request

    for key_id, secret, code in [
        ("AKIAUNKNOWNUNKNOWN01", "not-the-secret-1", "InvalidAccessKeyId"),
        (allowed["id"], "not-the-secret-2", "SignatureDoesNotMatch"),
    ]:
        driver = _driver_with(moto_iam, monkeypatch, tmp_path, key_id, secret)
        with pytest.raises(CredentialsError) as info:
            Catalog(driver).begin_point(SITE)
        msg = str(info.value)
        assert code in msg and "AWS credentials keys" in msg and secret not in msg

    driver = _driver_with(moto_iam, monkeypatch, tmp_path, allowed["id"], allowed["secret"])
    driver.bucket = bucket
    catalog = Catalog(driver)
    pending = catalog.begin_point(SITE)
    with catalog.write_artifact(pending, "ledger", "pg", "dump.sql") as out:
        out.write(b"x" * (6 * MiB))  # multipart: CreateMultipartUpload, UploadPart, Complete
    artifact = Artifact(path="dump.sql", size=out.size, sha256=out.sha256)
    catalog.register(pending, restore_point(SITE, pending.id, [artifact], "t"))
    assert [p.id for p in catalog.list_points(SITE)] == [pending.id]
    assert catalog.verify_point(SITE, pending.id) == []
    lease = Lease(
        site=SITE,
        run_id="run-1",
        owner="o",
        nodes=["ledger/10.0.0.1:50053"],
        created_at=T0,
        deadline=T0 + timedelta(minutes=2),
    )
    catalog.write_lease(lease)
    catalog.release_lease(SITE, "run-1")
    stale = catalog.begin_point(SITE)
    assert catalog.sweep_orphans(SITE, older_than=timedelta(0)) == [
        driver.location(layout.point_key(SITE, stale.id))
    ]
    catalog.delete_point(SITE, pending.id)
    assert catalog.list_points(SITE) == []

    reader = _driver_with(moto_iam, monkeypatch, tmp_path, read_only["id"], read_only["secret"])
    with pytest.raises(CatalogError) as denied:
        Catalog(reader).begin_point(SITE)
    assert "denied" in str(denied.value) and "docs/operations.md" in str(denied.value)
    assert read_only["secret"] not in str(denied.value)


# --- sweeping what a failed run left ------------------------------------------------------------


def test_the_staging_of_a_killed_run_is_swept_with_its_unfinished_upload_and_spool(
    driver, tmp_path
):
    """A run killed mid-upload leaves its reserved point, a spooled file and an unfinished
    multipart upload: invisible to listings and never a point; the sweep removes all three,
    naming the point by its s3:// location (nothing is downloaded to name it).

    moto cannot prove: the unfinished upload's real start time (moto reports a fixed date,
    so the sweep's idle rule is tested with the point id's time), or S3's billing."""
    catalog = Catalog(driver)
    pending = catalog.begin_point(SITE)
    sink = catalog.artifact_sink(pending, "ledger", "pg")
    spooled = sink.spool("dump/1.dat")
    spooled.write_bytes(b"rows")
    key = f"{layout.store_key(SITE, pending.id, 'ledger', 'pg')}/dump/2.dat"
    proc = multiprocessing.get_context("spawn").Process(
        target=write_half_then_die,
        args=(s3_driver, tmp_path, key),  # 8 MiB: one part is up
    )
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == -signal.SIGKILL
    assert len(_uploads(driver, layout.point_key(SITE, pending.id))) == 1
    assert driver.pending_writes(layout.point_key(SITE, pending.id))
    assert catalog.list_points(SITE) == [] and catalog.staged_ids(SITE) == [pending.id]

    fresh = catalog.begin_point(SITE)  # a live run's: not idle yet, kept
    later = datetime.now(UTC) + timedelta(hours=25)
    assert catalog.sweep_orphans(SITE, now=later, dry_run=True) == [
        driver.location(layout.point_key(SITE, i)) for i in sorted([pending.id, fresh.id])
    ]
    swept = catalog.sweep_abandoned_staging(SITE, {fresh.id}, now=later)
    assert swept == [driver.location(layout.point_key(SITE, pending.id))]
    assert _uploads(driver, layout.point_key(SITE, pending.id)) == []
    assert not spooled.exists() and not driver.exists(layout.point_key(SITE, pending.id))
    assert catalog.staged_ids(SITE) == [fresh.id]
    # the reservation marker is the driver's own: never listed as a file
    assert all(not f.key.endswith(RESERVED) for f in driver.list_files(SITE))


# --- a real backup and restore through the S3 catalog -------------------------------------------


def test_a_backup_of_the_small_site_is_registered_in_s3_listed_and_restored(
    small_site, s3_endpoint, tmp_path
):
    """The real backup flow of the small site (PostgreSQL + MariaDB, admin nodes over gRPC)
    with its catalog in S3: the point's manifest and artifacts are objects in the bucket
    (nothing in a local catalog directory, the local spool gone), the point is listed, and
    the restore flow brings every store back to the state at the backup (fingerprints
    checked), not the rows written after it.

    moto cannot prove: transfer speed and multipart behaviour over a real network, S3's
    part-checksum checks; what is restored is checked by pausepoint's own hashes."""
    from flows.backup import backup
    from flows.restore import restore
    from harness.bank_app import _exec, read_state
    from pausepoint.requests import BackupRequest, RestoreRequest
    from pausepoint.site import load_site

    settings = s3_settings(tmp_path, prefix="roundtrip")
    config = S3CatalogConfig.model_validate(settings)
    ensure_bucket(S3Driver.from_config(config))
    small_site.edit(lambda data: data.update(catalog=settings))

    point_id = backup(BackupRequest(site_file=str(small_site.path)))
    before = {db.store_name: read_state(db.live) for db in small_site.dbs.all()}
    for db in small_site.dbs.all():  # written after the backup: must not come back
        conn = db.live.connect()
        try:
            _exec(conn, "INSERT INTO transfer (id, src, dst, amount) VALUES (777, 1, 2, 5)")
            conn.commit()
        finally:
            conn.close()

    site = load_site(small_site.path)
    assert site.catalog.describe() == config.describe()
    catalog = open_catalog(site.catalog, SecretResolver())
    assert [p.id for p in catalog.list_points(site.site)] == [point_id]
    point = catalog.get_point(site.site, point_id)
    keys = {f.key for f in catalog.driver.list_files(layout.point_key(site.site, point_id))}
    assert layout.manifest_key(site.site, point_id) in keys
    for comp_name, comp in point.components.items():
        for store in comp.stores:
            assert store.artifacts
            for a in store.artifacts:
                assert (
                    f"{layout.store_key(site.site, point_id, comp_name, store.name)}/{a.path}"
                    in keys
                )
    assert not (tmp_path / "catalog").exists()  # the local driver's directory was never made
    assert not catalog.driver._local(layout.point_key(site.site, point_id)).exists()

    target = tmp_path / "target.yaml"
    target.write_text(
        yaml.safe_dump(
            {"stores": {db.store_name: db.restore_override for db in small_site.dbs.all()}}
        )
    )
    result = restore(
        RestoreRequest(
            site_file=str(small_site.path),
            point_id=point_id,
            confirm=point_id,
            target_file=str(target),
        )
    )
    assert all(ok for _, ok, _ in result["checks"]), result["checks"]
    for db in small_site.dbs.all():
        assert read_state(db.restored) == before[db.store_name]
        assert 777 not in read_state(db.restored)[1]
