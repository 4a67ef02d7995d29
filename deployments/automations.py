"""Automations that react to pausepoint's events, made for one site.

    python -m deployments.automations --site deployments/production/site.yaml \
        [--notify BLOCK] [--max-gap-hours 7]

- ``pausepoint <site>: backup failed -> watchdog now``: on ``pausepoint.backup.failed`` of the
  site, run the ``watchdog/watchdog`` deployment at once instead of within the minute, so a
  failure that left a node paused is cleared first (the flow unpauses in-process; this covers the
  run that could not), and notify through the notification block ``--notify`` when given.
- ``pausepoint <site>: no backup completed``: with ``--notify``, a proactive trigger that fires
  when no ``pausepoint.backup.completed`` of the site arrives for ``--max-gap-hours`` hours.

Each is replaced by name when it exists, so running this again updates them. docs/automations.md
shows the same automations as a file for ``prefect automation create --from-file``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from prefect import get_client
from prefect.automations import Automation
from prefect.events.actions import RunDeployment, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

from pausepoint.errors import ConfigError, PausepointError

WATCHDOG_DEPLOYMENT = "watchdog/watchdog"  # <flow name>/<deployment name> from prefect.yaml


def _site_match(site: str) -> dict[str, str]:
    return {"prefect.resource.id": f"pausepoint.site.{site}"}


def _notify(block_id: UUID | None, subject: str, body: str) -> list[SendNotification]:
    if block_id is None:
        return []
    return [SendNotification(block_document_id=block_id, subject=subject, body=body)]


def site_automations(
    site: str,
    site_file: str,
    watchdog_deployment_id: UUID,
    notify_block_id: UUID | None = None,
    max_gap: timedelta = timedelta(hours=7),
) -> list[Automation]:
    failed = Automation(
        name=f"pausepoint {site}: backup failed -> watchdog now",
        description="A backup of the site failed: run the watchdog at once (and notify).",
        trigger=EventTrigger(
            expect={"pausepoint.backup.failed"},
            match=_site_match(site),
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            RunDeployment(
                source="selected",
                deployment_id=watchdog_deployment_id,
                parameters={"request": {"site_file": site_file}},
            ),
            *_notify(
                notify_block_id,
                f"pausepoint: a backup of {site} failed",
                "{{ event.payload.error_type }}: {{ event.payload.error }}",
            ),
        ],
    )
    automations = [failed]
    if notify_block_id is not None:
        automations.append(
            Automation(
                name=f"pausepoint {site}: no backup completed",
                description=f"No backup of the site completed for {max_gap}.",
                trigger=EventTrigger(
                    expect={"pausepoint.backup.completed"},
                    match=_site_match(site),
                    posture=Posture.Proactive,
                    threshold=1,
                    within=max_gap,
                ),
                actions=_notify(
                    notify_block_id,
                    f"pausepoint: no backup of {site} completed for {max_gap}",
                    "Check the backup deployment's runs and the worker.",
                ),
            )
        )
    return automations


def install(automations: list[Automation]) -> list[UUID]:
    """Create each automation, replacing one of the same name."""
    ids = []
    with get_client(sync_client=True) as client:
        for automation in automations:
            for old in client.read_automations_by_name(automation.name):
                client.delete_automation(old.id)
            ids.append(automation.create().id)
    return ids


def _ids(notify: str | None) -> tuple[UUID, UUID | None]:
    with get_client(sync_client=True) as client:
        try:
            watchdog = client.read_deployment_by_name(WATCHDOG_DEPLOYMENT).id
        except ObjectNotFound:
            raise ConfigError(
                f"no deployment {WATCHDOG_DEPLOYMENT!r} on this Prefect server: run "
                "`prefect deploy --all --no-prompt` (or `pausepoint serve`) first"
            ) from None
        if notify is None:
            return watchdog, None
        slug, _, name = notify.partition("/")
        try:
            if not name:
                raise ValueError(notify)
            block = client.read_block_document_by_name(
                name, block_type_slug=slug, include_secrets=False
            )
        except (ObjectNotFound, ValueError):
            raise ConfigError(
                f"no notification block {notify!r}: give it as <block-type>/<name>, e.g. "
                "slack-webhook/oncall, and create it in the UI (Blocks) first"
            ) from None
        return watchdog, block.id


def main(argv: list[str] | None = None) -> int:
    from pausepoint.site import load_site

    p = argparse.ArgumentParser(prog="python -m deployments.automations", description=__doc__)
    p.add_argument("--site", required=True, help="site file, as the deployments name it")
    p.add_argument("--notify", help="notification block as <block-type>/<name>")
    p.add_argument("--max-gap-hours", type=float, default=7.0)
    args = p.parse_args(argv)
    try:
        site = load_site(args.site)
        watchdog, block = _ids(args.notify)
        made = site_automations(
            site.site, str(Path(args.site)), watchdog, block, timedelta(hours=args.max_gap_hours)
        )
        install(made)
    except PausepointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for a in made:
        print(f"automation {a.name!r} installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
