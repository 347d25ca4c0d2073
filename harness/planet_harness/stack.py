"""The whole stack on one machine: control plane, KServe, a process-kubelet node, the gateway.

What KServe writes (Deployments, Services, HTTPRoutes, the router's Deployment) runs for real: the
scheduler binds pods to the node, the kubelet runs them in their own network namespaces, the
EndpointSlice controller publishes their addresses and the gateway routes to those. KServe's
storage initializer and router images map to local programs (``images``). With ``autoscaling`` the
stack also runs Prometheus (discovering pods through the API server) and KEDA, so KServe's
ScaledObjects become HPAs that kube-controller-manager acts on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from planet_harness import components, keda, monitoring
from planet_harness.controlplane import ControlPlane
from planet_harness.kserve import KServe
from planet_harness.kubelet.node import Images
from planet_harness.node import NODE_IP, start_kubelet
from planet_harness.processes import Process, Supervisor, free_port

ROUTER_IMAGE = "kserve/router"
#: The chart's operator image (``image.repository``).
OPERATOR_IMAGE = "ghcr.io/planetgen/planet-operator"
STORAGE_INITIALIZER_IMAGE = "kserve/storage-initializer"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Autoscaling:
    """Prometheus and KEDA on the stack, and the intervals that decide how fast replicas follow load.

    The defaults are the products' own. Tests shorten them to see a burst and its cooldown in
    minutes, and say so.
    """

    #: Prometheus' scrape (and rule evaluation) interval.
    scrape_seconds: float = 15.0
    #: kube-controller-manager's ``--horizontal-pod-autoscaler-sync-period``: how often HPAs read metrics.
    hpa_sync_seconds: float = 15.0
    #: KServe's ``inferenceservice-config`` ``autoscaler`` defaults, copied into every ScaledObject's
    #: HPA behavior (KServe's own defaults: 0 up, 300 down).
    scale_up_stabilization_seconds: int = 0
    scale_down_stabilization_seconds: int = 300

    def __post_init__(self) -> None:
        for name in ("scrape_seconds", "hpa_sync_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Autoscaling.{name} must be positive, not {getattr(self, name)}")
        for name in ("scale_up_stabilization_seconds", "scale_down_stabilization_seconds"):
            if not 0 <= getattr(self, name) <= 3600:
                raise ValueError(f"Autoscaling.{name} must be within 0..3600 (the HPA's bounds)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stack:
    """A running stack and how to reach it."""

    cluster: ControlPlane
    #: The gateway as an HTTP proxy for clients on this machine (``PLANET_PROXY``).
    proxy: str
    #: The gateway as pods reach it (their ``HTTP_PROXY``).
    pod_proxy: str
    #: Prometheus as this machine reaches it (None without ``autoscaling``).
    prometheus: str | None = None


def images(*, model_store: Path, pod_proxy: str, extra: Images | None = None) -> Images:
    """KServe's images as local programs, plus ``extra``'s (the project's own images)."""
    entrypoints = {
        ROUTER_IMAGE: [str(components.binary("kserve-router"))],
        STORAGE_INITIALIZER_IMAGE: [sys.executable, "-m", "planet_harness.storage_initializer"],
    }
    env = {
        # Go's ProxyFromEnvironment: *.svc.cluster.local through the gateway; no proxy for the node.
        ROUTER_IMAGE: {"HTTP_PROXY": pod_proxy, "NO_PROXY": NODE_IP},
        # The operator's rollout analysis dials Prometheus by its Service name, through the gateway
        # as through a cluster's egress proxy (aiohttp's trust_env); kopf dials the API server direct.
        OPERATOR_IMAGE: {"HTTP_PROXY": pod_proxy, "NO_PROXY": NODE_IP},
        STORAGE_INITIALIZER_IMAGE: {"PLANET_MODEL_STORE": str(model_store)},
    }
    commands = {"python": sys.executable}
    if extra is not None:
        entrypoints.update(extra.entrypoints)
        commands.update(extra.commands)
        for prefix, values in extra.env.items():
            env.setdefault(prefix, {}).update(values)
    return Images(entrypoints=entrypoints, commands=commands, env=env)


def _merged(first: Images, second: Images) -> Images:
    env = {prefix: dict(values) for prefix, values in first.env.items()}
    for prefix, values in second.env.items():
        env.setdefault(prefix, {}).update(values)
    return Images(
        entrypoints={**first.entrypoints, **second.entrypoints},
        commands={**first.commands, **second.commands},
        env=env,
    )


@contextlib.contextmanager
def running(
    workdir: Path,
    *,
    model_store: Path,
    extra: Images | None = None,
    say: Callable[[str], None] | None = None,
    autoscaling: Autoscaling | None = None,
) -> Iterator[Stack]:
    """Start everything; stop everything (pods, namespaces, links included) however the block ends.

    While the block runs, a :class:`Supervisor` restarts any component that exits on its own.
    """
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = ControlPlane(
        workdir, node_ip=NODE_IP, hpa_sync_seconds=autoscaling.hpa_sync_seconds if autoscaling else None
    )
    supervisor = Supervisor(cluster.processes, say=say)
    started = time.monotonic()
    try:
        say("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler ...")
        cluster.start()
        say("starting the kubelet, the gateway and KServe ...")
        port, connect_port = free_port(), free_port()
        pod_proxy = f"http://{NODE_IP}:{port}"
        table = images(model_store=model_store, pod_proxy=pod_proxy, extra=extra)
        if autoscaling is not None:
            table = _merged(
                table,
                keda.images(
                    http_proxy=pod_proxy, https_proxy=f"http://{NODE_IP}:{connect_port}", node_ip=NODE_IP
                ),
            )
        kubelet = start_kubelet(cluster, table)
        gateway = Process(
            "gateway",
            [
                sys.executable,
                "-m",
                "planet_harness.gateway",
                f"--listen=127.0.0.1:{port}",
                f"--listen={NODE_IP}:{port}",
                f"--connect-listen={NODE_IP}:{connect_port}",
            ],
            log=cluster.logs / "gateway.log",
            env={"KUBECONFIG": str(cluster.kubeconfig)},
        )
        gateway.start()
        cluster.processes.append(gateway)
        prometheus: str | None = None
        if autoscaling is None:
            KServe(cluster).install()
        else:
            KServe(
                cluster,
                autoscaler={
                    "scaleUpStabilizationWindowSeconds": str(autoscaling.scale_up_stabilization_seconds),
                    "scaleDownStabilizationWindowSeconds": str(autoscaling.scale_down_stabilization_seconds),
                },
            ).install()
            say("starting Prometheus and KEDA ...")
            server = monitoring.Prometheus(cluster, host=NODE_IP, scrape_seconds=autoscaling.scrape_seconds)
            server.start()
            prometheus = server.url
            keda.Keda(cluster, kubelet=kubelet).install()
        supervisor.start()
        say(f"stack up in {time.monotonic() - started:.1f} s; kubeconfig {cluster.kubeconfig}")
        yield Stack(
            cluster=cluster, proxy=f"http://127.0.0.1:{port}", pod_proxy=pod_proxy, prometheus=prometheus
        )
    finally:
        # First stop restarting, then stop: a component that exits because another went away is
        # shutting down, not crashing.
        supervisor.stop()
        cluster.stop()
