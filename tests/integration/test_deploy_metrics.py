"""The chart's worker metrics (values.metrics): off by default; on, every worker pod
runs `fleet worker --metrics-port` with a named container port, a headless Service
selects the pods, and an optional ServiceMonitor scrapes that Service. Rendered with
`helm template` and validated like the rest of the chart (see test_deploy)."""

from __future__ import annotations

from collections.abc import Callable

from fleet.cli import build_parser
from tests.integration.test_deploy import (  # noqa: F401 - fixtures
    KUBERNETES_VERSIONS,
    Helm,
    Manifest,
    _one,
    _render,
    helm,
    validate,
)

ON = ("--set", "metrics.enabled=true", "--set", "metrics.port=9200")


def _container(deployment: Manifest) -> Manifest:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def test_metrics_are_off_by_default(helm: Helm) -> None:  # noqa: F811
    manifests = _render(helm)
    container = _container(_one(manifests, "Deployment"))
    assert "--metrics-port" not in container["args"]
    assert "ports" not in container
    assert not [m for m in manifests if m["kind"] in ("Service", "ServiceMonitor")]


def test_metrics_port_service_and_service_monitor(
    helm: Helm,  # noqa: F811
    validate: Callable[[Manifest, str], None],  # noqa: F811
) -> None:
    labels = ("--set", "metrics.serviceMonitor.labels.release=prometheus")
    manifests = _render(helm, *ON, "--set", "metrics.serviceMonitor.enabled=true", *labels)
    deployment = _one(manifests, "Deployment")
    container = _container(deployment)
    args = build_parser().parse_args(container["args"])
    assert args.metrics_port == 9200
    assert container["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]
    service = _one(manifests, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None"
    assert all(pod_labels[k] == v for k, v in service["spec"]["selector"].items())
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    for version in KUBERNETES_VERSIONS:
        for manifest in manifests:
            if manifest["kind"] != "ServiceMonitor":  # a CRD: not in the Kubernetes schemas
                validate(manifest, version)
    monitor = _one(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert all(service["metadata"]["labels"][k] == v for k, v in selected.items())
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["work"]}


def test_service_monitor_needs_metrics_enabled(helm: Helm) -> None:  # noqa: F811
    manifests = _render(helm, "--set", "metrics.serviceMonitor.enabled=true")
    assert not [m for m in manifests if m["kind"] in ("Service", "ServiceMonitor")]


def test_chart_refuses_a_bad_metrics_port(helm: Helm) -> None:  # noqa: F811
    result = helm("template", "r", "helm/fleet", "--set", "metrics.port=70000")
    assert result.returncode != 0
    assert "metrics" in result.stderr and "port" in result.stderr
