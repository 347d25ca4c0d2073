"""The Helm chart: rendered and linted by the real Helm engine, validated against Kubernetes 1.32."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml
from tests.chart import helm
from tests.conftest import ROOT

helm_python = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "ha-off": {"replicas": 1},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
            "podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
        },
        "prometheusRule": {"enabled": True, "queueDepthThreshold": 50},
    },
    "no-netpol": {"networkPolicy": {"enabled": False}},
    "custom-image": {
        "image": {
            "repository": "registry.example.com/ml/planet-operator",
            "tag": "1.2.3",
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "extraArgs": ["--verbose"],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "priorityClassName": "system-cluster-critical",
    },
    "peering-crds-preinstalled": {
        "replicas": 3,
        "watchNamespaces": ["team-a"],
        "peering": {"installCRDs": False, "name": "planet-ha"},
    },
}
#: Groups whose objects kubernetes-validate knows (built-in Kubernetes APIs).
BUILTIN = re.compile(
    r"^(v1|(apps|batch|policy|networking\.k8s\.io|rbac\.authorization\.k8s\.io|apiextensions\.k8s\.io)/v1)$"
)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    values = VARIANTS[request.param]
    return request.param, values, helm.render(values)


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = helm.one(objects, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return dict(pod["containers"][0])


def test_helm_lint_strict_passes_for_every_variant() -> None:
    for name, values in VARIANTS.items():
        report = helm_python.lint(helm.CHART, values, strict=True, kube_version=f"v{helm.KUBE_VERSION}")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, f"{name}: {report}"


def test_builtin_objects_are_valid_kubernetes_1_32(variant: Any) -> None:
    name, _, objects = variant
    checked = 0
    for obj in objects:
        if BUILTIN.match(obj["apiVersion"]):
            kubernetes_validate.validate(obj, helm.KUBE_VERSION, strict=True)
            checked += 1
    assert checked >= 5, name


def test_every_object_is_labelled_and_namespaced_where_it_should_be(variant: Any) -> None:
    _, _, objects = variant
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "ClusterKopfPeering"}
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == helm.RELEASE, obj["metadata"]["name"]
        assert labels.get("app.kubernetes.io/managed-by") == "Helm"
        assert ("namespace" in obj["metadata"]) == (obj["kind"] not in cluster_scoped), obj["kind"]


# --- Security ---------------------------------------------------------------------------------


def test_pod_runs_restricted(variant: Any) -> None:
    _, _, objects = variant
    pod = helm.one(objects, "Deployment")["spec"]["template"]["spec"]
    ctx = container(objects)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctx["runAsNonRoot"] is True
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    # Python and Kopf need a writable /tmp on a read-only root.
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert container(objects)["resources"]["limits"]["memory"]


def test_rbac_has_no_wildcards(variant: Any) -> None:
    _, _, objects = variant
    for role in helm.of_kind(objects, "ClusterRole") + helm.of_kind(objects, "Role"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), f"{role['metadata']['name']}: {rule}"
            assert "nonResourceURLs" not in rule and "resourceNames" not in rule


def _grants(objects: list[dict[str, Any]], namespace: str | None) -> set[helm.Rule]:
    """What the operator's ServiceAccount may do cluster-wide (namespace None) or in ``namespace``."""
    sa = helm.one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    roles = {("ClusterRole", r["metadata"]["name"]): r for r in helm.of_kind(objects, "ClusterRole")}
    roles |= {
        ("Role", r["metadata"]["name"], r["metadata"]["namespace"]): r for r in helm.of_kind(objects, "Role")
    }
    out: set[helm.Rule] = set()
    for binding in helm.of_kind(objects, "ClusterRoleBinding") + helm.of_kind(objects, "RoleBinding"):
        bound_ns = binding["metadata"].get("namespace")
        if bound_ns is not None and bound_ns != namespace:
            continue
        if not any(s["kind"] == "ServiceAccount" and s["name"] == sa for s in binding["subjects"]):
            continue
        ref = binding["roleRef"]
        key = (
            (ref["kind"], ref["name"])
            if ref["kind"] == "ClusterRole"
            else (ref["kind"], ref["name"], bound_ns)
        )
        assert key in roles, f"{binding['metadata']['name']} binds a role the chart does not ship: {key}"
        out |= helm.granted(roles[key]["rules"])
    return out


