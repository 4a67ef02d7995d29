"""Every failure pausepoint can report, as a type, and the one place that ranks them.

Messages say what failed (site, component, node, store, restore point), what it means for the
operator (are nodes still paused? is there a usable backup?) and what to do next. They never
contain a secret. Library code raises these; only ``cli.py`` maps them to exit codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class Severity(IntEnum):
    """Higher outranks lower when one run fails in several ways (see ``most_severe``)."""

    OTHER = 0
    CAPTURE = 1
    VERIFICATION = 2
    PAUSE = 3
    UNPAUSE = 4


class PausepointError(Exception):
    """Base of every error pausepoint raises on purpose."""

    severity: Severity = Severity.OTHER
    exit_code: int = 1


class InternalError(PausepointError):
    """A bug in pausepoint: its own code broke an internal contract (a helper called with
    arguments it refuses, a step taken out of order, a store kind that lacks a primitive). No
    site file, target file or environment causes it; the message says so and what broke.
    Report it with the message and the traceback."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(f"internal error (a bug in pausepoint; please report it): {message}")


# --- configuration and preflight -----------------------------------------------------------


class ConfigError(PausepointError):
    """The site file (or a restore target file) is missing or invalid."""

    exit_code = 2


class SecretError(ConfigError):
    """A secret reference could not be resolved."""


class CredentialsError(SecretError):
    """Cloud credentials a store or catalog needs (``pausepoint.credentials``) cannot be made:
    an AWS profile that the config files do not have, or a Prefect credentials block whose
    fields are incomplete; or the cloud refuses them (an unknown access key, a wrong secret,
    an expired session: the S3 catalog). The message names the credentials (never a secret)
    and the fix."""


class InlineSecretError(ConfigError):
    """A restore or drill target file gives a secret inline; it must name it by reference
    ({env: VAR} or {block: NAME}). The message never repeats the value."""


class LocationError(ConfigError):
    """Where a store's data lives cannot be told (a host name does not resolve), so pausepoint
    cannot rule out that a restore or drill writes over the live site; nothing was touched."""


class RestoreTargetError(ConfigError):
    """A restore target would write where it must not (two stores into one database)."""


class ScalarDbRenameError(RestoreTargetError):
    """A restore target renames a namespace of a ScalarDB-managed component (MySQL's
    ``database_map``) where pausepoint cannot rewrite ScalarDB's metadata to match: the
    metadata is not captured by the same store, or its restored copy would be the live
    site's. The message names the store, the renames and the fix (map the metadata namespace
    too, or restore under the same names to another server). Nothing was touched."""


class ScratchTargetError(ConfigError):
    """A drill's scratch target is (part of) the site's own databases, however it is spelt."""


class StoreKindError(ConfigError):
    """A store kind is not registered (a site file or restore point names a kind whose plugin
    is not installed), or a kind's registry entry is inconsistent (its config model, its store
    class, its capabilities): the message names the kind and what to fix."""


class PreflightError(PausepointError):
    """A check before the pause failed; nothing was paused."""

    exit_code = 3


class StoreCheckError(PreflightError):
    """A store cannot be backed up or restored as configured (unreachable, auth, tool missing)."""


class ToolMissingError(StoreCheckError):
    """An external program (pg_dump, mariadb-dump, ...) is not installed or not on PATH."""


class NodeAlreadyPausedError(PreflightError):
    """A node reports paused before this run paused it: someone else owns that pause."""


class DiscoveryError(PreflightError):
    """The admin targets of a component could not be discovered."""


class ClockSkewError(PreflightError):
    """The clock bound is too wide for the hold, or no NTP server answered."""


class PauseLockError(PreflightError):
    """The site's pause lock (one backup or restore at a time) could not be taken."""


class ScalarDbCoverageError(PreflightError):
    """A ScalarDB-managed component (``scalardb:`` in the site file) has data its stores do not
    capture: one of its namespaces, the coordinator tables, or ScalarDB's table metadata (the
    ``scalardb`` database or schema) of a storage that holds its namespaces. A restore of such
    a backup would be torn or unreadable by ScalarDB; the message names what is missing and
    the store setting to add it to. Nothing was paused."""


# --- the pause window -----------------------------------------------------------------------


class PauseError(PausepointError):
    """Pausing failed. Nodes this run paused were unpaused (or an UnpauseError says otherwise)."""

    severity = Severity.PAUSE
    exit_code = 4


class PauseStillPausedError(PauseError):
    """TIMED_OUT_STILL_PAUSED: the node stays paused under an earlier pause someone else owns."""


class UnpauseError(PausepointError):
    """Some node may still be PAUSED. The most severe failure: production writes are blocked."""

    severity = Severity.UNPAUSE
    exit_code = 5


