"""`pausepoint check`: every preflight check of a backup, run without pausing anything.

Each check returns ``CheckLine``s (what was checked, a verdict, the detail or the fix). The CLI
runs them in this process (``run_checks``); the ``check`` flow runs the same functions, one task
each, so the Prefect UI can run them too. Nothing here pauses a node, takes the pause lock or
changes a store: the nodes are asked CheckPaused, the stores their ``check()`` (and, for a
point-in-time kind, ``check_pitr()``), the catalog gets one probe file written and removed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pausepoint.admin.client import AdminClient
from pausepoint.admin.grpc_client import root_certificates
from pausepoint.admin.site_client import discover_nodes
from pausepoint.catalog import Catalog
from pausepoint.clock import ClockBound, check_gate, measure, required_hold_ms
from pausepoint.errors import PausepointError
from pausepoint.pause_lock import LockView, free_command
from pausepoint.secrets import SecretResolver
from pausepoint.site import Site
from pausepoint.stores import registry
from pausepoint.stores.base import Store
from pausepoint.window import PauseSession

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"


@dataclass(frozen=True)
class CheckLine:
    """One line of the report: ``verdict`` is PASS, WARN (a backup runs, but look), FAIL (a
    backup would fail here) or SKIP (not applicable, or not checkable from here)."""

    check: str
    verdict: str
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.check, "verdict": self.verdict, "detail": self.detail}
        if self.facts:
            out["facts"] = self.facts
        return out


def failed(check: str, exc: BaseException) -> CheckLine:
    """A check that raised: our errors carry their fix; anything else is named by its type."""
    text = str(exc) if isinstance(exc, PausepointError) else f"{type(exc).__name__}: {exc}"
    return CheckLine(check, FAIL, text)


def _facts_text(facts: dict[str, Any]) -> str:
    def shown(value: Any) -> str:
        return ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)

    return "; ".join(f"{key} {shown(value)}" for key, value in facts.items())


# --- admin nodes and TLS -------------------------------------------------------------------


def check_nodes(site: Site, client: AdminClient, resolve: SecretResolver) -> list[CheckLine]:
    """Every admin node reachable and not paused (CheckPaused only), and per component with
    TLS: its CA loads and its nodes answered over TLS."""
    try:
        node_set = discover_nodes(site)
    except Exception as exc:  # DiscoveryError, or a resolver that is not there
        return [failed("admin nodes", exc)]
    lines: list[CheckLine] = []
    session = PauseSession(site.site, node_set, client, site.pause)
    results = session.check_all() if session.nodes else {}
    if not results:
        lines.append(CheckLine("admin nodes", FAIL, f"site {site.site!r} has no admin targets"))
    for node, r in results.items():
        name = f"node {node}"
        if r.error is not None:
            lines.append(CheckLine(name, FAIL, str(r.error)))
        elif r.value:
            lines.append(
                CheckLine(
                    name,
                    FAIL,
                    "reports PAUSED: another backup or an operator holds a pause; wait for it "
                    "to end (or run the watchdog, or `pausepoint unpause`)",
                )
            )
        else:
            lines.append(CheckLine(name, PASS, "reachable, not paused"))
    for comp, component in site.components().items():
        tls = component.targets.tls
        check = f"TLS {comp}"
        if tls is None:
            lines.append(CheckLine(check, SKIP, "not configured: admin calls in plaintext"))
            continue
        try:
            root_certificates(tls, ", ".join(map(str, node_set.get(comp, []))) or comp, resolve)
        except Exception as exc:
            lines.append(failed(check, exc))
            continue
        mine = {n: r for n, r in results.items() if n.component == comp}
        bad = [str(n.target) for n, r in mine.items() if r.error is not None]
        if bad:
            lines.append(
                CheckLine(
                    check,
                    FAIL,
                    f"no TLS answer from {', '.join(bad)} (verified against "
                    f"{tls.trust()}); see the node lines",
                )
            )
        else:
            lines.append(
                CheckLine(
                    check,
                    PASS,
                    f"{len(mine)} node(s) answered over TLS, verified against {tls.trust()}",
                )
            )
    return lines


# --- stores -------------------------------------------------------------------------------


def check_store(component: str, store: Store) -> list[CheckLine]:
    """Reachable, versions and tools (``Store.check``); a point-in-time kind's settings
    (``Store.check_pitr``) when it has them. Asked of the store, never by kind."""
    name = f"store {component}/{store.name}"
    try:
        facts = store.check()
    except Exception as exc:
        return [failed(name, exc)]
    lines = [CheckLine(name, PASS, _facts_text(facts) or "reachable", facts=dict(facts))]
    try:
        pitr = store.check_pitr()
    except Exception as exc:
        lines.append(failed(f"{name} point-in-time", exc))
    else:
        if pitr is not None:
            lines.append(
                CheckLine(f"{name} point-in-time", PASS, _facts_text(pitr), facts=dict(pitr))
            )
    return lines


# --- clock ----------------------------------------------------------------------------------


def check_clock(site: Site) -> CheckLine:
    """The clock bound a backup records; for a site with point-in-time stores, the gate the
    derived hold must pass (as ``BackupRun.hold_ms``)."""
    caps = [registry.capabilities(cfg) for _, cfg in site.stores()]
    pitr = [c.pitr_granularity_ms for c in caps if c.pitr_granularity_ms is not None]
    settings = site.clock
    bound: ClockBound | None = None
    try:
        if settings.ntp_servers:
            bound = measure(settings.ntp_servers, settings.timeout_s)
        hold = required_hold_ms(
            bound if pitr else None, max(pitr) if pitr else None, site.pause.min_hold_ms, 0
        )
        if pitr and bound is not None:
            check_gate(bound, hold)
    except PausepointError as exc:
        if pitr or settings.required:
            return failed("clock bound", exc)
        return CheckLine("clock bound", WARN, f"{exc} (restore points record no clock bound)")
    if bound is None:
        return CheckLine(
            "clock bound", SKIP, "no clock.ntp_servers: restore points record no clock bound"
        )
    return CheckLine("clock bound", PASS, f"{bound.describe()}; hold {hold} ms")


# --- catalog --------------------------------------------------------------------------------


def check_catalog(site: Site, catalog: Catalog) -> CheckLine:
    """A probe file created, read back and removed where the site's points go."""
    key = f"{site.site}/.pausepoint-check-{uuid.uuid4().hex}"
    where = site.catalog.describe()
    try:
        catalog.driver.create_if_absent(key, b"pausepoint check\n")
        try:
            catalog.driver.read_bytes(key)
        finally:
            catalog.driver.delete(key)
        scan = catalog.scan_points(site.site)
    except Exception as exc:
        return CheckLine(
            "catalog", FAIL, f"{where} is not writable: {failed('catalog', exc).detail}"
        )
    unreadable = f", {len(scan.unreadable)} unreadable" if scan.unreadable else ""
    return CheckLine(
        "catalog", PASS, f"{where}: writable; {len(scan.points)} restore point(s){unreadable}"
    )


