"""KEDA on the stack: its operator and metrics API server as pods of the kubelet, from KEDA's own config.

Everything comes from the pinned module (``harness/components/keda``, the KEDA KServe requires):
the namespace, ServiceAccount, RBAC, Services, Deployments and the ``v1beta1.external.metrics.k8s.io``
APIService in KEDA's ``config/`` folder (its CRDs are KServe's, from the same version). What differs
from KEDA's install, and why:

- Certificates are issued by the cluster CA into ``kedaorg-certs``, as KEDA's Helm chart does with
  cert-manager (``--enable-cert-rotation=false``); the APIService carries that CA. KEDA's own rotation
  needs a kubelet that refreshes mounted Secrets, which this one does not.
- The certificates mount at ``CERT_DIR`` instead of ``/certs``: a container here sees the host's
  filesystem, and a new top-level folder has no parent to overlay.
- The images map to the binaries built from the module; pods reach Services through the gateway
  (``HTTP_PROXY`` for Prometheus, ``HTTPS_PROXY`` CONNECT for the metrics server's gRPC to the
  operator), since there is no kube-proxy. The API server reaches the metrics server at its pod
  address (``--enable-aggregator-routing``).
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import yaml

from planet_harness import components
from planet_harness.controlplane import ControlPlane
from planet_harness.kubelet.node import Images
from planet_harness.processes import Process

NAMESPACE = "keda"
MODULE = "github.com/kedacore/keda/v2"
OPERATOR_IMAGE = "ghcr.io/kedacore/keda"
ADAPTER_IMAGE = "ghcr.io/kedacore/keda-metrics-apiserver"
API_SERVICE = "v1beta1.external.metrics.k8s.io"
CERT_SECRET = "kedaorg-certs"
CERT_DIR = "/mnt/keda/certs"
#: KEDA's config files this install applies, in order (relative to the module's ``config/``).
SOURCES = (
    "general/namespace.yaml",
    "service_account/service_account.yaml",
    "rbac/role.yaml",
    "rbac/role_binding.yaml",
    "metrics-server/role.yaml",
    "metrics-server/role_binding.yaml",
    "manager/service.yaml",
    "metrics-server/service.yaml",
    "manager/manager.yaml",
    "metrics-server/deployment.yaml",
    "metrics-server/api_service.yaml",
)
#: The Service names KEDA's certificates must cover (its own cert rotator issues the same).
SERVICES = ("keda-operator", "keda-metrics-apiserver", "keda-admission-webhooks")


def images(*, http_proxy: str, https_proxy: str, node_ip: str) -> Images:
    """KEDA's images as the binaries built from the pinned module, with the gateway as their proxy."""
    return Images(
        commands={
            # KEDA's Deployments name their Dockerfiles' entry points.
            "/keda": str(components.binary("keda")),
            "/keda-adapter": str(components.binary("keda-adapter")),
        },
        env={
            "ghcr.io/kedacore/": {
                "HTTP_PROXY": http_proxy,
                "HTTPS_PROXY": https_proxy,
                # The API server is the node's address: never through the proxy.
                "NO_PROXY": node_ip,
            }
        },
    )


def _documents() -> list[dict[str, Any]]:
    root = components.module_dir("keda", MODULE) / "config"
    docs: list[dict[str, Any]] = []
    for name in SOURCES:
        docs.extend(d for d in yaml.safe_load_all((root / name).read_text()) if isinstance(d, dict))
    return docs


def _certificates(deployment: dict[str, Any]) -> None:
    """Point a KEDA Deployment's certificate mount and flags at ``CERT_DIR``."""
    pod = deployment["spec"]["template"]["spec"]
    for container in pod["containers"]:
        for mount in container.get("volumeMounts", []):
            if mount["mountPath"] == "/certs":
                mount["mountPath"] = CERT_DIR
        args = [a.replace("/certs", CERT_DIR) for a in container.get("args", [])]
        # Certificates come from the cluster CA (cert-manager style), not KEDA's rotator.
        args = [a for a in args if not a.startswith("--enable-cert-rotation")]
        if container["name"] == "keda-operator":
            args += ["--enable-cert-rotation=false", f"--cert-dir={CERT_DIR}"]
        container["args"] = args


def manifests(
    *, ca_bundle: str, cert_secret: dict[str, Any], log_level: str = "info"
) -> list[dict[str, Any]]:
    """KEDA's install objects, changed only as the module docstring says."""
    objects = []
    for doc in _documents():
        doc = copy.deepcopy(doc)
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind == "Deployment":
            _certificates(doc)
            for container in doc["spec"]["template"]["spec"]["containers"]:
                # "latest" tags: the binaries are the pinned module's, whatever the tag says.
                container["imagePullPolicy"] = "IfNotPresent"
                if name == "keda-metrics-apiserver":
                    # Its default (error) hides why a metric is missing; the operator's is info.
                    container["args"] = [
                        a if not a.startswith("--zap-log-level") else f"--zap-log-level={log_level}"
                        for a in container["args"]
                    ]
        if kind == "APIService":
            doc["spec"]["caBundle"] = ca_bundle
        objects.append(doc)
    # The Secret goes right after the namespace, before the pods that mount it.
    return [objects[0], cert_secret, *objects[1:]]


def cert_secret(cluster: ControlPlane) -> dict[str, Any]:
    """``kedaorg-certs``: one certificate for every KEDA Service, server and client (KEDA's mTLS)."""
    assert cluster.ca is not None
    hosts = []
    for service in SERVICES:
        hosts += [f"{service}.{NAMESPACE}.svc", f"{service}.{NAMESPACE}.svc.cluster.local"]
    pair = cluster.ca.serving("keda", hosts=hosts, mutual=True)
    data = {"ca.crt": cluster.ca_pem(), "tls.crt": pair.cert.read_bytes(), "tls.key": pair.key.read_bytes()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CERT_SECRET, "namespace": NAMESPACE},
        "type": "kubernetes.io/tls",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


class Keda:
    """KEDA installed on a running stack whose kubelet maps :func:`images`."""

    def __init__(self, cluster: ControlPlane, *, kubelet: Process) -> None:
        self.cluster = cluster
        self.kubelet = kubelet

    def install(self) -> None:
        """Apply KEDA's objects; wait until its pods are Ready and the APIService is Available."""
        cluster = self.cluster
        cluster.apply(manifests(ca_bundle=cluster.ca_bundle(), cert_secret=cert_secret(cluster)))
        for deployment in ("keda-operator", "keda-metrics-apiserver"):
            cluster.kubectl(
                "rollout",
                "status",
                f"deployment/{deployment}",
                "-n",
                NAMESPACE,
                "--timeout=180s",
                timeout=200,
            )
        self.kubelet.wait_until(self.available, timeout=120, what=f"APIService {API_SERVICE} Available")

    def available(self) -> bool:
        """The API server serves external metrics through KEDA (its APIService is Available)."""
        found = self.cluster.kubectl("get", "apiservice", API_SERVICE, "-o", "json", check=False)
        if found.returncode:
            return False
        conditions = json.loads(found.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


def pod_logs(cluster: ControlPlane, *, lines: int = 30) -> dict[str, str]:
    """The last lines of KEDA's pods' logs, for a failing test's message."""
    root = cluster.workdir / "kubelet" / "pods"
    found: dict[str, str] = {}
    for path in sorted(root.glob(f"{NAMESPACE}_*/*.log")) if root.exists() else []:
        text = path.read_text(errors="replace").splitlines()[-lines:]
        found[f"{path.parent.name}/{path.name}"] = "\n".join(text)
    return found
