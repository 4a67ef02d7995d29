"""prefect.yaml, the per-environment files and the served deployments agree (no server here;
tests/e2e/test_deploy_all.py deploys them for real)."""

from __future__ import annotations

import inspect
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate

from deployments.environment import ROOT, resolve
from deployments.serve import deployment_specs, runner_deployments, values_for
from pausepoint import requests
from pausepoint.errors import ConfigError

CONFIG = yaml.safe_load((ROOT / "prefect.yaml").read_text())
ENVIRONMENTS = sorted(
    p.name for p in (ROOT / "deployments").iterdir() if (p / "site.yaml").is_file()
)
POINT = "20261128T003119Z-3f9a"
MODEL = {
    "backup": requests.BackupRequest,
    "restore": requests.RestoreRequest,
    "watchdog": requests.WatchdogRequest,
    "prune": requests.PruneRequest,
    "drill": requests.DrillRequest,
    "check": requests.CheckRequest,
}


def _flow(entrypoint: str) -> Flow:
    path, func = entrypoint.split(":")
    return load_flow_from_entrypoint(f"{ROOT / path}:{func}")


def test_every_flow_is_deployed_once_with_the_schedule_it_is_meant_to_have():
    deps = {d["name"]: d for d in CONFIG["deployments"]}
    assert sorted(deps) == sorted(MODEL)
    assert deps["backup"]["schedules"][0]["cron"] == "0 */6 * * *"
    assert deps["restore"]["schedules"] == []  # only ever run on purpose
    assert deps["check"]["schedules"] == []  # run from the UI or `pausepoint check`
    assert deps["watchdog"]["schedules"] == [{"interval": 60}]
    assert deps["prune"]["schedules"][0]["cron"] == "30 3 * * *"  # daily
    assert deps["drill"]["schedules"][0]["cron"] == "0 5 * * 0"  # weekly
    for d in deps.values():
        assert d["work_pool"]["name"] == "pausepoint"
        assert d["concurrency_limit"]["limit"] == 1
        assert d["enforce_parameter_schema"] is True
        assert all(s.get("timezone", "UTC") == "UTC" for s in d["schedules"])


def test_the_worker_runs_the_flows_from_its_own_checkout():
    (step,) = CONFIG["pull"]
    assert step == {
        "prefect.deployments.steps.set_working_directory": {"directory": "{{ $PAUSEPOINT_HOME }}"}
    }
    (build,) = CONFIG["build"]
    assert build == {"deployments.environment.resolve": {"id": "env"}}


@pytest.mark.parametrize("dep", CONFIG["deployments"], ids=lambda d: d["name"])
def test_each_entrypoint_imports_a_flow_that_takes_one_request(dep):
    flow = _flow(dep["entrypoint"])
    assert flow.name == dep["name"]
    params = inspect.signature(flow.fn).parameters
    assert list(params) == ["request"]
    assert params["request"].annotation in (MODEL[dep["name"]], MODEL[dep["name"]].__name__)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_environment_fills_every_parameter_with_a_valid_request(environment):
    specs = {s["name"]: s for s in deployment_specs(resolve(environment))}
    assert sorted(specs) == sorted(MODEL)
    for name, spec in specs.items():
        request = spec["parameters"]["request"]
        assert request["site_file"] == f"deployments/{environment}/site.yaml"
        assert not any("{{" in str(v) for v in request.values()), request
        assert spec["tags"] == ["pausepoint", environment]
        # As the server checks a deployment's defaults (required fields may come per run) ...
        schema = parameter_schema(_flow(spec["entrypoint"]).fn).model_dump()
        errors = validate(spec["parameters"], schema, raise_on_error=False, ignore_required=True)
        assert errors == [], errors
        if name == "restore":
            # ... the restore point and its confirmation are never defaults: each run names them.
            assert set(request) == {"site_file"}
            with pytest.raises(ConfigError, match="point_id: is required"):
                requests.parse_request(MODEL[name], **request)
            requests.parse_request(MODEL[name], **request, point_id=POINT, confirm=POINT)
        else:
            requests.parse_request(MODEL[name], **request)
    assert specs["drill"]["parameters"]["request"]["target_file"] == (
        f"deployments/{environment}/drill-target.yaml"
    )


def test_the_servers_schema_check_would_catch_a_mistyped_default():
    schema = parameter_schema(_flow("flows/prune.py:prune").fn).model_dump()
    bad = {"request": {"site_file": "s.yaml", "keep_last": "7"}}
    assert validate(bad, schema, raise_on_error=False, ignore_required=True) != []