def test_rbac_grants_exactly_what_the_operator_uses(variant: Any) -> None:
    name, values, objects = variant
    watched = values.get("watchNamespaces", [])
    peered = values.get("replicas", 2) > 1
    needed = helm.operator_api_use(peered=peered, clusterwide=not watched)
    for namespace in watched or [None]:
        have = _grants(objects, namespace)
        assert needed - have == set(), f"{name}/{namespace}: missing {sorted(needed - have)}"
        assert have - needed == set(), f"{name}/{namespace}: more than needed {sorted(have - needed)}"


def test_namespaced_rbac_grants_nothing_on_pipelines_cluster_wide() -> None:
    objects = helm.render(VARIANTS["namespaced"])
    # Not even for Kopf: its CRD and namespace scanning is off.
    assert helm.of_kind(objects, "ClusterRole") == [] and helm.of_kind(objects, "ClusterRoleBinding") == []
    roles = [r for r in helm.of_kind(objects, "Role") if not _uninstall_hook(r)]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    args = container(objects)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args
    # Namespaced peering: a KopfPeering in each watched namespace.
    assert sorted(p["metadata"]["namespace"] for p in helm.of_kind(objects, "KopfPeering")) == [
        "team-a",
        "team-b",
    ]


# --- The operator process: flags, probes, HA ------------------------------------------------


def _operator_args(objects: list[dict[str, Any]]) -> list[str]:
    return [str(a) for a in container(objects)["args"]]


def test_args_are_flags_planet_operator_accepts(variant: Any) -> None:
    from planet_operator.cli import main as cli

    _, _, objects = variant
    parsed = cli.build_parser().parse_args(_operator_args(objects))
    assert parsed.command == "operator"
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert parsed.metrics_port == ports["metrics"]
    assert parsed.liveness == f"http://0.0.0.0:{ports['health']}/healthz"