# --- pause lock -----------------------------------------------------------------------------


def lock_line(view: LockView | None, site: str) -> CheckLine:
    """The verdict on the site's pause lock as the Prefect API showed it (None: the limit does
    not exist yet; the first backup creates it)."""
    if view is None or view.active_slots < 1:
        created = "" if view is not None else " (not created yet: the first backup creates it)"
        return CheckLine("pause lock", PASS, f"free{created}")
    if view.live:
        runs = ", ".join(r.describe() for r in view.live)
        return CheckLine(
            "pause lock", FAIL, f"held (or waited for) by {runs}: a backup waits for it"
        )
    return CheckLine(
        "pause lock",
        WARN,
        "taken, yet no run of the site is running: the next backup frees it automatically "
        f"(or run `{free_command(site)}` once no backup or restore of it runs)",
    )


NO_API_LOCK = CheckLine(
    "pause lock",
    SKIP,
    "PREFECT_API_URL is not set: the lock lives in the Prefect server your runs use; set "
    "PREFECT_API_URL to check it",
)


# --- all of them ----------------------------------------------------------------------------


def open_stores(site: Site, resolve: SecretResolver) -> list[tuple[str, Store]]:
    from pausepoint.stores import open_store

    return [(comp, open_store(cfg, resolve)) for comp, cfg in site.stores()]


def run_checks(
    site: Site,
    catalog: Catalog,
    client: AdminClient,
    resolve: SecretResolver,
    lock: Callable[[], CheckLine],
) -> list[CheckLine]:
    """Every check at once (each in its own thread), reported in a fixed order: nodes and TLS,
    stores, clock, catalog, pause lock."""
    jobs: list[Callable[[], Sequence[CheckLine]]] = [
        lambda: check_nodes(site, client, resolve),
        *[
            (lambda comp=comp, store=store: check_store(comp, store))
            for comp, store in open_stores(site, resolve)
        ],
        lambda: [check_clock(site)],
        lambda: [check_catalog(site, catalog)],
        lambda: [lock()],
    ]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
    return [line for f in futures for line in f.result()]


def verdict(lines: Sequence[CheckLine]) -> str:
    """FAIL when any line failed, else WARN when any warned, else PASS."""
    verdicts = {line.verdict for line in lines}
    return FAIL if FAIL in verdicts else WARN if WARN in verdicts else PASS
