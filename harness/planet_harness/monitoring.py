"""The stack's Prometheus: the real binary, finding predictor pods through the API server.

It runs on the node, built from its pinned module (``harness/components/prometheus``: Debian's
package leaves Kubernetes service discovery out), discovers pods with Kubernetes service discovery
and the stack's kubeconfig, and keeps only pods that ask to be scraped with the
``prometheus.io/scrape``, ``prometheus.io/port`` and ``prometheus.io/path`` annotations the operator
renders (the relabelling of Prometheus' own ``prometheus-kubernetes.yml`` example). It listens on the
node's address, and a selectorless Service ``prometheus-operated.monitoring`` with an EndpointSlice
names it in the cluster, as for any Prometheus that lives outside: that is the address pipelines
default to (``autoscaling.prometheusAddress``), which KEDA and the rollout analysis dial through the
gateway.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import yaml

from planet_harness import components
from planet_harness.controlplane import ControlPlane
from planet_harness.processes import Process, free_port

NAMESPACE = "monitoring"
SERVICE = "prometheus-operated"
SERVICE_PORT = 9090


def config(*, kubeconfig: Path, scrape_seconds: float) -> dict[str, Any]:
    """prometheus.yml: every annotated pod of the cluster, labelled with its namespace and pod."""
    interval = f"{scrape_seconds:g}s"
    annotation = "__meta_kubernetes_pod_annotation_prometheus_io_"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": [
            {
                "job_name": "kubernetes-pods",
                "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
                "relabel_configs": [
                    {"source_labels": [f"{annotation}scrape"], "action": "keep", "regex": "true"},
                    # A pod that finished has no server left to scrape.
                    {
                        "source_labels": ["__meta_kubernetes_pod_phase"],
                        "action": "drop",
                        "regex": "Pending|Succeeded|Failed",
                    },
                    {
                        "source_labels": [f"{annotation}path"],
                        "action": "replace",
                        "target_label": "__metrics_path__",
                        "regex": "(.+)",
                    },
                    {
                        "source_labels": ["__address__", f"{annotation}port"],
                        "action": "replace",
                        "regex": r"([^:]+)(?::\d+)?;(\d+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                ],
            }
        ],
    }


def service(address: str, port: int) -> list[dict[str, Any]]:
    """``prometheus-operated.monitoring.svc:9090`` ▶ ``address:port`` (a Prometheus outside the pods)."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "web", "port": SERVICE_PORT, "targetPort": port, "protocol": "TCP"}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{SERVICE}-node",
                "namespace": NAMESPACE,
                # Not the EndpointSlice controller's: it leaves slices of other managers alone.
                "labels": {
                    "kubernetes.io/service-name": SERVICE,
                    "endpointslice.kubernetes.io/managed-by": "planet-harness",
                },
            },
            "addressType": "IPv4",
            "ports": [{"name": "web", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        },
    ]


class Prometheus:
    """The stack's Prometheus on ``host``; :attr:`url` is how the node reaches it."""

    def __init__(self, cluster: ControlPlane, *, host: str, scrape_seconds: float = 15.0) -> None:
        if scrape_seconds <= 0:
            raise ValueError(f"scrape_seconds must be positive, not {scrape_seconds}")
        self.cluster = cluster
        self.binary = components.binary("prometheus")
        self.host = host
        self.scrape_seconds = scrape_seconds
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        #: What pods and pipelines call it by.
        self.cluster_url = f"http://{SERVICE}.{NAMESPACE}.svc:{SERVICE_PORT}"
        self.workdir = cluster.workdir / "prometheus"

    def start(self) -> Process:
        """Start it, wait until ready, publish its Service; it joins the cluster's processes."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "prometheus.yml"
        path.write_text(
            yaml.safe_dump(config(kubeconfig=self.cluster.kubeconfig, scrape_seconds=self.scrape_seconds))
        )
        process = Process(
            "prometheus",
            [
                str(self.binary),
                f"--config.file={path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={self.host}:{self.port}",
                # Nothing outside the machine; a test run's data is thrown away.
                "--storage.tsdb.retention.time=1d",
            ],
            log=self.cluster.logs / "prometheus.log",
        )
        process.start()
        self.cluster.processes.append(process)
        process.wait_until(self._ready, timeout=60, what="/-/ready")
        self.cluster.apply(service(self.host, self.port))
        return process

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
            return bool(reply.status == 200)
