"""A kubelet for processes: registers a GPU Node, runs the pods scheduled to it, writes their status.

Scheduling is the real kube-scheduler's; Deployments, ReplicaSets, Jobs, EndpointSlices and garbage
collection are the real kube-controller-manager's. This process does only a kubelet's part: the
Node object and its Lease, and the lifecycle of each pod bound to the node (see ``pod.py``).
Images map to local programs (``Images``); everything else comes from the pod spec.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes import watch

from planet_harness.kubelet.network import Network
from planet_harness.kubelet.pod import PodWorker, Settings

log = logging.getLogger("planet_harness.kubelet")
KUBELET_VERSION = "v1.34.4"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Images:
    """How an image becomes a local program: its entry point by image prefix, commands by name.

    ``env`` adds variables by image prefix: what an image would bake in (``HTTP_PROXY`` for KServe's
    router, the local model store for the storage initializer).
    """

    entrypoints: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    commands: dict[str, str] = dataclasses.field(default_factory=dict)
    env: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    def env_of(self, image: str) -> dict[str, str]:
        """The variables ``image`` bakes in."""
        return {
            k: v for prefix, values in self.env.items() if image.startswith(prefix) for k, v in values.items()
        }

    def resolve(self, container: dict[str, Any]) -> list[str]:
        """The argv that stands for ``container``'s image, command and args."""
        args = list(container.get("args", []))
        if container.get("command"):
            argv = [*container["command"], *args]
        else:
            image = container.get("image", "")
            entry = next((v for k, v in self.entrypoints.items() if image.startswith(k)), None)
            if entry is None:
                raise LookupError(f"image {image!r} has no local entry point and the container no command")
            argv = [*entry, *args]
        argv[0] = self.commands.get(argv[0], argv[0])
        if shutil.which(argv[0]) is None:
            raise LookupError(f"{argv[0]}: no such local program (image {container.get('image')!r})")
        return argv


@dataclasses.dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """The Node this kubelet registers."""

    name: str = "planet-node"
    gpu_product: str = "NVIDIA-H100-80GB-HBM3"
    gpus: int = 8
    cpu: str = "64"
    memory: str = "512Gi"
    pods: int = 110


class Kubelet:
    """Registers the node, keeps its Lease, and runs every pod bound to it."""

    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        root: Path,
        network: Network,
        images: Images,
        api_port: int,
        node: NodeConfig | None = None,
    ) -> None:
        self.client = api
        self.core = k8s.CoreV1Api(api)
        self.leases = k8s.CoordinationV1Api(api)
        self.node = node or NodeConfig()
        self.network = network
        self.settings = Settings(
            node=self.node.name,
            network=network,
            api=self.core,
            root=root,
            api_host=network.node_ip,
            api_port=api_port,
            resolve=images.resolve,
            image_env=images.env_of,
            allocatable={"cpu": self.node.cpu, "memory": self.node.memory},
        )
        self.workers: dict[str, PodWorker] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        """Register, then serve pods until :meth:`stop`."""
        self.network.up()
        self._register()
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        try:
            self._watch_pods()
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self.stopping.set()

    def shutdown(self) -> None:
        """Stop every pod's containers and remove the pods' namespaces and links."""
        for worker in list(self.workers.values()):
            worker.deleting.set()
        for worker in list(self.workers.values()):
            worker.thread.join(timeout=40)
        self.network.down()

    # --- node ---------------------------------------------------------------------------------

    def _node_status(self) -> dict[str, Any]:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        resources = {
            "cpu": self.node.cpu,
            "memory": self.node.memory,
            "pods": str(self.node.pods),
            "nvidia.com/gpu": str(self.node.gpus),
            "ephemeral-storage": "1Ti",
        }
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "process kubelet is posting ready status",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        return {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [ready],
            "addresses": [
                {"type": "InternalIP", "address": self.network.node_ip},
                {"type": "Hostname", "address": self.node.name},
            ],
            "nodeInfo": {
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "process://planet-harness",
                "osImage": "planetgen process kubelet",
                "kernelVersion": os.uname().release,
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }

    def _register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node.name,
                "labels": {
                    "kubernetes.io/hostname": self.node.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "nvidia.com/gpu.product": self.node.gpu_product,
                    "nvidia.com/gpu.count": str(self.node.gpus),
                },
            },
        }
        try:
            self.core.create_node(cast(Any, body))  # the client takes plain dicts too
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise
        self.core.patch_node_status(self.node.name, {"status": self._node_status()})

    def _heartbeat(self) -> None:
        lease_name, namespace = self.node.name, "kube-node-lease"
        while not self.stopping.is_set():
            now = datetime.datetime.now(datetime.UTC)
            lease = {
                "metadata": {"name": lease_name},
                "spec": {"holderIdentity": self.node.name, "leaseDurationSeconds": 40, "renewTime": now},
            }
            try:
                try:
                    self.leases.patch_namespaced_lease(lease_name, namespace, lease)
                except k8s.ApiException as exc:
                    if exc.status != 404:
                        raise
                    self.leases.create_namespaced_lease(namespace, cast(Any, lease))
                self.core.patch_node_status(self.node.name, {"status": self._node_status()})
            except Exception:
                log.exception("heartbeat failed")
            self.stopping.wait(10)

    # --- pods ---------------------------------------------------------------------------------

    def _watch_pods(self) -> None:
        selector = f"spec.nodeName={self.node.name}"
        while not self.stopping.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                events = stream.stream(  # type: ignore[no-untyped-call]
                    self.core.list_pod_for_all_namespaces, field_selector=selector, timeout_seconds=5
                )
                for event in events:
                    body = self.client.sanitize_for_serialization(event["object"])  # type: ignore[no-untyped-call]
                    self._on_pod(event["type"], body)
                    if self.stopping.is_set():
                        break
            except k8s.ApiException as exc:
                log.warning("pod watch: %s %s", exc.status, exc.reason)
                time.sleep(1)
            self._reap()

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                worker.delete(pod)
            return
        if worker is None:
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return
            worker = self.workers[uid] = PodWorker(self.settings, pod)
            worker.start()
        if pod["metadata"].get("deletionTimestamp"):
            worker.delete(pod)

    def _reap(self) -> None:
        for uid, worker in list(self.workers.items()):
            if not worker.thread.is_alive() and worker.deleting.is_set():
                del self.workers[uid]
