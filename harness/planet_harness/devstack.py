"""``planet dev up``: the whole stack on this machine, with planetgen installed as a platform team would.

On top of :mod:`planet_harness.stack` (control plane, KServe, the process kubelet and the gateway) it
applies the CRD, ``helm upgrade --install``s the chart with the real Helm, and waits until the
operator pod the chart's Deployment made is Ready on the node: the operator runs from the
Deployment's command and args, with the chart's ServiceAccount token where the kubernetes client
looks. It then writes ``.planet/env`` (``KUBECONFIG`` and ``PLANET_PROXY``), the contract with the host.
State stays in ``state_dir`` (etcd on disk, the CA): stopped and started again, the stack finds its
pipelines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from planet_contracts.engines import FALLBACK_ENV
from planet_harness import models
from planet_harness import stack as harness
from planet_harness.cluster import CHART, PIPELINE_CRD
from planet_harness.controlplane import ControlPlane, KubectlError
from planet_harness.kubelet.node import Images

RELEASE = "planetgen"
NAMESPACE = "planetgen-system"
#: Every image the project publishes starts with this; each runs from the pod spec's command.
PROJECT_IMAGES = "ghcr.io/planetgen/"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """Where state goes and how the operator is installed."""

    state_dir: Path = Path(".planet")
    #: Namespaces given the engine-cache claim pipelines mount (``spec.engine.cacheClaim``'s default).
    namespaces: tuple[str, ...] = ("default",)
    resync_seconds: int = 5
    #: Extra ``--set`` values for the chart.
    values: tuple[str, ...] = ()
    #: Prometheus and KEDA, and their intervals (None: neither runs and nothing scales).
    autoscaling: harness.Autoscaling | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class DevStack:
    """A running dev stack."""

    stack: harness.Stack
    env_file: Path

    @property
    def cluster(self) -> ControlPlane:
        """The control plane (kubectl, helm, audit log)."""
        return self.stack.cluster

    def operator_pod(self) -> dict[str, Any]:
        """The operator's pod, as the API server has it."""
        found = self.cluster.kubectl(
            "get", "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "json"
        )
        pods: list[dict[str, Any]] = json.loads(found.stdout)["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if not live:
            raise LookupError(f"no operator pod in {NAMESPACE}")
        return live[0]


def project_images() -> Images:
    """The project's images as local programs: each container's command names a module of this tree."""
    return Images(
        commands={"planet": str(Path(sys.executable).with_name("planet"))},
        # What the images bake in on this node: no hub downloads, unbuffered logs, and (no CUDA here)
        # TensorRT specs served from ONNX Runtime engines, which the build and the predictor both say.
        env={PROJECT_IMAGES: {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", FALLBACK_ENV: "onnxruntime"}},
    )


def engine_claim(namespace: str) -> dict[str, Any]:
    """The engine cache a platform team provisions per namespace (the default StorageClass)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "planetgen-engines", "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "20Gi"}}},
    }


def install_operator(cluster: ControlPlane, options: Options) -> None:
    """CRD first (Helm never upgrades CRDs), then the chart; wait for the operator pod to be Ready."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PIPELINE_CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/planetpipelines.planetgen.io", "--timeout=60s"
    )
    cluster.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        # One node: one replica (standalone, no peering object).
        "--set=replicas=1",
        f"--set=operator.resyncSeconds={options.resync_seconds}",
        *(f"--set={value}" for value in options.values),
    )
    try:
        cluster.kubectl(
            "rollout", "status", f"deployment/{RELEASE}", "-n", NAMESPACE, "--timeout=180s", timeout=200
        )
    except KubectlError as exc:
        # Name the component and quote its log, as for every other part of the stack.
        logs = sorted((cluster.workdir / "kubelet" / "pods").glob(f"{NAMESPACE}_{RELEASE}-*/operator.log"))
        tail = "\n".join(logs[-1].read_text(errors="replace").splitlines()[-20:]) if logs else "(no log)"
        raise RuntimeError(f"the operator pod did not become Ready: {exc}\noperator log:\n{tail}") from None


def write_env(path: Path, *, kubeconfig: Path, proxy: str) -> Path:
    """``.planet/env``: source it, then kubectl and curl --proxy reach the stack."""
    text = (
        "# Written by `planet dev up`; removed when it stops. Use: . .planet/env\n"
        f"KUBECONFIG={kubeconfig.resolve()}\n"
        f"PLANET_PROXY={proxy}\n"
        "export KUBECONFIG PLANET_PROXY\n"
    )
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text)
    os.replace(staging, path)  # whoever waits for the file sees it whole, and only once all is up
    return path


@contextlib.contextmanager
def up(options: Options, *, say: Callable[[str], None] = print) -> Iterator[DevStack]:
    """Start everything, install planetgen, write ``.planet/env``; stop it all however the block ends."""
    state = options.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    store = models.ensure(state / "models", say=say)
    env_file = state / "env"
    env_file.unlink(missing_ok=True)
    with harness.running(
        state / "cluster",
        model_store=store,
        extra=project_images(),
        say=say,
        autoscaling=options.autoscaling,
    ) as running:
        try:
            say("installing planetgen with Helm (chart charts/planetgen) ...")
            install_operator(running.cluster, options)
            running.cluster.apply([engine_claim(ns) for ns in options.namespaces])
            write_env(env_file, kubeconfig=running.cluster.kubeconfig, proxy=running.proxy)
            say(f"planetgen up in {time.monotonic() - started:.0f} s; . {env_file} for kubectl and curl")
            yield DevStack(stack=running, env_file=env_file)
        finally:
            env_file.unlink(missing_ok=True)
