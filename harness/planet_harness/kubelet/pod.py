"""One pod on the process kubelet: network, volumes, init containers, containers, probes, status."""

from __future__ import annotations

import base64
import datetime
import logging
import os
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from planet_harness.kubelet.container import Container, expand
from planet_harness.kubelet.network import Network
from planet_harness.kubelet.volumes import Volumes, field, resource_field

log = logging.getLogger("planet_harness.kubelet")
#: Restart back-off after a crash, as the kubelet's (10 s doubling to 5 min), shortened for tests.
BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
#: HTTPS probes do not verify the certificate, as the kubelet's do not (KEDA's metrics server probes so).
_PROBE_TLS = ssl.create_default_context()
_PROBE_TLS.check_hostname = False
_PROBE_TLS.verify_mode = ssl.CERT_NONE


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Settings:
    """What every pod of this node shares."""

    def __init__(
        self,
        *,
        node: str,
        network: Network,
        api: k8s.CoreV1Api,
        root: Path,
        api_host: str,
        api_port: int,
        resolve: Callable[[dict[str, Any]], list[str]],
        image_env: Callable[[str], dict[str, str]],
        allocatable: dict[str, str] | None = None,
    ) -> None:
        self.node = node
        self.network = network
        self.api = api
        self.root = root
        self.api_host = api_host
        self.api_port = api_port
        #: A container spec ▶ the local argv that stands for its image's entry point and command.
        self.resolve = resolve
        #: An image ▶ the environment it bakes in (the pod spec's env wins).
        self.image_env = image_env
        #: What the Node reports allocatable: an unset limit reads as this through the downward API.
        self.allocatable = allocatable or {}


