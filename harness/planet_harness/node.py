"""Start the process kubelet as a node of a running :class:`ControlPlane`."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from planet_harness.controlplane import ControlPlane, kubeconfig
from planet_harness.kubelet.network import Network
from planet_harness.kubelet.node import Images, NodeConfig
from planet_harness.processes import Process

POD_CIDR = "10.233.0.0/16"
PREFIX = "pg"
STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "kubernetes.io/host-path",
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
}
NODE_IP = "10.233.0.1"


def start_kubelet(cluster: ControlPlane, images: Images, *, node: NodeConfig | None = None) -> Process:
    """Run the kubelet with a node's credentials (Node authorizer) and wait until its Node is Ready."""
    assert cluster.ca is not None
    node = node or NodeConfig()
    release = _claim_the_pod_network(cluster.workdir)
    pair = cluster.ca.client(f"node-{node.name}", user=f"system:node:{node.name}", groups=("system:nodes",))
    config = kubeconfig(
        cluster.workdir / "kubelet.kubeconfig",
        server=cluster.server,
        ca=cluster.ca.pair.cert,
        user=node.name,
        cert=pair.cert,
        key=pair.key,
    )
    table = cluster.workdir / "images.json"
    table.write_text(
        json.dumps({"entrypoints": images.entrypoints, "commands": images.commands, "env": images.env})
    )
    process = Process(
        "kubelet",
        [
            sys.executable,
            "-m",
            "planet_harness.kubelet",
            f"--kubeconfig={config}",
            f"--root={cluster.workdir / 'kubelet'}",
            f"--api-port={cluster.api_port}",
            f"--images={table}",
            f"--node-name={node.name}",
            f"--gpu-product={node.gpu_product}",
            f"--gpus={node.gpus}",
            f"--pod-cidr={POD_CIDR}",
            f"--prefix={PREFIX}",
        ],
        log=cluster.logs / "kubelet.log",
        # It stops every pod (their grace periods) and removes their namespaces before it exits.
        stop_timeout=60.0,
    )
    # One machine: claims are provisioned as hostPath volumes by the controller manager's provisioner.
    cluster.apply([STORAGE_CLASS])
    process.start()
    cluster.processes.append(process)
    cluster.on_stop.append(Network(prefix=PREFIX, cidr=POD_CIDR).sweep)
    cluster.on_stop.append(release)  # after the sweep: the next stack finds a clean machine
    # A restarted stack finds its Node still Ready in etcd: wait for this kubelet's bridge too.
    process.wait_until(
        lambda: (
            NODE_IP
            in subprocess.run(
                ["ip", "-4", "addr", "show", f"{PREFIX}-br0"], capture_output=True, text=True
            ).stdout
            and cluster.kubectl(
                "get",
                "node",
                node.name,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
            ).stdout
            == "True"
        ),
        timeout=60,
        what=f"node {node.name} Ready",
    )
    return process


def _claim_the_pod_network(workdir: Path) -> Callable[[], None]:
    """Claim the machine's pod network: one stack per machine, refused clearly otherwise.

    The bridge, prefix and CIDR are fixed, and a second kubelet would sweep the first one's
    namespaces. The lock dies with the process that holds it.
    """
    path = Path(tempfile.gettempdir()) / f"planetgen-{PREFIX}-network.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RuntimeError(
            f"another planetgen stack is running on this machine ({holder}); stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, state {workdir}\n")
    handle.flush()

    def release() -> None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()

    return release
