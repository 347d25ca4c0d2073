"""etcd, kube-apiserver and kube-controller-manager as a cluster would run them, on loopback.

The API server runs with RBAC, ServiceAccount token signing, the OwnerReferencesPermissionEnforcement
admission plugin and an audit log (tests read it to prove no request was denied). No Service
ClusterIP is ever dialled: webhooks are registered by URL and the API server's own endpoint
reconciler is off (it refuses loopback addresses).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from planet_harness import components, pki
from planet_harness.processes import Process, free_port

SERVICE_CIDR = "10.96.0.0/16"
#: Hosts in the API server's certificate: what clients in and out of "pods" call it by.
API_HOSTS = [
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.96.0.1",
]
ISSUER = "https://kubernetes.default.svc.cluster.local"
#: Metadata for every request, so a test can find each denied one by user.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}
#: The admission plugins a production cluster enables, plus the one that guards ownerReferences.
ADMISSION = [
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "DefaultStorageClass",
    "ResourceQuota",
    "OwnerReferencesPermissionEnforcement",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
]


def kubeconfig(
    path: Path,
    *,
    server: str,
    ca: Path,
    user: str,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
) -> Path:
    """Write a one-context kubeconfig."""
    credentials: dict[str, str] = {}
    if cert and key:
        credentials = {"client-certificate": str(cert), "client-key": str(key)}
    if token:
        credentials["token"] = token
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "planetgen", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "planetgen", "context": {"cluster": "planetgen", "user": user}}],
        "current-context": "planetgen",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _client_flags(config: Path) -> list[str]:
    """What the controller manager and the scheduler share: one kubeconfig, loopback, one replica."""
    return [
        f"--kubeconfig={config}",
        f"--authentication-kubeconfig={config}",
        f"--authorization-kubeconfig={config}",
        "--bind-address=127.0.0.1",
        f"--secure-port={free_port()}",
        "--leader-elect=false",
    ]


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


class ControlPlane:
    """The control plane of one test cluster, its files in ``workdir``."""

    def __init__(
        self, workdir: Path, *, node_ip: str | None = None, hpa_sync_seconds: float | None = None
    ) -> None:
        self.workdir = workdir
        #: kube-controller-manager's ``--horizontal-pod-autoscaler-sync-period`` (its default, 15 s, if None).
        self.hpa_sync_seconds = hpa_sync_seconds
        #: The pod network's node address: pods dial the API server there (there is no kube-proxy).
        self.node_ip = node_ip
        self.pki_dir = workdir / "pki"
        self.logs = workdir / "logs"
        self.processes: list[Process] = []
        self.api_port = free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.kubeconfig = workdir / "admin.kubeconfig"
        self.audit_log = workdir / "audit.log"
        self.ca: pki.Authority | None = None
        #: Clean-ups that run after every process has stopped (a kubelet's leftover namespaces).
        self.on_stop: list[Callable[[], None]] = []

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start etcd, then the API server, then the controller manager; wait until each serves."""
        started = time.monotonic()
        self.ca = ca = pki.Authority(self.pki_dir)
        serving = ca.serving("apiserver", hosts=API_HOSTS + ([self.node_ip] if self.node_ip else []))
        admin = ca.client("admin", user="kubernetes-admin", groups=("system:masters",))
        kcm = ca.client("kube-controller-manager", user="system:kube-controller-manager")
        scheduler = ca.client("kube-scheduler", user="system:kube-scheduler")
        # The aggregator's identity towards extension API servers (KEDA's metrics server).
        front_proxy = ca.client("front-proxy-client", user="front-proxy-client")
        sa = pki.service_account_keys(self.pki_dir)
        kubeconfig(
            self.kubeconfig, server=self.server, ca=ca.pair.cert, user="admin", cert=admin.cert, key=admin.key
        )
        kcm_config = kubeconfig(
            self.workdir / "kcm.kubeconfig",
            server=self.server,
            ca=ca.pair.cert,
            user="kcm",
            cert=kcm.cert,
            key=kcm.key,
        )
        self._start_etcd()
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(components.binary("kube-apiserver")),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                # With a pod network the pods dial the node address, so listen there too.
                f"--bind-address={'0.0.0.0' if self.node_ip else '127.0.0.1'}",
                f"--advertise-address={self.node_ip or '127.0.0.1'}",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.pair.cert}",
                "--authorization-mode=Node,RBAC",
                f"--enable-admission-plugins={','.join(ADMISSION)}",
                f"--service-account-issuer={ISSUER}",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Its endpoint reconciler would publish 127.0.0.1 for the kubernetes Service: refused.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                # API aggregation, as kubeadm sets it up; endpoint routing because the aggregator
                # would otherwise dial the APIService's Service ClusterIP, and nothing here serves one.
                f"--requestheader-client-ca-file={ca.pair.cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={front_proxy.cert}",
                f"--proxy-client-key-file={front_proxy.key}",
                "--enable-aggregator-routing=true",
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--profiling=false",
                f"--cert-dir={self.pki_dir}",
            ],
        )
        apiserver.wait_until(self._ready, timeout=60, what="/readyz")
        controllers = self._spawn(
            "kube-controller-manager",
            [
                str(components.binary("kube-controller-manager")),
                *_client_flags(kcm_config),
                f"--service-account-private-key-file={sa.key}",
                f"--root-ca-file={ca.pair.cert}",
                "--use-service-account-credentials=true",
                # Dynamic PersistentVolumes for one machine (the upstream test provisioner, /tmp/hostpath_pv).
                "--enable-hostpath-provisioner=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--cert-dir={self.pki_dir / 'kcm'}",
                *(
                    [f"--horizontal-pod-autoscaler-sync-period={self.hpa_sync_seconds:g}s"]
                    if self.hpa_sync_seconds
                    else []
                ),
            ],
        )
        scheduler_config = kubeconfig(
            self.workdir / "scheduler.kubeconfig",
            server=self.server,
            ca=ca.pair.cert,
            user="scheduler",
            cert=scheduler.cert,
            key=scheduler.key,
        )
        self._spawn(
            "kube-scheduler",
            [
                str(components.binary("kube-scheduler")),
                *_client_flags(scheduler_config),
            ],
        )
        # The controller manager is up when it has published the root CA into a namespace.
        controllers.wait_until(
            lambda: (
                self.kubectl("get", "configmap", "kube-root-ca.crt", "-n", "default", check=False).returncode
                == 0
            ),
            timeout=60,
            what="kube-root-ca.crt in default",
        )
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Stop everything this control plane started, newest first."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        for clean in self.on_stop:
            clean()
        self.on_stop.clear()

    def _start_etcd(self) -> None:
        self.etcd_port, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{peer}"
        etcd = self._spawn(
            "etcd",
            [
                str(components.binary("etcd")),
                "--name=planetgen",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=planetgen={peer_url}",
                "--log-level=warn",
                # On disk, but without an fsync per write: a test cluster is rebuilt, never recovered.
                "--unsafe-no-fsync",
            ],
        )
        etcd.wait_until(
            lambda: (
                json.loads(urllib.request.urlopen(f"{client_url}/health", timeout=2).read())["health"]
                == "true"
            ),
            timeout=30,
            what="/health",
        )

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Process:
        process = Process(name, command, log=self.logs / f"{name}.log", env=env)
        process.start()
        self.processes.append(process)
        return process

    def _ready(self) -> bool:
        assert self.ca is not None
        context = ssl.create_default_context(cafile=str(self.ca.pair.cert))
        context.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        with urllib.request.urlopen(f"{self.server}/readyz", context=context, timeout=2) as response:
            return bool(response.status == 200)

    # --- clients ------------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster (admin unless ``kubeconfig`` says otherwise)."""
        command = [str(components.binary("kubectl")), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        try:
            result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise KubectlError(f"kubectl {' '.join(args)}: no answer within {timeout:.0f} s") from None
        if check and result.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr.strip()}"
            )
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the real Helm against this cluster as the admin, with its state kept in ``workdir``."""
        home = self.workdir / "helm"
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        command = [str(components.binary("helm")), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        if check and result.returncode != 0:
            raise KubectlError(
                f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr.strip()}"
            )
        return result

    def apply(self, objects: Sequence[dict[str, Any]] | str, *, server_side: bool = True) -> None:
        """Apply manifests (a YAML stream or objects) as the admin."""
        text = objects if isinstance(objects, str) else yaml.safe_dump_all(list(objects))
        args = ["apply", "-f", "-"]
        if server_side:
            args += ["--server-side", "--force-conflicts", "--field-manager=planet-harness"]
        self.kubectl(*args, input=text)

    def token(
        self,
        namespace: str,
        service_account: str,
        *,
        seconds: int = 3600,
        bound_to: tuple[str, str, str] | None = None,
    ) -> str:
        """A ServiceAccount token from the TokenRequest API, as a kubelet projects it.

        ``bound_to`` is (kind, name, uid) of a Pod or Secret: the token dies with that object, which
        is how a test revokes one.
        """
        args = ["create", "token", service_account, "-n", namespace, f"--duration={seconds}s"]
        if bound_to is not None:
            kind, name, uid = bound_to
            args += [
                f"--bound-object-kind={kind}",
                f"--bound-object-name={name}",
                f"--bound-object-uid={uid}",
            ]
        return self.kubectl(*args).stdout.strip()

    def ca_pem(self) -> bytes:
        """The cluster CA, for pods' ``ca.crt`` and webhook caBundles."""
        assert self.ca is not None
        return self.ca.pem

    def ca_bundle(self) -> str:
        """The cluster CA, base64 as ``caBundle`` fields want it."""
        return base64.b64encode(self.ca_pem()).decode()

    def audit_events(self) -> Iterator[dict[str, Any]]:
        """Every event in the audit log so far."""
        if not self.audit_log.exists():
            return
        with self.audit_log.open() as lines:
            for line in lines:
                if line.strip():
                    yield json.loads(line)
