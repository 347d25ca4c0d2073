"""``python -m planet_harness.kubelet``: run the process kubelet until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from kubernetes import client, config

from planet_harness.kubelet.network import Network
from planet_harness.kubelet.node import Images, Kubelet, NodeConfig


def main(argv: list[str] | None = None) -> int:
    """Parse flags, register the node, serve pods; stop cleanly on a signal."""
    parser = argparse.ArgumentParser(prog="python -m planet_harness.kubelet", description=__doc__)
    parser.add_argument("--kubeconfig", required=True, help="the node's credentials (system:node:NAME)")
    parser.add_argument("--root", required=True, type=Path, help="folder for pods, volumes and logs")
    parser.add_argument(
        "--api-port", required=True, type=int, help="the API server's port (pods dial the node IP)"
    )
    parser.add_argument(
        "--images", type=Path, help='JSON: {"entrypoints": {prefix: argv}, "commands": {name: path}}'
    )
    parser.add_argument("--node-name", default="planet-node")
    parser.add_argument("--gpu-product", default="NVIDIA-H100-80GB-HBM3")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument(
        "--prefix", default="pg", help="prefix of every namespace and link this kubelet makes"
    )
    parser.add_argument("--pod-cidr", default="10.233.0.0/16")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    images = Images(**json.loads(args.images.read_text())) if args.images else Images()
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(args.kubeconfig), client_configuration=configuration
    )
    kubelet = Kubelet(
        client.ApiClient(configuration),
        root=args.root,
        network=Network(prefix=args.prefix, cidr=args.pod_cidr),
        images=images,
        api_port=args.api_port,
        node=NodeConfig(name=args.node_name, gpu_product=args.gpu_product, gpus=args.gpus),
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        kubelet.stop()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    kubelet.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
