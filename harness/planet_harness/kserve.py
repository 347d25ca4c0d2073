"""KServe on the test control plane: its CRDs, config, RBAC, controller manager and webhooks.

Everything comes from the pinned modules (``harness/components/kserve``): KServe's own
``config/`` folder, and the CRDs of the projects KServe integrates with (Gateway API, KEDA,
Knative Serving) from the versions KServe requires. The only change from KServe's install is where
the webhooks point: at the manager on 127.0.0.1 by URL, since nothing here dials a Service.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from planet_harness import components
from planet_harness.controlplane import ControlPlane, kubeconfig
from planet_harness.processes import Process, free_port

NAMESPACE = "kserve"
SERVICE_ACCOUNT = "kserve-controller-manager"
GATEWAY = "kserve-ingress-gateway"
#: (module, folder of CRDs inside it); versions are those the KServe module resolves.
CRD_SOURCES = (
    ("github.com/kserve/kserve", "config/crd/full"),
    ("sigs.k8s.io/gateway-api", "config/crd/standard"),
    ("github.com/kedacore/keda/v2", "config/crd/bases"),
    ("knative.dev/serving", "config/core/300-resources"),
)


def _documents(folder: Path) -> list[dict[str, Any]]:
    """The objects a folder installs: its kustomization's resources when it has one, else every file."""
    kustomization = folder / "kustomization.yaml"
    if kustomization.exists():
        listed = yaml.safe_load(kustomization.read_text()).get("resources", [])
        paths = [folder / entry for entry in listed]
    else:
        paths = sorted(folder.glob("*.yaml"))
    docs: list[dict[str, Any]] = []
    for path in paths:
        if path.is_dir():
            docs.extend(_documents(path))
        else:
            docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict))
    return docs


def crds() -> list[dict[str, Any]]:
    """Every CRD KServe's manager watches or writes, from the pinned modules."""
    found: list[dict[str, Any]] = []
    for module, folder in CRD_SOURCES:
        root = components.module_dir("kserve", module) / folder
        found.extend(d for d in _documents(root) if d.get("kind") == "CustomResourceDefinition")
    return found


def config_map(autoscaler: dict[str, str] | None = None) -> dict[str, Any]:
    """KServe's ``inferenceservice-config``, switched to Standard mode and Gateway API ingress.

    ``autoscaler`` replaces keys of its ``autoscaler`` entry (the HPA stabilization windows KServe
    writes into every ScaledObject it creates).
    """
    source = (
        components.module_dir("kserve", "github.com/kserve/kserve") / "config/configmap/inferenceservice.yaml"
    )
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    data = config["data"]
    deploy = json.loads(data["deploy"])
    deploy["defaultDeploymentMode"] = "Standard"
    data["deploy"] = json.dumps(deploy)
    ingress = json.loads(data["ingress"])
    ingress.update({"enableGatewayApi": True, "kserveIngressGateway": f"{NAMESPACE}/{GATEWAY}"})
    data["ingress"] = json.dumps(ingress)
    if autoscaler:
        data["autoscaler"] = json.dumps({**_json_with_comments(data.get("autoscaler", "{}")), **autoscaler})
    config["metadata"]["namespace"] = NAMESPACE
    return config


def _json_with_comments(text: str) -> dict[str, Any]:
    """KServe's config entries are JSON; its shipped ``autoscaler`` one carries ``#`` comment lines."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("#")]
    loaded: dict[str, Any] = json.loads("\n".join(lines) or "{}")
    return loaded


def rbac() -> list[dict[str, Any]]:
    """KServe's ServiceAccount, ClusterRole and bindings for its manager."""
    folder = components.module_dir("kserve", "github.com/kserve/kserve") / "config/rbac"
    objects = []
    for name in (
        "service_account.yaml",
        "role.yaml",
        "role_binding.yaml",
        "leader_election_role.yaml",
        "leader_election_role_binding.yaml",
    ):
        for doc in yaml.safe_load_all((folder / name).read_text()):
            if not isinstance(doc, dict):
                continue
            if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
                doc["metadata"]["namespace"] = NAMESPACE
            for subject in doc.get("subjects", []):
                subject["namespace"] = NAMESPACE
            objects.append(doc)
    return objects


