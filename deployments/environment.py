"""Which environment the deployments are made for, and its parameter values.

An environment is a directory holding the files the deployments' parameters point at:

    deployments/<name>/site.yaml          the site (hosts, ports, stores; secrets by reference)
    deployments/<name>/drill-target.yaml  scratch databases the weekly drill restores into
    deployments/<name>/parameters.yaml    per-deployment parameter values (labels, retention)

``PAUSEPOINT_ENV`` selects it: a name under ``deployments/`` (``production``, ``staging``) or
the path of such a directory. ``prefect.yaml`` runs :func:`resolve` as its build step (id
``env``) and fills every parameter from its result (``{{ env.site_file }}``,
``{{ env.prune.keep_last }}``); ``deployments/serve.py`` applies the same result to the same
file, so a served process and ``prefect deploy --all`` make the same deployments. A value left
out of parameters.yaml is left out of the deployment, and the request model's default applies.

Everything is validated here, at deploy time: the site file, the drill target (it must move every
store of the site elsewhere), and each request with its values. Secrets are never parameters;
the site file names them by reference (``{block: NAME}`` or ``{env: VAR}``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pausepoint.errors import ConfigError
from pausepoint.requests import (
    BackupRequest,
    DrillRequest,
    PruneRequest,
    WatchdogRequest,
    parse_request,
)
from pausepoint.yamlfile import load_yaml

ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "PAUSEPOINT_ENV"
SITE_FILE = "site.yaml"
DRILL_TARGET_FILE = "drill-target.yaml"
PARAMETERS_FILE = "parameters.yaml"
# Per deployment in parameters.yaml: which request fields it may set (paths are not set there).
REQUESTS = {
    "backup": (BackupRequest, {"labels"}),
    "watchdog": (WatchdogRequest, set()),
    "prune": (PruneRequest, {"keep_last", "keep_daily_days", "dry_run"}),
    "drill": (DrillRequest, set()),
}


def environment_dir(environment: str | None = None, root: Path = ROOT) -> tuple[Path, str]:
    """(directory, path prefix used in parameters) of ``environment`` or ``$PAUSEPOINT_ENV``.

    A bare name maps to ``deployments/<name>`` and is given to the flows relative to the
    checkout (the worker's working directory), so the deployment works from any checkout. A
    path is used as it is (made absolute)."""
    name = environment if environment is not None else os.environ.get(ENV_VAR, "")
    if not name:
        raise ConfigError(
            f"{ENV_VAR} is not set: set it to the environment to deploy, a directory name under "
            f"deployments/ (e.g. {ENV_VAR}=production) or the path of such a directory"
        )
    if "/" in name or name in (".", ".."):
        path = Path(name).expanduser().resolve()
        return path, str(path)
    return root / "deployments" / name, f"deployments/{name}"


def _read_parameters(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    data = load_yaml(path, f"parameters file {path}") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must map deployment names to their parameter values")
    for name, values in data.items():
        if name not in REQUESTS:
            raise ConfigError(
                f"{path}: {name!r} is not a deployment with per-environment values; "
                f"use one of {sorted(n for n, (_, f) in REQUESTS.items() if f)}"
            )
        allowed = REQUESTS[name][1]
        if not isinstance(values, dict) or not set(values) <= allowed:
            extra = sorted(set(values) - allowed) if isinstance(values, dict) else values
            raise ConfigError(
                f"{path}: {name}: {extra!r} cannot be set here; {name} takes "
                f"{sorted(allowed) or 'no values'} (site and target files are found by path)"
            )
    return data


def check_drill_target(site_file: Path, target_file: Path) -> None:
    """The drill replaces its target's databases: it must never aim at the site's own."""
    from pausepoint.restore import load_target
    from pausepoint.site import load_site

    site = load_site(site_file)
    target = load_target(target_file)
    live = {s.name for _, s in site.stores()}
    moved = {
        name
        for name, overrides in target.stores.items()
        if {"host", "port", "database", "database_map"} & set(overrides)
    }
    if live - moved:
        raise ConfigError(
            f"drill target {target_file} leaves store(s) {sorted(live - moved)} of site "
            f"{site.site} where they are: a drill replaces its target's data, so give each "
            "store a scratch database (database:, database_map: or host:)"
        )


def resolve(environment: str | None = None, root: Path = ROOT) -> dict[str, Any]:
    """The values prefect.yaml's parameters are filled from (see the module docstring).

    Also a ``prefect deploy`` build step (``deployments.environment.resolve``): a failure here
    stops the deploy before anything is registered."""
    directory, prefix = environment_dir(environment, root)
    if not directory.is_dir():
        raise ConfigError(
            f"environment directory {directory} does not exist: create it with {SITE_FILE}, "
            f"{DRILL_TARGET_FILE} and {PARAMETERS_FILE} (copy deployments/staging/)"
        )
    site_path, target_path = directory / SITE_FILE, directory / DRILL_TARGET_FILE
    for path in (site_path, target_path):
        if not path.is_file():
            raise ConfigError(f"environment {directory.name}: {path} is missing")
    check_drill_target(site_path, target_path)
    values = _read_parameters(directory / PARAMETERS_FILE)
    out: dict[str, Any] = {
        "name": directory.name,
        "site_file": f"{prefix}/{SITE_FILE}",
        "drill_target_file": f"{prefix}/{DRILL_TARGET_FILE}",
    }
    for name in REQUESTS:
        out[name] = dict(values.get(name) or {})
    check_requests(out)
    return out


def check_requests(values: dict[str, Any]) -> None:
    """Build every request the deployments will send from ``values``: a typo fails the deploy,
    not the first scheduled run. The drill is checked only when a drill target is given."""
    for name, (model, _) in REQUESTS.items():
        fields: dict[str, Any] = {"site_file": values["site_file"], **values.get(name, {})}
        if model is DrillRequest:
            if not values.get("drill_target_file"):
                continue
            fields["target_file"] = values["drill_target_file"]
        parse_request(model, **fields)
