"""``python -m planet_operator.kubeapi --port N --crds DIR --kubeconfig PATH``: run in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from planet_operator.kubeapi import APIServer, write_kubeconfig


async def serve(args: argparse.Namespace) -> None:
    """Start, write the kubeconfig, wait for SIGINT/SIGTERM, stop."""
    server = APIServer(crd_paths=args.crds, port=args.port)
    await server.start()
    if args.kubeconfig:
        write_kubeconfig(args.kubeconfig, server.url)
    print(f"listening on {server.url}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop()


def main() -> None:
    """Parse flags and serve."""
    parser = argparse.ArgumentParser(prog="python -m planet_operator.kubeapi", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--crds", type=Path, action="append", default=[])
    parser.add_argument("--kubeconfig", type=Path)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