class PodWorker:
    """Runs one pod until it finishes or is deleted; the thread writes the pod's status."""

    def __init__(self, settings: Settings, pod: dict[str, Any]) -> None:
        self.settings = settings
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        self.folder = (
            settings.root
            / "pods"
            / f"{pod['metadata']['namespace']}_{pod['metadata']['name']}_{self.uid[:8]}"
        )
        self.deleting = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"pod {self.key}", daemon=True)
        self.ip = ""
        self.init: list[Container] = []
        self.containers: list[Container] = []
        self.phase = "Pending"
        self._last_status: Any = None
        self._backoff_until: dict[str, float] = {}
        self.start_time = _now()

    def start(self) -> None:
        """Start the pod's thread."""
        self.thread.start()

    def delete(self, pod: dict[str, Any]) -> None:
        """The API server marked the pod for deletion: stop it and let the object go."""
        self.pod = pod
        self.deleting.set()

    # --- the pod's life -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.ip = self.settings.network.add_pod(self.uid)
            self._write_status()
            folders = Volumes(
                self.settings.api, root=self.folder / "volumes", claims=self.settings.root / "claims"
            ).prepare(self.pod)
            self.init = [self._container(c, folders) for c in self.pod["spec"].get("initContainers", [])]
            self.containers = [self._container(c, folders) for c in self.pod["spec"]["containers"]]
            if self._run_init() and not self.deleting.is_set():
                self._run_main()
        except Exception as exc:  # the pod fails with the reason, the kubelet goes on
            log.exception("pod %s failed to start", self.key)
            self.phase = "Failed"
            self._write_status(message=f"{type(exc).__name__}: {exc}", reason="KubeletError")
        finally:
            self._stop_all()
            self.settings.network.remove_pod(self.uid)
            if self.deleting.is_set():
                self._finalize_delete()

    def _run_init(self) -> bool:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for container in self.init:
            while not self.deleting.is_set():
                container.start()
                self._write_status()
                while container.running and not self.deleting.wait(0.2):
                    pass
                if self.deleting.is_set():
                    return False
                container.finished_at = time.time()
                if container.exit_code == 0:
                    break
                container.restarts += 1
                if policy == "Never":
                    self.phase = "Failed"
                    self._write_status()
                    return False
                self._wait_backoff(container)
            self._write_status()
        return True

    def _run_main(self) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for container in self.containers:
            container.start()
        self.phase = "Running"
        self._write_status()
        probes_due: dict[tuple[str, str], float] = {}
        failures: dict[tuple[str, str], int] = {}
        while not self.deleting.wait(0.25):
            changed = False
            for container in self.containers:
                if container.popen is not None and not container.running and container.finished_at is None:
                    container.finished_at = time.time()
                    container.last = self._terminated(container)
                    changed = True
                    code = container.exit_code
                    if policy == "Always" or (policy == "OnFailure" and code != 0):
                        container.restarts += 1
                        self._backoff_until[container.name] = (
                            time.time() + BACKOFF[min(container.restarts - 1, len(BACKOFF) - 1)]
                        )
                due = self._backoff_until.get(container.name)
                if container.finished_at is not None and due is not None and time.time() >= due:
                    del self._backoff_until[container.name]
                    container.start()
                    changed = True
                if container.running:
                    changed |= self._probe(container, probes_due, failures)
            if all(c.finished_at is not None and c.name not in self._backoff_until for c in self.containers):
                self.phase = "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"
                self._write_status()
                return
            if changed:
                self._write_status()

    def _probe(
        self, container: Container, due: dict[tuple[str, str], float], failures: dict[tuple[str, str], int]
    ) -> bool:
        changed = False
        started_at = container.started_at or time.time()
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.spec.get(kind)
            key = (container.name, kind)
            if kind != "startupProbe" and container.spec.get("startupProbe") and not container.started:
                continue
            if probe is None:
                if kind == "startupProbe" and not container.started:
                    container.started, changed = True, True
                if kind == "readinessProbe" and not container.ready:
                    container.ready, changed = True, True
                continue
            if kind == "startupProbe" and container.started:
                continue
            now = time.time()
            if now < due.get(key, started_at + probe.get("initialDelaySeconds", 0)):
                continue
            due[key] = now + probe.get("periodSeconds", 10)
            ok = self._check(probe)
            failures[key] = 0 if ok else failures.get(key, 0) + 1
            threshold = probe.get("failureThreshold", 3)
            if kind == "startupProbe":
                if ok:
                    container.started, changed = True, True
                elif failures[key] >= threshold:
                    container.stop(grace=1)
            elif kind == "readinessProbe":
                ready = ok or (container.ready and failures[key] < threshold)
                if ready != container.ready:
                    container.ready, changed = ready, True
            elif not ok and failures[key] >= threshold:
                log.info("%s/%s failed its liveness probe: restarting", self.key, container.name)
                failures[key] = 0
                container.stop(grace=1)
        return changed

    def _check(self, probe: dict[str, Any]) -> bool:
        timeout = probe.get("timeoutSeconds", 1)
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                port = self._port(get["port"])
                scheme = get.get("scheme", "HTTP").lower()
                url = f"{scheme}://{get.get('host') or self.ip}:{port}{get.get('path', '/')}"
                with urllib.request.urlopen(url, timeout=timeout, context=_PROBE_TLS) as response:
                    return bool(200 <= response.status < 400)
            if "tcpSocket" in probe:
                with socket.create_connection(
                    (self.ip, self._port(probe["tcpSocket"]["port"])), timeout=timeout
                ):
                    return True
        except OSError:
            return False
        raise NotImplementedError(f"probe {sorted(probe)} is not supported by this kubelet")

    def _port(self, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for container in self.pod["spec"]["containers"]:
            for item in container.get("ports", []):
                if item.get("name") == port:
                    return int(item["containerPort"])
        raise ValueError(f"no container port named {port}")

    def _wait_backoff(self, container: Container) -> None:
        self.deleting.wait(BACKOFF[min(container.restarts - 1, len(BACKOFF) - 1)])

    def _stop_all(self) -> None:
        grace = float(
            self.pod["metadata"].get("deletionGracePeriodSeconds")
            or self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        )
        for container in [*self.init, *self.containers]:
            if container.running:
                container.stop(grace=min(grace, 30.0))

    def _finalize_delete(self) -> None:
        # The kubelet is who removes a pod for good: grace 0 once its containers are gone.
        meta = self.pod["metadata"]
        try:
            self.settings.api.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                body=k8s.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=k8s.V1Preconditions(uid=self.uid)
                ),
            )
        except k8s.ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("pod %s: final delete failed: %s", self.key, exc.reason)

    # --- the container's inputs ---------------------------------------------------------------

    def _container(self, spec: dict[str, Any], folders: dict[str, Path]) -> Container:
        env = self._env(spec)
        argv = [expand(a, env) for a in self.settings.resolve(spec)]
        mounts = []
        for mount in spec.get("volumeMounts", []):
            source = folders[mount["name"]]
            if mount.get("subPath"):
                source = source / mount["subPath"]
                source.mkdir(parents=True, exist_ok=True)
            mounts.append((source, mount["mountPath"], bool(mount.get("readOnly"))))
        process_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root", **env}
        return Container(
            spec,
            argv=argv,
            env=process_env,
            netns=self.settings.network.namespace_of(self.uid),
            mounts=mounts,
            folder=self.folder,
        )

    def _env(self, spec: dict[str, Any]) -> dict[str, str]:
        namespace = self.pod["metadata"]["namespace"]
        api = self.settings.api
        # No kube-proxy: the API server's own address stands in for the kubernetes Service.
        env = {
            **self.settings.image_env(spec.get("image", "")),
            "KUBERNETES_SERVICE_HOST": self.settings.api_host,
            "KUBERNETES_SERVICE_PORT": str(self.settings.api_port),
            "HOSTNAME": self.pod["metadata"]["name"],
        }
        for source in spec.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                found = api.read_namespaced_config_map(source["configMapRef"]["name"], namespace)
                env.update({prefix + k: v for k, v in (found.data or {}).items()})
            if "secretRef" in source:
                secret = api.read_namespaced_secret(source["secretRef"]["name"], namespace)
                env.update({prefix + k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()})
        pod = {**self.pod, "status": {"podIP": self.ip, "hostIP": self.settings.network.node_ip}}
        for item in spec.get("env", []):
            name = item["name"]
            if "value" in item:
                env[name] = expand(str(item["value"]), env)
                continue
            ref = item.get("valueFrom", {})
            if not ref:
                # `value: ""` arrives with no value at all (omitempty); the variable is still set, empty.
                env[name] = ""
            elif "fieldRef" in ref:
                env[name] = field(pod, ref["fieldRef"]["fieldPath"])
            elif "configMapKeyRef" in ref:
                found = api.read_namespaced_config_map(ref["configMapKeyRef"]["name"], namespace)
                env[name] = (found.data or {}).get(ref["configMapKeyRef"]["key"], "")
            elif "secretKeyRef" in ref:
                secret = api.read_namespaced_secret(ref["secretKeyRef"]["name"], namespace)
                value = (secret.data or {}).get(ref["secretKeyRef"]["key"], "")
                env[name] = base64.b64decode(value).decode() if value else ""
            elif "resourceFieldRef" in ref:
                wanted = ref["resourceFieldRef"]
                env[name] = resource_field(self._named(spec, wanted), wanted, self.settings.allocatable)
        return env

    def _named(self, spec: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
        """The container a ``resourceFieldRef`` reads: ``containerName`` or, in env, this one."""
        wanted = ref.get("containerName")
        if not wanted:
            return spec
        every = [*self.pod["spec"].get("initContainers", []), *self.pod["spec"]["containers"]]
        return next((c for c in every if c["name"] == wanted), spec)

    # --- status -------------------------------------------------------------------------------

    def _terminated(self, container: Container) -> dict[str, Any]:
        code = container.exit_code or 0
        state: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": _stamp(container.started_at),
            "finishedAt": _stamp(container.finished_at),
        }
        if code != 0:
            state["message"] = container.tail()
        return {"terminated": state}

    def _container_status(self, container: Container) -> dict[str, Any]:
        if container.running:
            state: dict[str, Any] = {"running": {"startedAt": _stamp(container.started_at)}}
        elif container.name in self._backoff_until:
            state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off restarting failed container {container.name}",
                }
            }
        elif container.finished_at is not None:
            state = self._terminated(container)
        else:
            state = {"waiting": {"reason": "PodInitializing"}}
        status: dict[str, Any] = {
            "name": container.name,
            "image": container.spec.get("image", ""),
            "imageID": "",
            "containerID": f"process://{container.popen.pid}" if container.popen else "",
            "ready": container.ready and container.running,
            "started": container.started and container.running,
            "restartCount": container.restarts,
            "state": state,
        }
        if container.last is not None and (container.running or container.name in self._backoff_until):
            status["lastState"] = container.last
        return status

    def _write_status(self, *, message: str | None = None, reason: str | None = None) -> None:
        ready = self.phase == "Running" and all(c.ready and c.running for c in self.containers)
        initialized = (all(c.exit_code == 0 for c in self.init) and self.phase != "Pending") or not self.init
        now = _now()

        def condition(kind: str, value: bool) -> dict[str, Any]:
            return {"type": kind, "status": "True" if value else "False", "lastTransitionTime": now}

        status: dict[str, Any] = {
            "phase": self.phase,
            "hostIP": self.settings.network.node_ip,
            "hostIPs": [{"ip": self.settings.network.node_ip}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}] if self.ip else [],
            "startTime": self.start_time,
            "conditions": [
                condition("PodScheduled", True),
                condition("Initialized", initialized),
                condition("ContainersReady", ready),
                condition("Ready", ready),
            ],
            "containerStatuses": [self._container_status(c) for c in self.containers],
            "initContainerStatuses": [self._container_status(c) for c in self.init],
        }
        if message:
            status["message"], status["reason"] = message, reason
        comparable = {**status, "conditions": [(c["type"], c["status"]) for c in status["conditions"]]}
        if comparable == self._last_status:
            return
        self._last_status = comparable
        meta = self.pod["metadata"]
        try:
            self.settings.api.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})
        except k8s.ApiException as exc:
            log.warning("pod %s: status write failed: %s %s", self.key, exc.status, exc.reason)
