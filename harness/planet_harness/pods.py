"""Run a Deployment's container as a local process that believes it is in a pod.

The process gets what a kubelet gives a container: the command and args from the pod spec, its
environment (``fieldRef`` values resolved), ``KUBERNETES_SERVICE_HOST``/``PORT``, and the projected
ServiceAccount volume (a bound token from the TokenRequest API, the cluster CA, the namespace) at
``/var/run/secrets/kubernetes.io/serviceaccount``, where client libraries look for it. That path is
mounted in a private mount namespace, so the host's filesystem is untouched.
"""

from __future__ import annotations

import shlex
import shutil
from typing import Any

from planet_harness.controlplane import ControlPlane
from planet_harness.processes import Process

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _field(pod: dict[str, Any], path: str) -> str:
    value: Any = pod
    for part in path.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    return str(value)


def environment(container: dict[str, Any], pod: dict[str, Any]) -> dict[str, str]:
    """The container's ``env``, with ``fieldRef``s read from ``pod``; other sources are refused."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "fieldRef" in item.get("valueFrom", {}):
            env[item["name"]] = _field(pod, item["valueFrom"]["fieldRef"]["fieldPath"])
        else:
            raise NotImplementedError(f"env {item['name']}: only value and fieldRef are supported")
    return env


class PodProcess:
    """One container of a pod, as a local process with the pod's identity."""

    def __init__(
        self,
        cluster: ControlPlane,
        *,
        pod: dict[str, Any],
        container: dict[str, Any],
        commands: dict[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.pod = pod
        self.container = container
        namespace = pod["metadata"]["namespace"]
        name = pod["metadata"]["name"]
        self.folder = cluster.workdir / "pods" / f"{namespace}_{name}"
        self.secrets = self.folder / "serviceaccount"
        self.secrets.mkdir(parents=True, exist_ok=True)
        #: An image's entry point resolved to a local program (``planet`` ▶ the venv's ``planet``).
        self.commands = commands or {}
        self.process: Process | None = None

    def project_token(self, seconds: int = 3600, *, bound_to: tuple[str, str, str] | None = None) -> None:
        """Write (or rotate) the projected ServiceAccount token, CA and namespace.

        The token is bound to the Pod object when the pod has one in the API (as the kubelet binds
        it), or to ``bound_to`` (kind, name, uid).
        """
        namespace = self.pod["metadata"]["namespace"]
        account = self.pod["spec"].get("serviceAccountName", "default")
        uid = self.pod["metadata"].get("uid")
        if bound_to is None and uid:
            bound_to = ("Pod", self.pod["metadata"]["name"], uid)
        token = self.cluster.token(namespace, account, seconds=seconds, bound_to=bound_to)
        # Written then renamed, as the kubelet's atomic writer does: a reader never sees half a token.
        for name, content in (
            ("token", token.encode()),
            ("ca.crt", self.cluster.ca_pem()),
            ("namespace", namespace.encode()),
        ):
            partial = self.secrets / f".{name}.tmp"
            partial.write_bytes(content)
            partial.replace(self.secrets / name)

    def start(self, *, bound_to: tuple[str, str, str] | None = None) -> Process:
        """Start the container's process in its own mount namespace."""
        self.project_token(bound_to=bound_to)
        argv = [*self.container.get("command", []), *self.container.get("args", [])]
        if argv and argv[0] in self.commands:
            argv[0] = self.commands[argv[0]]
        elif argv and shutil.which(argv[0]) is None:
            raise FileNotFoundError(f"{argv[0]}: no local program for image {self.container.get('image')}")
        env = {
            **environment(self.container, self.pod),
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.cluster.api_port),
        }
        # /run (where /var/run points) gets a private tmpfs holding only the ServiceAccount folder.
        script = (
            "set -e; mount --make-rprivate /; mount -t tmpfs tmpfs /run; "
            f"mkdir -p {SERVICE_ACCOUNT_DIR}; "
            f"mount --bind {shlex.quote(str(self.secrets))} {SERVICE_ACCOUNT_DIR}; "
            f"exec {shlex.join(argv)}"
        )
        self.process = Process(
            f"{self.pod['metadata']['name']}/{self.container['name']}",
            ["unshare", "--mount", "--", "sh", "-c", script],
            log=self.folder / f"{self.container['name']}.log",
            env=env,
        )
        self.process.start()
        return self.process

    def stop(self) -> None:
        """Stop the container's process."""
        if self.process is not None:
            self.process.stop()
