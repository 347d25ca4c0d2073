"""``planet dev up`` and ``planet demo``: the harness's subcommands of the ``planet`` CLI.

They are a plugin (entry point group ``planetgen.cli``, declared by the ``planetgen-harness``
distribution): the product's CLI lists them when the harness is installed (the dev extra) and the
operator image, which ships without it, has no such commands.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from planet_harness import devstack


class Stopped(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived: unwind, stopping every process on the way out."""


def say(text: str) -> None:
    """Progress goes to stderr, so stdout stays for what a script reads."""
    print(text, file=sys.stderr, flush=True)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """The first signal raises :class:`Stopped` wherever the main thread is; later ones are ignored.

    Raising (rather than only setting a flag) also interrupts a start-up in progress, and the
    ``finally`` blocks on the way out stop what was started.
    """
    stopping = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            return
        stopping.set()
        raise Stopped(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield stopping
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def add_dev(sub: Any) -> None:
    """Register ``dev up``."""
    parser = sub.add_parser("dev", help="the whole stack on this machine (real control plane and KServe)")
    verbs = parser.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser(
        "up", help="start everything, install planetgen with Helm, write .planet/env; Ctrl-C stops it all"
    )
    up.add_argument("--state-dir", type=Path, default=Path(".planet"), help="etcd, logs, models, env file")
    up.add_argument("--resync", type=int, default=5, help="operator resync seconds (chart value)")
    up.add_argument(
        "--set", dest="values", action="append", default=[], metavar="KEY=VALUE", help="chart value"
    )
    up.add_argument(
        "--autoscaling",
        action="store_true",
        help="Prometheus and KEDA at their own intervals (rollout analysis, scaling on queue depth)",
    )
    up.set_defaults(handler=run_up)


def build_components() -> None:
    """Build what is missing for its pin (seconds when cached; about 12 minutes cold)."""
    from planet_harness import components

    for component in components.COMPONENTS:
        components.build(component, say=say)


def with_stack(
    options: devstack.Options, work: Callable[[devstack.DevStack, threading.Event], int], *, on_signal: int
) -> int:
    """Build, start the stack, run ``work`` on it, stop it all; what ``dev up`` and ``demo`` share.

    A signal returns ``on_signal``; a component that failed to build or start returns 1, its name and
    log tail being in the message.
    """
    from planet_harness import devstack

    with stop_on_signals() as stopping:
        try:
            build_components()
            with devstack.up(options, say=say) as dev:
                return work(dev, stopping)
        except Stopped as why:
            say(f"{why}: stopped everything")
            return on_signal
        except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
            say(f"error: {exc}")
            return 1


def run_up(args: argparse.Namespace) -> int:
    """Run until a signal; 1 with the failing component's log tail when something does not start."""
    from planet_harness import devstack
    from planet_harness import stack as harness

    options = devstack.Options(
        state_dir=args.state_dir,
        resync_seconds=args.resync,
        values=tuple(args.values),
        autoscaling=harness.Autoscaling() if args.autoscaling else None,
    )
    return with_stack(options, _serve, on_signal=0)


def _serve(dev: devstack.DevStack, stopping: threading.Event) -> int:
    say(f"  . {dev.env_file}    # KUBECONFIG and PLANET_PROXY")
    say("  kubectl apply -f examples/minimal.yaml && kubectl get pp -w")
    say('  curl --proxy "$PLANET_PROXY" "$(kubectl get pp NAME -o jsonpath=\'{.status.url}\')"')
    say(f"  logs: {dev.cluster.logs}; pods' logs: {dev.cluster.workdir / 'kubelet'}")
    say("Ctrl-C (or SIGTERM, SIGHUP) stops every process and removes every namespace and link")
    while not stopping.wait(3600):
        pass
    return 0


def add_demo(sub: Any) -> None:
    """Register ``demo``."""
    from planet_harness import demo

    demo.add_parser(sub)
