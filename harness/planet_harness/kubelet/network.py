"""Pod networking: one network namespace per pod, a veth pair into the stack's bridge, no default route.

The bridge holds the node's address (the first of the pod CIDR); each pod gets the next free one.
Pods reach each other and the node's address, and nothing else: there is no default route and no
kube-proxy, so dialling a Service ClusterIP fails inside a pod at once ("network unreachable").
Every name the stack creates starts with its prefix, so :meth:`Network.sweep` removes what a crashed
run left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import signal
import subprocess
import threading


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=30)


class Network:
    """A bridge and the pods' namespaces on it."""

    def __init__(self, *, prefix: str = "pg", cidr: str = "10.233.0.0/16") -> None:
        self.prefix = prefix
        self.cidr = ipaddress.ip_network(cidr)
        self.bridge = f"{prefix}-br0"
        hosts = self.cidr.hosts()
        self.node_ip = str(next(hosts))
        self._free = hosts
        self._lock = threading.Lock()
        self._by_pod: dict[str, str] = {}

    def up(self) -> None:
        """Create the bridge with the node's address (after sweeping leftovers of an earlier run)."""
        self.sweep()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.node_ip}/{self.cidr.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def namespace_of(self, uid: str) -> str:
        """The network namespace name of a pod (stable for its uid, short enough for link names)."""
        return f"{self.prefix}-{hashlib.sha256(uid.encode()).hexdigest()[:10]}"

    def add_pod(self, uid: str) -> str:
        """Create the pod's namespace and link; returns its address."""
        netns = self.namespace_of(uid)
        with self._lock:
            address = str(next(self._free))
            self._by_pod[uid] = address
        host_end, pod_end = f"{netns}h", f"{netns}p"
        _ip("netns", "add", netns)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", pod_end)
        _ip("link", "set", pod_end, "netns", netns)
        _ip("link", "set", host_end, "master", self.bridge)
        _ip("link", "set", host_end, "up")
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("addr", "add", f"{address}/{self.cidr.prefixlen}", "dev", pod_end, netns=netns)
        _ip("link", "set", pod_end, "up", netns=netns)
        return address

    def remove_pod(self, uid: str) -> None:
        """Delete the pod's namespace (its veth end goes with it, and so does the host end)."""
        netns = self.namespace_of(uid)
        _ip("netns", "del", netns, check=False)
        _ip("link", "del", f"{netns}h", check=False)
        with self._lock:
            self._by_pod.pop(uid, None)

    def down(self) -> None:
        """Remove every namespace and link this network made."""
        for uid in list(self._by_pod):
            self.remove_pod(uid)
        self.sweep()

    def sweep(self) -> None:
        """Delete namespaces and links with this network's prefix, whoever made them."""
        listed = _ip("netns", "list", check=False).stdout
        for line in listed.splitlines():
            name = line.split()[0] if line.strip() else ""
            if name.startswith(f"{self.prefix}-"):
                # Containers a killed kubelet left running still hold the namespace: end them first.
                for pid in _ip("netns", "pids", name, check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                _ip("netns", "del", name, check=False)
        links = _ip("-o", "link", "show", check=False).stdout
        for line in links.splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                name = parts[1].strip().split("@")[0]
                if name.startswith(f"{self.prefix}-"):
                    _ip("link", "del", name, check=False)
