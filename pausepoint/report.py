"""Human-readable summaries of a restore point and of a restore (markdown), shared by the
Prefect artifacts and the CLI."""

from __future__ import annotations

import hashlib

from pausepoint.catalog.manifest import RestorePoint
from pausepoint.scalardb_restore import ScalarDbCheck
from pausepoint.stores.base import StoreCapture


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def restore_point_markdown(point: RestorePoint) -> str:
    w = point.window
    lines = [
        f"# Restore point `{point.id}`",
        "",
        f"Site **{point.site}**, created {point.created_at:%Y-%m-%d %H:%M:%S.%f} UTC",
        "",
    ]
    if w.paused:
        lines += [
            "| pause window | |",
            "|---|---|",
            f"| start (last node paused) | {w.start.isoformat()} |",
            f"| end (first unpause sent) | {w.end.isoformat()} |",
            f"| mid-time | {w.mid.isoformat()} |",
            f"| window length | {w.length_ms:.1f} ms (hold {w.hold_ms} ms) |",
            f"| drain | {w.drain_ms:.1f} ms |",
            f"| unpause | {w.unpause_ms:.1f} ms |",
            f"| **write stall** | **{w.write_stall_ms:.1f} ms** |",
        ]
    else:
        lines.append(
            "No pause was needed: the whole site lives in one transactional database, "
            f"whose snapshot at {w.start.isoformat()} is the restore point."
        )
    if point.clock:
        c = point.clock
        lines += [
            "",
            f"Clock: offset {c.offset_s * 1000:+.1f} ms ± {c.uncertainty_s * 1000:.1f} ms "
            f"(NTP {c.server})",
        ]
    lines += _point_in_time(point)
    lines += [
        "",
        "| component | store | kind | method | size | artifacts | tables | rows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for comp, rec in point.components.items():
        for s in rec.stores:
            rows = sum(f.rows for f in s.fingerprint.values())
            lines.append(
                f"| {comp} | {s.name} | {s.kind} | {s.method} | {_mb(s.total_bytes)} | "
                f"{len(s.artifacts)} | {len(s.fingerprint)} | {rows} |"
            )
    lines += ["", "Artifacts (sha256):", ""]
    for comp, rec in point.components.items():
        for s in rec.stores:
            for a in s.artifacts:
                lines.append(f"- `{comp}/{s.name}/{a.path}` {a.size} B `{a.sha256}`")
    return "\n".join(lines)


def clock_error_ms(point: RestorePoint) -> float | None:
    """The clock error bound the point was taken with, |offset| + uncertainty, in ms."""
    c = point.clock
    return None if c is None else (abs(c.offset_s) + c.uncertainty_s) * 1000


def _point_in_time(point: RestorePoint) -> list[str]:
    """The time of a point-in-time restore: mid-time ± the clock's error bound, each PITR
    store's timestamp and step, and how far they stay inside the pause window."""
    from pausepoint.stores.registry import capture_capabilities

    pitr = [
        (comp, s) for comp, rec in point.components.items() for s in rec.stores if s.pitr_timestamp
    ]
    if not pitr:
        return []
    w = point.window
    error = clock_error_ms(point)
    lines = [
        "",
        "| point in time | |",
        "|---|---|",
        f"| mid-time | {w.mid.isoformat()} |",
        f"| clock error bound | {'not measured' if error is None else f'± {error:.1f} ms'} |",
        f"| half the window | {w.length_ms / 2:.1f} ms (hold {w.hold_ms} ms) |",
        "",
        "| store | restore time | step | inside the window by |",
        "|---|---|---|---|",
    ]
    for comp, s in pitr:
        assert s.pitr_timestamp is not None
        caps = capture_capabilities(s.kind, s.method)
        step = caps.pitr_granularity_ms if caps is not None else None
        # The time read on a clock off by up to E: its distance to the nearer edge minus E.
        edge_ms = min(
            (s.pitr_timestamp - w.start).total_seconds(), (w.end - s.pitr_timestamp).total_seconds()
        ) * 1000 - (error or 0.0)
        verdict = f"{edge_ms:.1f} ms" if edge_ms > 0 else f"**OUTSIDE** ({edge_ms:.1f} ms)"
        lines.append(
            f"| {comp}/{s.name} | {s.pitr_timestamp.isoformat()} | "
            f"{'?' if step is None else f'{step} ms'} | {verdict} |"
        )
    return lines


def restore_markdown(
    point: RestorePoint,
    checks: list[tuple[str, bool, str]],
    scalardb: list[ScalarDbCheck] | None = None,
) -> str:
    """checks: (name, passed, detail) in the order they ran; ``scalardb``: the transaction
    metadata of each ScalarDB-managed component, one table of pending records each."""
    lines = [
        f"# Restore of `{point.id}` (site {point.site})",
        "",
        f"Restore point mid-time {point.window.mid.isoformat()}",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    for name, ok, detail in checks:
        lines.append(f"| {name} | {'PASS' if ok else 'FAIL'} | {detail} |")
    for c in scalardb or []:
        lines += scalardb_markdown(c)
    return "\n".join(lines)


def scalardb_markdown(check: ScalarDbCheck) -> list[str]:
    """One ScalarDB-managed component's records not COMMITTED, by coordinator state."""
    verdict = "PASS" if check.passed else "FAIL"
    lines = [
        "",
        f"## ScalarDB transactions of {check.component}: {verdict}",
        "",
        f"{len(check.tables)} transactional tables read: {', '.join(check.tables) or 'none'}."
        + (
            f" NOT checked: store(s) {', '.join(check.unchecked)}, whose kind cannot read "
            "ScalarDB's tables here (verify them with ScalarDL's ledger validation)."
            if check.unchecked
            else ""
        ),
        "A record not COMMITTED is resolved by ScalarDB's lazy recovery when the coordinator "
        "holds its transaction's state (COMMITTED: rolled forward, ABORTED: rolled back); "
        "without one, the copy is torn.",
        "",
    ]
    if check.groups:
        lines += [
            "| record state | coordinator state | records | tables | resolved | example tx |",
            "|---|---|---|---|---|---|",
        ]
        for g in check.groups:
            lines.append(
                f"| {g.record_state} | {g.coordinator_state} | {g.records} | "
                f"{', '.join(g.tables)} | {'yes' if g.resolved else '**no**'} | "
                f"{', '.join(g.examples)} |"
            )
    else:
        lines.append("Every record is COMMITTED.")
    for p in check.problems:
        lines.append(f"- problem: {p}")
    return lines


def _digest(parts: list[str]) -> str:
    """One sha256 over an order-independent list of hex digests."""
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()


def store_checksum(store: StoreCapture) -> str:
    """sha256 of the store's artifacts: the file's own sha256 when there is one file, else a
    sha256 over every file's (so the table shows one value per store)."""
    if len(store.artifacts) == 1:
        return store.artifacts[0].sha256
    return _digest([f"{a.path} {a.sha256}" for a in store.artifacts])


def store_fingerprint_digest(store: StoreCapture) -> str:
    """sha256 over every table's rows and content hash: equal after a faithful restore."""
    return _digest([f"{t} {f.rows} {f.hash}" for t, f in store.fingerprint.items()])


def restore_point_rows(point: RestorePoint) -> list[dict[str, object]]:
    """The restore point as table rows, one per store, each carrying the window it belongs to."""
    w = point.window
    err = clock_error_ms(point)
    rows: list[dict[str, object]] = []
    for comp, rec in point.components.items():
        for s in rec.stores:
            rows.append(
                {
                    "point": point.id,
                    "component": comp,
                    "store": s.name,
                    "kind": s.kind,
                    "window_start": w.start.isoformat(),
                    "window_end": w.end.isoformat(),
                    "mid_time": w.mid.isoformat(),
                    "clock_error_ms": None if err is None else round(err, 1),
                    "pitr_time": s.pitr_timestamp.isoformat() if s.pitr_timestamp else None,
                    "write_stall_ms": round(w.write_stall_ms, 1) if w.paused else 0.0,
                    "size_bytes": s.total_bytes,
                    "sha256": store_checksum(s),
                    "tables": len(s.fingerprint),
                    "rows": sum(f.rows for f in s.fingerprint.values()),
                    "fingerprint": store_fingerprint_digest(s),
                }
            )
    return rows
