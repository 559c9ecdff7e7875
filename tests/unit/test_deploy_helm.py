"""The Helm chart deploy/helm/liftstream passes ``helm lint``, renders with ``helm
template``, and every rendered manifest passes Kubernetes' own schemas strictly
(kubernetes-validate, which ships them: no cluster, no network). helm is the one ``make
setup`` builds from its Go module into .tools/."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "liftstream"
CI_VALUES = CHART / "ci" / "values.yaml"
#: The Kubernetes release the manifests are checked against (the chart needs >= 1.27).
KUBE_VERSION = "1.33.0"


def _helm() -> Path:
    version = re.search(r"^HELM_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert version, "the Makefile pins HELM_VERSION"
    helm = ROOT / ".tools" / f"helm-{version.group(1)}" / "helm"
    if not helm.exists():
        pytest.fail(f"{helm} is missing: run `make setup`")
    return helm


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_helm()), *args], capture_output=True, text=True, check=False, cwd=ROOT
    )


class _StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (kubectl refuses it too)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = {key for key in keys if keys.count(key) > 1}
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"keys given twice: {sorted(map(str, repeated))}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def render(*settings: str) -> list[dict[str, Any]]:
    result = helm(
        "template", "demo", str(CHART), "--namespace", "experiments",
        "--kube-version", KUBE_VERSION, "-f", str(CI_VALUES), *settings,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.load_all(result.stdout, Loader=_StrictLoader) if doc]


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return render()


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def test_helm_lint_passes_strict() -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(CI_VALUES),
                  "--kube-version", KUBE_VERSION)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rendered_manifest_passes_the_kubernetes_schema_strictly(
    manifests: list[dict[str, Any]],
) -> None:
    assert len(manifests) >= 10
    for manifest in manifests:
        # strict: a field Kubernetes does not know (a typo, a misplaced key) fails too.
        kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)


def test_strict_validation_catches_a_misplaced_field(manifests: list[dict[str, Any]]) -> None:
    stream = by_kind(manifests, "Deployment")["demo-liftstream-stream"]
    broken = yaml.safe_load(yaml.safe_dump(stream))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


def test_results_is_one_statefulset_replica_with_its_own_volume(
    manifests: list[dict[str, Any]],
) -> None:
    results = by_kind(manifests, "StatefulSet")["demo-liftstream-results"]
    assert results["spec"]["replicas"] == 1
    (claim,) = results["spec"]["volumeClaimTemplates"]
    container = results["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert claim["metadata"]["name"] == "data"
    assert any(arg.startswith("--db=/data/") for arg in container["command"])
    assert "demo-liftstream-results" not in by_kind(manifests, "Deployment")


def test_workers_collector_and_control_are_deployments_with_probes_and_resources(
    manifests: list[dict[str, Any]],
) -> None:
    deployments = by_kind(manifests, "Deployment")
    assert set(deployments) == {
        "demo-liftstream-stream", "demo-liftstream-collector", "demo-liftstream-control",
    }  # fmt: skip
    workloads = [*deployments.values(), *by_kind(manifests, "StatefulSet").values()]
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"] + pod.get("initContainers", []):
            assert container["resources"]["requests"], container["name"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
        (container,) = pod["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_worker_probes_reach_the_port_its_web_server_binds(
    manifests: list[dict[str, Any]],
) -> None:
    stream = by_kind(manifests, "Deployment")["demo-liftstream-stream"]
    (container,) = stream["spec"]["template"]["spec"]["containers"]
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    (port,) = container["ports"]
    assert container["readinessProbe"]["httpGet"]["port"] == port["name"]
    assert env["LIFTSTREAM_STREAM_WEB_PORT"] == str(port["containerPort"])
    assert env["LIFTSTREAM_STREAM_WEB_HOST"] == "0.0.0.0"  # reachable by the kubelet


def test_workers_have_a_disruption_budget(manifests: list[dict[str, Any]]) -> None:
    budget = by_kind(manifests, "PodDisruptionBudget")["demo-liftstream-stream"]
    stream = by_kind(manifests, "Deployment")["demo-liftstream-stream"]
    selector = stream["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["selector"]["matchLabels"] == selector
    assert budget["spec"]["maxUnavailable"] == 1


def test_the_operator_token_comes_from_a_secret(manifests: list[dict[str, Any]]) -> None:
    (secret,) = by_kind(manifests, "Secret").values()
    assert set(secret["data"]) == {"metrics-token"}
    for workload in by_kind(manifests, "Deployment").values():
        env = {e["name"]: e for e in workload["spec"]["template"]["spec"]["containers"][0]["env"]}
        reference = env["LIFTSTREAM_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert reference == {"name": secret["metadata"]["name"], "key": "metrics-token"}
        assert env["LIFTSTREAM_REPLICATION_FACTOR"]["value"] == "3"
        assert env["LIFTSTREAM_MIN_INSYNC_REPLICAS"]["value"] == "2"


def test_an_existing_secret_replaces_the_generated_one() -> None:
    manifests = render("--set", "secrets.existingSecret=ops-liftstream")
    assert by_kind(manifests, "Secret") == {}
    control = by_kind(manifests, "Deployment")["demo-liftstream-control"]
    env = {e["name"]: e for e in control["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LIFTSTREAM_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ops-liftstream"


def test_worker_count_is_a_value_and_cannot_exceed_the_partitions() -> None:
    manifests = render("--set", "stream.replicas=6")
    assert by_kind(manifests, "Deployment")["demo-liftstream-stream"]["spec"]["replicas"] == 6
    result = helm("template", "demo", str(CHART), "-f", str(CI_VALUES),
                  "--kube-version", KUBE_VERSION, "--set", "stream.replicas=13")  # fmt: skip
    assert result.returncode != 0
    assert "stream.replicas (13) > kafka.partitions (12)" in result.stderr


def test_the_kafka_address_is_required() -> None:
    result = helm("template", "demo", str(CHART), "--kube-version", KUBE_VERSION)
    assert result.returncode != 0
    assert "kafka.bootstrap" in result.stderr
