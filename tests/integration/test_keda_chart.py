"""The chart's KEDA ScaledObject (helm/fleet/templates/keda-scaledobject.yaml).

Rendered with `helm template` (the chart's `helm` fixture from test_deploy) and checked
against a ScaledObject schema written from KEDA's documented spec
(tests/integration/schemas/keda-scaledobject.schema.json); the other manifests of the
release stay valid Kubernetes (kubernetes-validate). Off by default; with it on, the
CPU HorizontalPodAutoscaler gives way (KEDA owns the HPA, with a CPU trigger) and the
Deployment leaves its replica count to KEDA.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_deploy import (  # noqa: F401  # fixtures
    CHART,
    DEFAULT_VALUES,
    KUBERNETES_VERSIONS,
    Helm,
    helm,
    validate,
)

Manifest = dict[str, Any]
SCHEMA = Path(__file__).parent / "schemas" / "keda-scaledobject.schema.json"
KEDA = [
    "--set",
    "keda.enabled=true",
    "--set",
    "keda.prometheus.serverAddress=http://prometheus.monitoring:9090",
]


GROUPS_VALUES = CHART / "ci" / "groups-values.yaml"


def _render(helm: Helm, *args: str) -> list[Manifest]:  # noqa: F811
    result = helm(
        "template", "release", str(CHART), "--namespace", "work", "-f", str(DEFAULT_VALUES), *args
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _check(scaled: Manifest) -> None:
    import jsonschema

    jsonschema.validate(scaled, json.loads(SCHEMA.read_text()))


def _kinds(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def test_keda_is_off_by_default(helm: Helm) -> None:  # noqa: F811
    manifests = _render(helm)
    assert not _kinds(manifests, "ScaledObject")


def test_scaled_object_scales_on_the_backlog_with_cpu_beside(
    helm: Helm,  # noqa: F811
    validate: Callable[[Manifest, str], None],  # noqa: F811
) -> None:
    manifests = _render(helm, *KEDA, "--set", "autoscaling.enabled=true", "--set", "queues={bulk}")
    (scaled,) = _kinds(manifests, "ScaledObject")
    _check(scaled)
    spec = scaled["spec"]
    (deployment,) = _kinds(manifests, "Deployment")
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # KEDA sets it
    assert not _kinds(manifests, "HorizontalPodAutoscaler")  # KEDA's HPA replaces it
    backlog, cpu = spec["triggers"]
    assert backlog["type"] == "prometheus" and backlog["metricType"] == "AverageValue"
    query = backlog["metadata"]["query"]
    assert query == ('sum(max by (queue) (fleet_queue_backlog{queue=~"bulk", namespace="work"}))')
    assert backlog["metadata"]["threshold"] == "64"
    assert cpu == {
        "type": "cpu",
        "name": "cpu",
        "metricType": "Utilization",
        "metadata": {"value": "70"},
    }
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 2}
    for manifest in manifests:
        if manifest["kind"] != "ScaledObject":
            for version in KUBERNETES_VERSIONS:
                validate(manifest, version)


def test_every_defined_queue_by_default_with_exact_names(helm: Helm) -> None:  # noqa: F811
    manifests = _render(
        helm,
        *KEDA,
        "--set",
        "keda.cpu.enabled=false",
        "--set",
        "queueDefinitions.queues.a\\.b.type=quorum",
    )
    (scaled,) = _kinds(manifests, "ScaledObject")
    _check(scaled)
    (trigger,) = scaled["spec"]["triggers"]
    alternation = re.search(r'queue=~"(.*?)", ', trigger["metadata"]["query"])
    assert alternation is not None
    # a.b is matched literally (PromQL string escaping of RE2's a\.b).
    assert alternation.group(1) == r"a\\.b|bulk|default|reports"


def test_one_scaled_object_per_worker_group(helm: Helm) -> None:  # noqa: F811
    # groups-values.yaml: groups default, reports, bulk; only bulk requests CPU.
    manifests = _render(helm, "-f", str(GROUPS_VALUES), *KEDA, "--set", "keda.cpu.enabled=false")
    scaled = {m["spec"]["scaleTargetRef"]["name"]: m for m in _kinds(manifests, "ScaledObject")}
    deployments = {
        m["metadata"]["name"]: m
        for m in _kinds(manifests, "Deployment")
        if m["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"
    }
    assert set(scaled) == set(deployments) == {f"release-fleet-{g}" for g in GROUPS}
    for name, obj in scaled.items():
        _check(obj)
        group = name.removeprefix("release-fleet-")
        assert obj["metadata"]["labels"]["fleet/worker-group"] == group
        query = obj["spec"]["triggers"][0]["metadata"]["query"]
        assert f'queue=~"{group}", ' in query  # the queues that group consumes, only
        assert "replicas" not in deployments[name]["spec"]  # KEDA sets it
    assert not _kinds(manifests, "HorizontalPodAutoscaler")  # bulk's gives way to KEDA


GROUPS = ("bulk", "default", "reports")


def test_cpu_trigger_needs_each_groups_cpu_request(helm: Helm) -> None:  # noqa: F811
    result = helm(
        "template",
        "release",
        str(CHART),
        "-f",
        str(GROUPS_VALUES),
        *KEDA,
        "--set",
        "resources=null",
    )
    assert result.returncode != 0
    assert 'worker group "default": keda.cpu.enabled needs resources.requests.cpu' in result.stderr


def test_schema_catches_what_keda_would_refuse() -> None:
    import jsonschema

    good: Manifest = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "w"},
        "spec": {
            "scaleTargetRef": {"name": "w"},
            "fallback": {"failureThreshold": 3, "replicas": 2},
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {"serverAddress": "http://p", "query": "1", "threshold": "5"},
                }
            ],
        },
    }
    _check(good)
    numeric = json.loads(json.dumps(good))
    numeric["spec"]["triggers"][0]["metadata"]["threshold"] = 5  # metadata must be strings
    only_cpu = json.loads(json.dumps(good))
    only_cpu["spec"]["triggers"] = [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}
    ]  # a fallback needs an AverageValue trigger besides cpu
    typo = json.loads(json.dumps(good))
    typo["spec"]["pollingIntervall"] = 15
    for bad in (numeric, only_cpu, typo):
        with pytest.raises(jsonschema.ValidationError):
            _check(bad)


@pytest.mark.parametrize(
    ("sets", "complaint"),
    [
        (["keda.enabled=true"], "keda.prometheus.serverAddress"),
        ([*KEDA[1::2], "keda.minReplicas=5", "keda.maxReplicas=2"], "must not exceed"),
        ([*KEDA[1::2], "keda.backlogPerReplica=0"], "backlogPerReplica"),
    ],
)
def test_bad_keda_values_are_refused(helm: Helm, sets: list[str], complaint: str) -> None:  # noqa: F811
    args = [arg for pair in (("--set", s) for s in sets) for arg in pair]
    result = helm("template", "release", str(CHART), "-f", str(DEFAULT_VALUES), *args)
    assert result.returncode != 0
    assert complaint in result.stderr