def gateway() -> list[dict[str, Any]]:
    """The Gateway KServe's HTTPRoutes attach to (served by the stack's own gateway, later)."""
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "planetgen"},
            "spec": {"controllerName": "planetgen.io/gateway"},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY, "namespace": NAMESPACE},
            "spec": {
                "gatewayClassName": "planetgen",
                "listeners": [
                    {
                        "name": "http",
                        "port": 80,
                        "protocol": "HTTP",
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]


def webhooks(url: str, ca_bundle: str) -> list[dict[str, Any]]:
    """KServe's webhook configurations, pointed at ``url`` instead of its Service."""
    source = components.module_dir("kserve", "github.com/kserve/kserve") / "config/webhook/manifests.yaml"
    configs = []
    for doc in yaml.safe_load_all(source.read_text()):
        if not isinstance(doc, dict):
            continue
        doc["metadata"].pop("creationTimestamp", None)
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": url + path, "caBundle": ca_bundle}
        configs.append(doc)
    return configs


class KServe:
    """KServe's controller manager with its webhooks, on a running :class:`ControlPlane`."""

    def __init__(self, cluster: ControlPlane, *, autoscaler: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.autoscaler = autoscaler
        self.workdir = cluster.workdir / "kserve"
        self.process: Process | None = None

    def install(self) -> None:
        """CRDs, namespace, config and RBAC; then the manager; then its webhooks."""
        cluster = self.cluster
        cluster.apply(crds())
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        # KServe's own namespace carries this label so its pod mutator leaves its pods alone.
        cluster.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": NAMESPACE, "labels": {"control-plane": "kserve-controller-manager"}},
                }
            ]
        )
        cluster.apply([config_map(self.autoscaler), *rbac(), *gateway()])
        self._start_manager()
        assert cluster.ca is not None
        url = f"https://127.0.0.1:{self.webhook_port}"
        cluster.apply(webhooks(url, cluster.ca_bundle()))
        self._wait_admitting()

    def _start_manager(self) -> None:
        cluster = self.cluster
        assert cluster.ca is not None
        # controller-runtime reads its webhook certificate from $TMPDIR/k8s-webhook-server/serving-certs.
        tmp = self.workdir / "tmp"
        certs = tmp / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        pair = cluster.ca.serving("kserve-webhook", hosts=["127.0.0.1", "localhost"])
        (certs / "tls.crt").write_bytes(pair.cert.read_bytes())
        (certs / "tls.key").write_bytes(pair.key.read_bytes())
        token = cluster.token(NAMESPACE, SERVICE_ACCOUNT, seconds=48 * 3600)
        config = kubeconfig(
            self.workdir / "manager.kubeconfig",
            server=cluster.server,
            ca=cluster.ca.pair.cert,
            user=SERVICE_ACCOUNT,
            token=token,
        )
        self.webhook_port, self.probe_port = free_port(), free_port()
        self.process = Process(
            "kserve-manager",
            [
                str(components.binary("kserve-manager")),
                f"--webhook-port={self.webhook_port}",
                f"--metrics-addr=127.0.0.1:{free_port()}",
                f"--health-probe-addr=127.0.0.1:{self.probe_port}",
                "--leader-elect=false",
            ],
            log=cluster.logs / "kserve-manager.log",
            env={"KUBECONFIG": str(config), "POD_NAMESPACE": NAMESPACE, "TMPDIR": str(tmp)},
        )
        self.process.start()
        cluster.processes.append(self.process)
        self.process.wait_until(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{self.probe_port}/readyz", timeout=2).status == 200
            ),
            timeout=90,
            what="/readyz",
        )

    def _wait_admitting(self) -> None:
        """The webhooks answer once a server dry run of a minimal InferenceService passes."""
        probe = {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "webhook-probe", "namespace": "default"},
            "spec": {"predictor": {"containers": [{"name": "kserve-container", "image": "probe"}]}},
        }
        assert self.process is not None
        self.process.wait_until(
            lambda: (
                self.cluster.kubectl(
                    "create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(probe), check=False
                ).returncode
                == 0
            ),
            timeout=60,
            what="webhook admission",
        )