def test_per_environment_values_reach_the_parameters():
    staging = {s["name"]: s for s in deployment_specs(resolve("staging"))}
    assert staging["backup"]["parameters"]["request"]["labels"] == {"environment": "staging"}
    assert staging["prune"]["parameters"]["request"] == {
        "site_file": "deployments/staging/site.yaml",
        "keep_last": 8,
        "keep_daily_days": 7,
        "dry_run": False,
    }


def _env_copy(tmp_path: Path, name: str = "production") -> Path:
    directory = tmp_path / "envs" / name
    shutil.copytree(ROOT / "deployments" / name, directory)
    return directory


def test_a_value_left_out_takes_the_request_default(tmp_path):
    directory = _env_copy(tmp_path)
    (directory / "parameters.yaml").write_text("prune: {keep_last: 3}\n")
    values = resolve(str(directory))
    assert values["site_file"] == f"{directory}/site.yaml"  # a path is used as it is
    prune = {s["name"]: s for s in deployment_specs(values)}["prune"]
    assert prune["parameters"]["request"] == {"site_file": values["site_file"], "keep_last": 3}
    assert requests.parse_request(requests.PruneRequest, **prune["parameters"]["request"]) == (
        requests.PruneRequest(site_file=values["site_file"], keep_last=3, keep_daily_days=30)
    )


def test_deploy_refuses_without_an_environment(monkeypatch):
    monkeypatch.delenv("PAUSEPOINT_ENV", raising=False)
    with pytest.raises(ConfigError, match="PAUSEPOINT_ENV is not set"):
        resolve()
    with pytest.raises(ConfigError, match=r"environment directory .*nowhere does not exist"):
        resolve("nowhere")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("prune: {keep_last: 0}\n", "keep_last: should be greater than or equal to 1, not 0"),
        ("prune: {keep_lats: 3}\n", r"\['keep_lats'\] cannot be set here"),
        ("backup: {site_file: other.yaml}\n", r"\['site_file'\] cannot be set here"),
        ("restore: {point_id: x}\n", "'restore' is not a deployment with per-environment"),
        ("backup: {labels: {Bad Key: x}}\n", "labels.Bad Key"),
    ],
)
def test_deploy_refuses_bad_parameter_values(tmp_path, text, match):
    directory = _env_copy(tmp_path)
    (directory / "parameters.yaml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        resolve(str(directory))


def test_deploy_refuses_a_drill_target_over_the_sites_own_databases(tmp_path):
    directory = _env_copy(tmp_path)
    target = yaml.safe_load((directory / "drill-target.yaml").read_text())
    del target["stores"]["auditor-db"]
    (directory / "drill-target.yaml").write_text(yaml.safe_dump(target))
    with pytest.raises(ConfigError, match=r"leaves store\(s\) \['auditor-db'\] of site production"):
        resolve(str(directory))


def test_serve_makes_the_same_deployments_without_a_server():
    """What `pausepoint serve` registers, built without a server: the e2e test
    (tests/e2e/test_serve.py) registers them with a real one."""
    specs = deployment_specs(resolve("production"))
    deps = {d.name: d for d in runner_deployments(specs)}
    assert sorted(deps) == sorted(MODEL)
    for spec in specs:
        d = deps[spec["name"]]
        assert d.parameters == spec["parameters"]
        assert d.entrypoint == spec["entrypoint"]
        assert d.work_pool_name is None  # served: no pool, no worker
        assert d.concurrency_limit == 1
        assert (
            d.concurrency_options.collision_strategy
            == spec["concurrency_limit"]["collision_strategy"]
        )
        got = [s.schedule.model_dump(exclude={"anchor_date"}) for s in d.schedules]
        want = [
            {"cron": s["cron"], "timezone": "UTC", "day_or": True}
            if "cron" in s
            else {"interval": timedelta(seconds=s["interval"]), "timezone": "UTC"}
            for s in spec["schedules"]
        ]
        assert got == want


def test_serve_with_a_site_file_of_its_own(tmp_path):
    site = tmp_path / "site.yaml"
    shutil.copy(ROOT / "deployments/staging/site.yaml", site)
    values = values_for(site_file=site)
    specs = {s["name"]: s for s in deployment_specs(values)}
    assert "drill" not in specs  # no drill target: the drill is not served
    assert specs["backup"]["parameters"]["request"] == {"site_file": str(site)}
    assert specs["backup"]["tags"] == ["pausepoint", "staging"]
    values = values_for(site_file=site, drill_target=ROOT / "deployments/staging/drill-target.yaml")
    drill = {s["name"]: s for s in deployment_specs(values)}["drill"]
    assert drill["parameters"]["request"]["target_file"] == str(
        ROOT / "deployments/staging/drill-target.yaml"
    )
