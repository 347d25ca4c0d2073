"""A kubelet whose containers are local processes, each pod in a network namespace of its own."""

from planet_harness.kubelet.network import Network
from planet_harness.kubelet.node import Images, Kubelet, NodeConfig

__all__ = ["Images", "Kubelet", "Network", "NodeConfig"]