class VerificationError(PausepointError):
    """The pause window cannot be trusted (a node unpaused, restarted or the node set changed)."""

    severity = Severity.VERIFICATION
    exit_code = 6


class WindowExpiredError(VerificationError):
    """The pause window outlived its lease: the run's own deadline timer unpaused the nodes."""


class BackupInterruptedError(PausepointError):
    """SIGINT or SIGTERM reached the backup while it held (or was about to take) a pause: the
    window was closed at once, every node this run paused was unpaused and nothing registered.

    Ranked with verification errors: above a capture error the same signal caused (a dump tool
    killed by Ctrl-C), below any pause or unpause error. The exit code is 128 + the signal's
    number (130 for SIGINT, 143 for SIGTERM), as a shell reports a process the signal ended.
    """

    severity = Severity.VERIFICATION
    exit_code = 130

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        if signum is not None:
            self.exit_code = 128 + signum


class LeaseError(PausepointError):
    """A lease could not be written or read."""


class WatchdogError(PausepointError):
    """The watchdog could not tell whether a lease's run is alive; it left that lease alone."""


# --- capture, catalog, restore --------------------------------------------------------------


class CaptureError(PausepointError):
    """A store could not be captured; no restore point was registered."""

    severity = Severity.CAPTURE
    exit_code = 7


class ClusterChangedError(CaptureError):
    """A clustered store's membership changed during the pause window (a Cassandra node joined,
    left, moved or went down between the preparation and the snapshots): the snapshots do not
    cover one ring, so no restore point was registered."""


class NodeCommandError(PausepointError):
    """A command on a database node (through its node executor: local, ssh, kubernetes) could
    not start, failed or timed out. The store reports it inside the error of the step (check,
    capture, restore), naming the node, the command and its stderr."""


class DumpFormatError(PausepointError, ValueError):
    """A MySQL/MariaDB dump could not be read for its fingerprint (a row with an unbalanced
    quote, a dump that ends inside a table's data). The store reports it inside a CaptureError
    (at capture) or a RestoreError (fingerprinting a restored target), naming the store and
    the databases. Also a ValueError, as the dump readers' callers catch."""


class CatalogError(PausepointError):
    """The catalog cannot be read or written."""

    exit_code = 8


class CatalogConflictError(CatalogError):
    """A conditional catalog write lost a race: the record was created, changed or removed by
    someone else since it was read (two runs registering one point, a run and the watchdog
    ending one lease at once). The caller re-reads and decides again; it never overwrites."""


class RestorePointNotFoundError(CatalogError):
    """No registered restore point has that id."""


class CorruptArtifactError(CatalogError):
    """An artifact is missing, has the wrong size or a wrong checksum."""


class IncompleteRestorePointError(CatalogError):
    """A restore point lacks a component or store the site needs."""


class RestoreError(PausepointError):
    """Restoring failed."""

    exit_code = 9


class PitrWindowError(RestoreError):
    """A point-in-time store can no longer restore to the point's time: it lies outside the
    store's restorable window now (the message names the window); nothing was changed."""


class PitrNotYetRestorableError(PitrWindowError):
    """The point's time lies after the store's latest restorable time: the provider (WAL or
    binary-log archiving, a cloud's PITR) has not caught up with it yet. It becomes restorable
    once that time passes the point; a drill waits for it (bounded), a restore says so."""


class TargetNotEmptyError(RestoreError):
    """The restore target already holds data and replacing it was not asked for."""


class NameTakenError(RestoreError):
    """A name a point-in-time restore must create is already used by something this restore
    did not make (a DynamoDB alias table, an RDS instance or cluster identifier); nothing was
    changed. The message names it: delete or rename it, or restore under another name."""


class FingerprintMismatchError(RestoreError):
    """The restored data differs from what was captured."""


class ScalarDbTransactionError(RestoreError):
    """The restored stores of a ScalarDB-managed component hold records in a non-COMMITTED
    state whose transaction the restored coordinator table does not know (or its metadata
    could not be read or rewritten). After a drained pause every such record's transaction
    has a coordinator state; one without is the mark of a torn copy (the stores captured at
    different moments), and ScalarDB's lazy recovery would roll back a transaction that may
    have committed elsewhere. Do not start ScalarDL on these databases; restore another
    point. The restore report lists the records by table and coordinator state."""


def most_severe(errors: Iterable[BaseException]) -> BaseException | None:
    """Return the failure to report when one run failed in several ways.

    Ranking (highest first): unpause > pause > verification > capture > anything else; ties keep
    the first raised. The others are attached as notes so nothing is lost from the report.
    """
    found = [e for e in errors if e is not None]
    if not found:
        return None
    worst = max(found, key=lambda e: getattr(e, "severity", Severity.OTHER))
    for other in found:
        if other is not worst:
            worst.add_note(f"also: {type(other).__name__}: {other}")
    return worst
