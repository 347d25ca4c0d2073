"""The process kubelet under the real scheduler and controllers: pods run, report and go away cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.polling import until

from planet_harness.controlplane import ControlPlane
from planet_harness.kubelet import Images
from planet_harness.node import NODE_IP, start_kubelet

HTTP = "test.planetgen.io/http"
PY = "test.planetgen.io/python"
IMAGES = Images(
    entrypoints={HTTP: [sys.executable, "-m", "http.server", "8080"], PY: [sys.executable]},
    commands={"python": sys.executable},
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane with the scheduler and one process-kubelet node (no KServe)."""
    cluster = ControlPlane(tmp_path_factory.mktemp("node"), node_ip=NODE_IP)
    try:
        cluster.start()
        start_kubelet(cluster, IMAGES)
        yield cluster
    finally:
        cluster.stop()
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "pg-" not in leftovers, f"network namespaces left behind: {leftovers}"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert " pg-" not in links, "links left behind"


def get(cluster: ControlPlane, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def pods(cluster: ControlPlane, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get(cluster, "pods", "-n", namespace, "-l", selector)["items"]
    return items


def apply(cluster: ControlPlane, namespace: str, *objects: dict[str, Any]) -> None:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
    )


def test_deployment_pod_serves_on_its_own_address(node: ControlPlane) -> None:
    node.kubectl("create", "namespace", "web")
    # Without a readiness probe a pod is Ready once its process starts (as on a real kubelet),
    # before http.server listens; the probe makes Ready mean "serving".
    deployment = json.loads(
        node.kubectl(
            "create",
            "deployment",
            "web",
            "-n",
            "web",
            f"--image={HTTP}",
            "--port=8080",
            "--dry-run=client",
            "-o",
            "json",
        ).stdout
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "tcpSocket": {"port": 8080},
        "periodSeconds": 1,
    }
    apply(node, "web", deployment)
    node.kubectl("expose", "deployment", "web", "-n", "web", "--port=80", "--target-port=8080")
    ready = until(
        "a ready pod",
        lambda: [
            p
            for p in pods(node, "web", "app=web")
            if p["status"].get("containerStatuses", [{}])[0].get("ready")
        ],
    )
    ip = ready[0]["status"]["podIP"]
    assert ip.startswith("10.233.") and ip != NODE_IP
    # The real EndpointSlice controller publishes the pod's address: what a gateway will route to.
    slices = until(
        "an endpoint",
        lambda: [
            e
            for s in get(node, "endpointslices", "-n", "web")["items"]
            for e in s.get("endpoints") or []
            if ip in e["addresses"]
        ],
    )
    assert slices[0]["conditions"]["ready"] is True
    with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as response:
        assert response.status == 200
    # No kube-proxy and no default route: a Service ClusterIP fails inside the pod, at once.
    cluster_ip = get(node, "service", "web", "-n", "web")["spec"]["clusterIP"]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    probe = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            next(n for n in netns if n.startswith("pg-")),
            sys.executable,
            "-c",
            f"import socket; socket.create_connection(('{cluster_ip}', 80), timeout=5)",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.returncode != 0 and "unreachable" in probe.stderr, probe.stderr


def test_job_pod_failure_reports_exit_code_and_log_tail(node: ControlPlane) -> None:
    node.kubectl("create", "namespace", "jobs")
    node.kubectl(
        "create",
        "job",
        "fails",
        "-n",
        "jobs",
        f"--image={PY}",
        "--",
        "python",
        "-c",
        "import sys; print('engine build exploded'); sys.exit(3)",
    )
    node.kubectl("create", "job", "works", "-n", "jobs", f"--image={PY}", "--", "python", "-c", "print('ok')")
    failed = until(
        "a failed pod",
        lambda: [p for p in pods(node, "jobs", "job-name=fails") if p["status"].get("phase") == "Failed"],
    )
    terminated = failed[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3 and "engine build exploded" in terminated["message"]
    until(
        "the good Job complete",
        lambda: get(node, "job", "works", "-n", "jobs")["status"].get("succeeded") == 1,
    )


def test_init_containers_volumes_env_and_token(node: ControlPlane) -> None:
    node.kubectl("create", "namespace", "vols")
    node.kubectl("create", "configmap", "settings", "-n", "vols", "--from-literal=greeting=hello")
    script = (
        "import os, pathlib\n"
        "assert pathlib.Path('/mnt/scratch/ready').read_text() == 'init ran'\n"
        "assert pathlib.Path('/etc/settings/greeting').read_text() == 'hello'\n"
        "token = pathlib.Path('/var/run/secrets/kubernetes.io/serviceaccount/token').read_text()\n"
        "assert token.count('.') == 2\n"
        "print('pod', os.environ['MY_POD'], 'ip', os.environ['MY_IP'])\n"
        "assert os.environ['KUBERNETES_SERVICE_HOST'] == '10.233.0.1'\n"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "checks", "labels": {"app": "checks"}},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {
                    "name": "init",
                    "image": PY,
                    "command": ["python", "-c", "open('/mnt/scratch/ready', 'w').write('init ran')"],
                    "volumeMounts": [{"name": "work", "mountPath": "/mnt/scratch"}],
                }
            ],
            "containers": [
                {
                    "name": "main",
                    "image": PY,
                    "command": ["python", "-c", script],
                    "env": [
                        {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    ],
                    "volumeMounts": [
                        {"name": "work", "mountPath": "/mnt/scratch"},
                        {"name": "settings", "mountPath": "/etc/settings", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "work", "emptyDir": {}},
                {"name": "settings", "configMap": {"name": "settings"}},
            ],
        },
    }
    apply(node, "vols", pod)
    done = until(
        "the pod to finish",
        lambda: [
            p for p in pods(node, "vols", "app=checks") if p["status"].get("phase") in ("Succeeded", "Failed")
        ],
    )
    status = done[0]["status"]
    assert status["phase"] == "Succeeded", json.dumps(status)
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert not Path("/etc/settings").exists(), "a mount path leaked onto the host"


def test_readiness_probe_gates_ready_and_crash_loops_back_off(node: ControlPlane) -> None:
    node.kubectl("create", "namespace", "probes")
    slow = {
        "name": "slow",
        "image": PY,
        "command": [
            "python",
            "-c",
            "import time, http.server as h; time.sleep(3); "
            "h.HTTPServer(('', 8080), h.SimpleHTTPRequestHandler).serve_forever()",
        ],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    }
    crash = {"name": "crash", "image": PY, "command": ["python", "-c", "raise SystemExit(1)"]}
    apply(
        node,
        "probes",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "p"}},
            "spec": {"containers": [slow, crash]},
        },
    )
    first = until(
        "the pod running",
        lambda: [p for p in pods(node, "probes", "app=p") if p["status"].get("phase") == "Running"],
    )
    states = {c["name"]: c for c in first[0]["status"]["containerStatuses"]}
    assert states["slow"]["ready"] is False
    until(
        "slow ready",
        lambda: [
            c
            for p in pods(node, "probes", "app=p")
            for c in p["status"]["containerStatuses"]
            if c["name"] == "slow" and c["ready"]
        ],
    )
    looping = until(
        "crash to restart",
        lambda: [
            c
            for p in pods(node, "probes", "app=p")
            for c in p["status"]["containerStatuses"]
            if c["name"] == "crash" and c["restartCount"] >= 2
        ],
    )
    assert looping[0]["lastState"]["terminated"]["exitCode"] == 1
    node.kubectl("delete", "pod", "p", "-n", "probes", "--wait=true", "--timeout=60s")
    assert not pods(node, "probes", "app=p")


def test_claims_are_provisioned_and_outlive_their_pods(node: ControlPlane) -> None:
    node.kubectl("create", "namespace", "claims")
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "engines"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }

    def pod(name: str, code: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "c",
                        "image": PY,
                        "command": ["python", "-c", code],
                        "volumeMounts": [{"name": "cache", "mountPath": "/mnt/engines"}],
                    }
                ],
                "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "engines"}}],
            },
        }

    apply(node, "claims", claim, pod("writer", "open('/mnt/engines/plan.bin', 'w').write('engine')"))
    until(
        "the writer to finish",
        lambda: [p for p in pods(node, "claims", "app=writer") if p["status"].get("phase") == "Succeeded"],
    )
    assert get(node, "pvc", "engines", "-n", "claims")["status"]["phase"] == "Bound"
    apply(node, "claims", pod("reader", "assert open('/mnt/engines/plan.bin').read() == 'engine'"))
    done = until(
        "the reader to finish",
        lambda: [
            p
            for p in pods(node, "claims", "app=reader")
            if p["status"].get("phase") in ("Succeeded", "Failed")
        ],
    )
    assert done[0]["status"]["phase"] == "Succeeded", done[0]["status"]["containerStatuses"]
