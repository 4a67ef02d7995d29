"""One process that serves every pausepoint flow on its schedule: no work pool, no worker.

    PAUSEPOINT_ENV=production python -m deployments.serve      # an environment's files
    pausepoint serve --site site.yaml [--drill-target t.yaml]   # a site file of your own

The embedded default for a single machine. It makes the SAME deployments as
``prefect deploy --all`` because it reads them from ``prefect.yaml``: names, entrypoints,
descriptions, tags, parameters, schedules and concurrency limits, with every ``{{ env.* }}``
placeholder filled from ``deployments.environment.resolve`` (the build step of prefect.yaml) the
way ``prefect deploy`` fills them. Only the work pool and the pull step are ignored: the flows
run in subprocesses of this process, from this checkout.

Needs a running Prefect API (``PREFECT_API_URL``; ``prefect server start`` on the same machine
will do). Stopping the process pauses the schedules; starting it again resumes them.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from deployments.environment import (
    ENV_VAR,
    REQUESTS,
    ROOT,
    check_drill_target,
    check_requests,
    resolve,
)
from pausepoint.errors import ConfigError
from pausepoint.yamlfile import load_yaml

PREFECT_FILE = ROOT / "prefect.yaml"


def values_for(
    site_file: str | Path | None = None,
    drill_target: str | Path | None = None,
    environment: str | None = None,
) -> dict[str, Any]:
    """The values the placeholders are filled from.

    With an environment (argument or ``$PAUSEPOINT_ENV``): :func:`resolve`'s. A site file
    given here replaces the environment's (made absolute); with it, the drill runs only when a
    drill target is given too (the environment's names another site's stores). Without an
    environment the requests' defaults apply and the tags name the site."""
    from pausepoint.site import load_site

    if environment or (os.environ.get(ENV_VAR) and site_file is None):
        values = resolve(environment)
    elif site_file is None:
        raise ConfigError(f"give a site file, or set {ENV_VAR} to an environment to serve")
    else:
        values = {name: {} for name in REQUESTS}
    if site_file is not None:
        site_path = Path(site_file).resolve()
        site = load_site(site_path)
        values["site_file"] = str(site_path)
        values.pop("drill_target_file", None)
        values.setdefault("name", site.site)
    if drill_target is not None:
        target_path = Path(drill_target).resolve()
        check_drill_target(Path(values["site_file"]), target_path)
        values["drill_target_file"] = str(target_path)
    check_requests(values)
    return values


def deployment_specs(
    values: dict[str, Any], prefect_file: Path = PREFECT_FILE
) -> list[dict[str, Any]]:
    """prefect.yaml's deployments with their placeholders filled, as ``prefect deploy`` fills
    them: environment variables first (kept when unset), then the build step's outputs under
    ``env`` (a key whose value is missing is dropped: the request's default applies). The drill
    is left out when ``values`` has no drill target."""
    from prefect.utilities.templating import apply_values

    config = load_yaml(prefect_file, str(prefect_file))
    build_ids = {
        step_inputs.get("id")
        for step in config.get("build") or []
        for step_inputs in step.values()
        if isinstance(step_inputs, dict)
    }
    if "env" not in build_ids:
        raise ConfigError(f"{prefect_file}: no build step with id 'env' to fill parameters from")
    specs = []
    for raw in config["deployments"]:
        spec = apply_values(raw, dict(os.environ), remove_notset=False)
        spec = apply_values(spec, {"env": values})
        if spec["name"] == "drill" and not values.get("drill_target_file"):
            continue
        specs.append(spec)
    return specs


def schedule_of(config: dict[str, Any]):
    """A prefect.yaml schedule entry (cron or interval, as used there) as a Prefect schedule."""
    from prefect.schedules import Cron, Interval

    common = {k: config[k] for k in ("timezone", "active", "parameters", "slug") if k in config}
    if "cron" in config:
        return Cron(config["cron"], day_or=config.get("day_or", True), **common)
    if "interval" in config:
        return Interval(timedelta(seconds=config["interval"]), **common)
    raise ConfigError(f"schedule {config!r}: serve knows 'cron' and 'interval' schedules")


def concurrency_of(config: Any):
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    if config is None or isinstance(config, int):
        return config
    return ConcurrencyLimitConfig(**config)


def runner_deployments(specs: list[dict[str, Any]], root: Path = ROOT) -> list:
    """``flow.to_deployment(...)`` for every spec; flows loaded from their entrypoints under
    ``root`` (the process must run in ``root``: served runs inherit its working directory)."""
    from prefect.flows import load_flow_from_entrypoint

    out = []
    for spec in specs:
        path, func = spec["entrypoint"].split(":")
        flow = load_flow_from_entrypoint(f"{root / path}:{func}")
        out.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                parameters=spec.get("parameters") or {},
                schedules=[schedule_of(s) for s in spec.get("schedules") or []],
                concurrency_limit=concurrency_of(spec.get("concurrency_limit")),
                enforce_parameter_schema=spec.get("enforce_parameter_schema", True),
            )
        )
    return out


def serve(
    site_file: str | Path | None = None,
    drill_target: str | Path | None = None,
    environment: str | None = None,
) -> None:
    """Register the deployments and run their flows until stopped (SIGINT/SIGTERM)."""
    from prefect import serve as prefect_serve
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        raise ConfigError(
            "PREFECT_API_URL is not set: serve needs a running Prefect server (start one with "
            "`prefect server start`, then export PREFECT_API_URL=http://127.0.0.1:4200/api)"
        )
    values = values_for(site_file, drill_target, environment)
    os.chdir(ROOT)  # relative paths in the parameters are read here, as on a worker
    specs = deployment_specs(values)
    if not any(s["name"] == "drill" for s in specs):
        print("no drill target given: the drill deployment is not served", flush=True)
    prefect_serve(*runner_deployments(specs))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m deployments.serve", description=__doc__.split("\n")[0]
    )
    p.add_argument("--env", help=f"environment (default: ${ENV_VAR})")
    p.add_argument("--site", help="site file (default: the environment's)")
    p.add_argument("--drill-target", help="restore target of the weekly drill")
    args = p.parse_args(argv)
    try:
        serve(args.site, args.drill_target, args.env)
    except ConfigError as exc:
        print(f"pausepoint serve: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