def test_probes_use_kopfs_liveness_endpoint(variant: Any) -> None:
    _, _, objects = variant
    main = container(objects)
    for probe in ("livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_ha_default_peers_two_replicas_with_a_pdb() -> None:
    objects = helm.render()
    deployment = helm.one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "--peering=planetgen" in _operator_args(objects)
    # Kopf pauses every peer sharing a priority: `planet operator` derives each pod's from POD_NAME.
    assert container(objects)["command"] == ["planet"]
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert helm.one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    peering = helm.one(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "planetgen"
    # Its CRD comes in the same release, so the object is created after install by a hook.
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    crds = {c["metadata"]["name"] for c in helm.of_kind(objects, "CustomResourceDefinition")}
    assert crds == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}


def test_peering_objects_match_the_peering_crds_schema() -> None:
    objects = helm.render()
    crds = {c["spec"]["names"]["kind"]: c for c in helm.of_kind(objects, "CustomResourceDefinition")}
    for kind in ("ClusterKopfPeering", "KopfPeering"):
        crd = crds[kind]
        assert crd["spec"]["group"] == "kopf.dev"
        assert crd["spec"]["scope"] == ("Cluster" if kind.startswith("Cluster") else "Namespaced")
    peering = helm.one(objects, "ClusterKopfPeering")
    assert peering["apiVersion"] == "kopf.dev/v1"
    schema = crds["ClusterKopfPeering"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.validate(peering, {k: v for k, v in schema.items() if not k.startswith("x-")})


def test_ha_off_is_standalone_without_pdb_or_peering() -> None:
    objects = helm.render(VARIANTS["ha-off"])
    args = _operator_args(objects)
    assert "--standalone" in args and not any(a.startswith("--peering") for a in args)
    assert container(objects)["command"] == ["planet"]
    for kind in ("PodDisruptionBudget", "ClusterKopfPeering", "KopfPeering", "CustomResourceDefinition"):
        assert helm.of_kind(objects, kind) == [], kind


def test_preinstalled_peering_crds_make_the_peering_object_a_plain_resource() -> None:
    objects = helm.render(VARIANTS["peering-crds-preinstalled"])
    assert helm.of_kind(objects, "CustomResourceDefinition") == []
    peering = helm.one(objects, "KopfPeering")
    assert peering["metadata"]["name"] == "planet-ha"
    assert "helm.sh/hook" not in peering["metadata"].get("annotations", {})
    assert "--peering=planet-ha" in _operator_args(objects)


def test_custom_image_and_scheduling() -> None:
    objects = helm.render(VARIANTS["custom-image"])
    pod = helm.one(objects, "Deployment")["spec"]["template"]["spec"]
    assert container(objects)["image"] == "registry.example.com/ml/planet-operator:1.2.3"
    assert container(objects)["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert _operator_args(objects)[-1] == "--verbose"
    digest = "sha256:" + "a" * 64
    pinned = helm.render({"image": {"digest": digest}})
    assert container(pinned)["image"] == f"ghcr.io/planetgen/planet-operator@{digest}"


def test_default_image_tag_is_the_app_version() -> None:
    chart_yaml = yaml.safe_load((helm.CHART / "Chart.yaml").read_text())
    assert chart_yaml["apiVersion"] == "v2" and chart_yaml["appVersion"] == "0.1.0"
    assert container(helm.render())["image"].endswith(":0.1.0")


# --- Network -----------------------------------------------------------------------------------


def test_network_policy_admits_only_metrics_and_health() -> None:
    objects = helm.render()
    policy = helm.one([o for o in objects if not _uninstall_hook(o)], "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert {p["port"] for p in ingress["ports"]} == {8080, 9090}
    assert ingress["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP"), (9090, "TCP")} <= egress_ports
    assert helm.of_kind(helm.render(VARIANTS["no-netpol"]), "NetworkPolicy") == []


def test_network_policy_restricts_the_api_server_to_given_cidrs() -> None:
    objects = helm.render({"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [443]}}})
    policy = helm.one([o for o in objects if not _uninstall_hook(o)], "NetworkPolicy")["spec"]
    api = policy["egress"][0]
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert api["ports"] == [{"port": 443, "protocol": "TCP"}]


# --- Monitoring ----------------------------------------------------------------------------------


def _exported_metric_names() -> set[str]:
    """Every series name the operator and the predictors export, from their registries."""
    import prometheus_client

    from planet_operator import metrics as operator_metrics  # noqa: F401  (registers on REGISTRY)
    from planet_predictors.serving import metrics as predictor_metrics

    registry = prometheus_client.CollectorRegistry()
    predictor_metrics.Metrics(pipeline="p", revision="r", registry=registry)
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",)}
    names: set[str] = set()
    for source in (registry, prometheus_client.REGISTRY):
        for family in source.collect():
            if family.name.startswith("planet_"):
                names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def _planet_names(text: str) -> set[str]:
    return set(re.findall(r"\bplanet_[a-z_]+\b", text))


#: Enough of prometheus-operator's monitoring.coreos.com/v1 CRDs to catch a misplaced field.
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {"type": "object"},
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$"},
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_RULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {
                                            "type": "string",
                                            "pattern": "^(0|(([0-9]+)(ms|s|m|h|d|w|y))+)$",
                                        },
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def test_service_monitor_scrapes_the_metrics_service() -> None:
    objects = helm.render(VARIANTS["monitoring"])
    monitor = helm.one(objects, "ServiceMonitor")
    jsonschema.validate(monitor, SERVICE_MONITOR)
    service = helm.one(objects, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert helm.of_kind(helm.render(), "ServiceMonitor") == []


def test_pod_monitor_scrapes_the_predictor_pods_the_operator_makes() -> None:
    from planet_contracts.api import validation
    from planet_operator.builders import children, plan

    monitor = helm.one(helm.render(VARIANTS["monitoring"]), "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    document = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
    spec = validation.parse(document).spec
    for mode in ("standard", "knative"):
        isvc = next(
            o
            for o in children.build_all(plan.single("p", "ns", spec, "r1", mode=mode))
            if o["kind"] == "InferenceService"
        )
        predictor = isvc["spec"]["predictor"]
        # KServe puts the predictor's labels on its pods, and its own serving.kserve.io/inferenceservice.
        pod_labels = {**predictor["labels"], "serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
        assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        [expression] = monitor["spec"]["selector"]["matchExpressions"]
        assert expression["key"] in pod_labels and expression["operator"] == "Exists"
    ports = [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]]
    # Standard mode: the model server's named port; Knative mode: KServe's aggregate port on queue-proxy.
    assert ports == [predictor["containers"][0]["ports"][0]["name"], "aggr-metric"]
    namespaced = helm.one(
        helm.render({**VARIANTS["monitoring"], "watchNamespaces": ["a", "b"]}), "PodMonitor"
    )
    assert namespaced["spec"]["namespaceSelector"] == {"matchNames": ["a", "b"]}
    assert helm.of_kind(helm.render(), "PodMonitor") == []


def test_prometheus_rule_alerts_on_real_metric_names() -> None:
    objects = helm.render(VARIANTS["monitoring"])
    rule = helm.one(objects, "PrometheusRule")
    jsonschema.validate(rule, PROMETHEUS_RULE)
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"PlanetRolloutRolledBack", "PlanetPipelineDegraded", "PlanetQueueDepthHigh"} <= alerts.keys()
    assert "> 50" in alerts["PlanetQueueDepthHigh"]["expr"]
    exported = _exported_metric_names()
    for name, alert in alerts.items():
        used = _planet_names(alert["expr"])
        assert used <= exported, f"{name} uses metrics nobody exports: {used - exported}"
        # Prometheus's own templates survive Helm's: {{ $labels.x }} / {{ $value }} reach Prometheus.
        for text in alert["annotations"].values():
            assert "{{" not in text or "$" in text, text


def test_grafana_dashboard_configmap_has_the_panels_and_real_metrics() -> None:
    objects = helm.render({"grafanaDashboard": {"replicaHourlyCost": 2.5}})
    dashboard_cm = next(
        c for c in helm.of_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("dashboard")
    )
    assert dashboard_cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(dashboard_cm["data"]["planetgen.json"])
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for wanted in ("p50", "p95", "p99", "queue depth", "queue seconds", "error rate", "images per second"):
        assert wanted in titles, wanted
    assert "cost per image" in titles and "traffic split" in titles
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert _planet_names(exprs) <= _exported_metric_names()
    cost = next(v for v in dashboard["templating"]["list"] if v["name"] == "replica_hourly_cost")
    assert cost["query"] == "2.5"


def test_notes_say_how_to_follow_a_pipeline() -> None:
    text = helm.notes()
    assert "kubectl planet status" in text and "2 replicas peer" in text


# --- Values schema and CRDs ---------------------------------------------------------------------


def test_values_schema_rejects_bad_values_clearly() -> None:
    with helm_python.Chart.load(helm.CHART) as chart:
        with pytest.raises(helm_python.HelmValuesError) as caught:
            chart.validate_schema({"replicas": "two"})
        assert "/replicas" in str(caught.value) and "integer" in str(caught.value)
        with pytest.raises(helm_python.HelmValuesError, match="replica"):
            chart.validate_schema({"replica": 3})  # a typo is refused, not ignored
        with pytest.raises(helm_python.HelmValuesError, match="pullPolicy"):
            chart.validate_schema({"image": {"pullPolicy": "Sometimes"}})
        chart.validate_schema(chart.values)
    report = helm_python.lint(helm.CHART, {"replicas": "two"}, strict=True)
    assert any("/replicas" in e for e in report["errors"])


def test_chart_crds_equal_planet_crds() -> None:
    from planet_operator.crd import generate

    with helm_python.Chart.load(helm.CHART) as chart:
        crds = chart.crds
    assert [c["filename"] for c in crds] == [f"planetgen/crds/{generate.CRD_FILE}"]
    assert crds[0]["data"] == generate.crds_yaml()


# --- The uninstall hook: pipelines can still be deleted once the operator is gone ---------------


def _uninstall_hook(obj: dict[str, Any]) -> bool:
    return bool(obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "uninstall")


def _hook_calls() -> set[tuple[str, str, str]]:
    """(resources constant, its module, verb) of every client call of `planet release-finalizers`."""
    import ast

    from planet_operator.cli import release_finalizers

    out: set[tuple[str, str, str]] = set()
    from tests.conftest import ROOT

    tree = ast.parse((ROOT / "operator/planet_operator/cli/release_finalizers.py").read_text())
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        if getattr(node.func.value, "id", "") != "client" or node.func.attr not in helm.CLIENT_VERBS:
            continue
        first = node.args[0]
        if isinstance(first, ast.Attribute):
            out.add((first.attr, "resources", helm.CLIENT_VERBS[node.func.attr]))
        else:
            assert isinstance(first, ast.Name), ast.dump(first)
            assert hasattr(release_finalizers, first.id)
            out.add((first.id, "release_finalizers", helm.CLIENT_VERBS[node.func.attr]))
    return out


def _hook_needs() -> tuple[set[helm.Rule], set[helm.Rule]]:
    """What the hook needs (in the release namespace, where the operator watches), from its code."""
    from planet_operator.cli import release_finalizers
    from planet_operator.kube import resources

    local: set[helm.Rule] = set()
    watched: set[helm.Rule] = set()
    for constant, module, verb in _hook_calls():
        resource = getattr(resources if module == "resources" else release_finalizers, constant)
        # The operator's Deployment and pods are in the release namespace; the pipelines are where it watches.
        (watched if resource == resources.PIPELINES else local).add((resource.group, resource.plural, verb))
    return local, watched


def _hook_grants(objects: list[dict[str, Any]], namespace: str | None) -> set[helm.Rule]:
    job = next(o for o in helm.of_kind(objects, "Job") if _uninstall_hook(o))
    sa = job["spec"]["template"]["spec"]["serviceAccountName"]
    out: set[helm.Rule] = set()
    roles = {
        (r["kind"], r["metadata"]["name"], r["metadata"].get("namespace")): r for r in objects if "rules" in r
    }
    for binding in helm.of_kind(objects, "ClusterRoleBinding") + helm.of_kind(objects, "RoleBinding"):
        bound = binding["metadata"].get("namespace")
        if bound not in (None, namespace) or not any(s["name"] == sa for s in binding["subjects"]):
            continue
        ref = binding["roleRef"]
        role = roles[(ref["kind"], ref["name"], bound if ref["kind"] == "Role" else None)]
        out |= helm.granted(role["rules"])
    return out


@pytest.mark.parametrize("name", ["default", "namespaced"])
def test_uninstall_hook_stops_the_operator_then_releases_every_watched_pipeline(name: str) -> None:
    from planet_operator.cli import main as cli

    values = VARIANTS[name]
    objects = helm.render(values)
    hook = [o for o in objects if _uninstall_hook(o)]
    job = helm.one(hook, "Job")
    # All of it is a pre-delete hook, the RBAC before the Job, and nothing stays once it succeeded.
    weight = int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    for obj in hook:
        notes = obj["metadata"]["annotations"]
        assert notes["helm.sh/hook"] == "pre-delete", obj["kind"]
        assert "hook-succeeded" in notes["helm.sh/hook-delete-policy"].split(","), obj["kind"]
        if obj is not job:
            assert int(notes["helm.sh/hook-weight"]) < weight, obj["kind"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["containers"][0]["command"] == ["planet"]
    args = cli.build_parser().parse_args(pod["containers"][0]["args"])
    assert args.command == "release-finalizers"
    deployment = helm.one(objects, "Deployment")
    assert args.stop_deployment == f"{helm.NAMESPACE}/{deployment['metadata']['name']}"
    assert args.namespace == values.get("watchNamespaces", [])
    # The hook waits for the pods the Deployment selects to go: its own must not be one of them.
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= labels.items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    # Where egress is denied by default the hook pod still reaches the API server: its own policy
    # selects it, allows the API server's ports and DNS out, and nothing in.
    policy = helm.one(hook, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert "ingress" not in policy and policy["policyTypes"] == ["Ingress", "Egress"]
    operator_policy = helm.one([o for o in objects if not _uninstall_hook(o)], "NetworkPolicy")["spec"]
    assert policy["egress"][0] == operator_policy["egress"][0]
    # Exactly what the command calls, where it calls it; the operator's own account gains nothing.
    local, watched = _hook_needs()
    assert watched == {("planetgen.io", "planetpipelines", v) for v in ("get", "list", "patch")}
    watching = values.get("watchNamespaces") or []
    for namespace in watching or [None]:
        assert _hook_grants(objects, namespace) == watched | (local if namespace == helm.NAMESPACE else set())
    assert _hook_grants(objects, helm.NAMESPACE) == local | (set() if watching else watched)
    assert pod["serviceAccountName"] != deployment["spec"]["template"]["spec"]["serviceAccountName"]


def test_uninstall_hook_can_be_turned_off() -> None:
    assert not [o for o in helm.render({"uninstallHook": {"enabled": False}}) if _uninstall_hook(o)]
