"""kubectl planet: list pipelines, show status and history, and drive rollouts.

Rollout commands set the annotations the operator acts on (``planetgen.io/promote``, ``pause``,
``resume``, ``abort``, ``rollback-to``) and removes once handled; nothing else changes the spec.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, RenderableType

from planet_contracts.api import validation
from planet_operator import yamlio
from planet_operator.builders import names, revision
from planet_operator.plugin import views
from planet_operator.plugin.client import Cluster, PluginError, Target
from planet_operator.reconcile import diagnose
from planet_operator.rollout import machine

EXIT_ERROR = 2
#: Commands that steer a canary in flight, by annotation.
ROLLOUT_COMMANDS = {
    "promote": (machine.PROMOTE, "promote the canary to stable now, skipping the remaining steps"),
    "pause": (machine.PAUSE, "hold the canary at its current step (analysis failures still roll back)"),
    "resume": (machine.RESUME, "continue a paused rollout"),
    "abort": (machine.ABORT, "stop the rollout: all traffic back to the stable revision"),
}


def build_parser() -> argparse.ArgumentParser:
    """The parser, with kubectl's connection flags on every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    common.add_argument("--context", help="kubeconfig context")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")

    parser = argparse.ArgumentParser(prog="kubectl planet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", parents=[common, output], help="pipelines with phase, revision, traffic")
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    listing.set_defaults(handler=cmd_list)
    for name, handler, text in (
        (
            "status",
            cmd_status,
            "conditions, rollout, releases, and the chain from the pipeline down to a failing pod",
        ),
        ("history", cmd_history, "stored revisions (ControllerRevisions): number, model hash, age"),
    ):
        one = sub.add_parser(name, parents=[common, output], help=text)
        one.add_argument("name")
        one.set_defaults(handler=handler)
    for name, (annotation, text) in ROLLOUT_COMMANDS.items():
        command = sub.add_parser(name, parents=[common], help=text)
        command.add_argument("name")
        command.set_defaults(handler=_rollout_command(name, annotation))
    rollback = sub.add_parser(
        "rollback", parents=[common], help="restore an earlier revision's spec (default: the previous one)"
    )
    rollback.add_argument("name")
    rollback.add_argument("--to-revision", metavar="N", help="revision number from `history`, or its hash")
    rollback.set_defaults(handler=cmd_rollback)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kubectl-planet`` executable: 0 on success, 2 with one line on error."""
    args = build_parser().parse_args(argv)
    cluster: Cluster | None = None
    try:
        cluster = Cluster(Target(kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace))
        code: int = args.handler(cluster, args, Console(width=None if sys.stdout.isatty() else 200))
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    finally:
        if cluster is not None:
            cluster.close()
    return code


def cmd_list(cluster: Cluster, args: argparse.Namespace, console: Console) -> int:
    """``list``."""
    items = cluster.pipelines(all_namespaces=args.all_namespaces)
    if args.output != "table":
        return _emit(args.output, {"apiVersion": "v1", "kind": "List", "items": items})
    if not items:
        where = "any namespace" if args.all_namespaces else f"namespace {cluster.namespace}"
        print(f"No PlanetPipelines found in {where}.")
        return 0
    rows = [views.pipeline_row(item, with_namespace=args.all_namespaces) for item in items]
    return _print(console, views.table(rows))


def cmd_status(cluster: Cluster, args: argparse.Namespace, console: Console) -> int:
    """``status NAME``."""
    body = cluster.pipeline(args.name)
    if args.output != "table":
        return _emit(args.output, body)
    return _print(console, views.status_view(body, children(cluster, body)))


def children(cluster: Cluster, body: Any) -> list[views.Child]:
    """The pipeline's build Job and InferenceServices, each with its pods; an unreadable one says why."""
    name = body["metadata"]["name"]
    out: list[views.Child] = []
    try:
        spec = validation.parse_spec(body.get("spec") or {}, name=name)
    except validation.InvalidPipeline:
        spec = None
    if spec is not None and revision.needs_engine_build(spec):
        job = names.engine_job(revision.engine_key_of(spec))
        try:
            found = cluster.job(job)
        except PluginError as exc:
            out.append(views.Child(kind="Job", name=job, error=str(exc)))
        else:
            out.append(_with_pods(cluster, "Job", job, found, f"{diagnose.JOB_NAME_LABELS[0]}={job}"))
    try:
        services = cluster.services(name)
    except PluginError as exc:
        return [*out, views.Child(kind="InferenceService", name="*", error=str(exc))]
    for service in services:
        isvc = str(service["metadata"]["name"])
        out.append(_with_pods(cluster, "InferenceService", isvc, service, f"{diagnose.SERVICE_LABEL}={isvc}"))
    return out


def _with_pods(cluster: Cluster, kind: str, name: str, body: Any, selector: str) -> views.Child:
    try:
        pods = cluster.pods(selector) if body is not None else []
    except PluginError as exc:
        return views.Child(kind=kind, name=name, body=body, error=f"pods: {exc}")
    return views.Child(kind=kind, name=name, body=body, pods=pods)


def cmd_history(cluster: Cluster, args: argparse.Namespace, console: Console) -> int:
    """``history NAME``."""
    body = cluster.pipeline(args.name)
    rows = views.history_rows(cluster.revisions(args.name), body)
    if args.output != "table":
        return _emit(args.output, rows)
    if not rows:
        print(f"No revisions stored for {args.name} yet.")
        return 0
    return _print(console, views.table(rows))


def _rollout_command(name: str, annotation: str) -> Callable[[Cluster, argparse.Namespace, Console], int]:
    def run(cluster: Cluster, args: argparse.Namespace, console: Console) -> int:
        status = cluster.pipeline(args.name).get("status") or {}
        # The operator reads these only while a canary runs; one left behind would act on the next.
        if not status.get("canaryRevision"):
            raise PluginError(
                f"{args.name} has no rollout in progress (phase {status.get('phase', 'unknown')})"
            )
        cluster.annotate(args.name, {annotation: "true"})
        print(f"planetpipeline.{_group()}/{args.name}: {name} requested (canary {status['canaryRevision']})")
        return 0

    run.__doc__ = f"``{name} NAME``."
    return run


def cmd_rollback(cluster: Cluster, args: argparse.Namespace, console: Console) -> int:
    """``rollback NAME [--to-revision N]``: the operator restores that revision's exact spec."""
    body = cluster.pipeline(args.name)
    rows = views.history_rows(cluster.revisions(args.name), body)
    target = _rollback_target(rows, body, args.to_revision)
    cluster.annotate(args.name, {machine.ROLLBACK_TO: target["hash"]})
    print(
        f"planetpipeline.{_group()}/{args.name}: rollback to revision {target['revision']} "
        f"({target['hash']}) requested"
    )
    return 0


def _rollback_target(rows: list[views.Row], body: Any, wanted: str | None) -> views.Row:
    if not rows:
        raise PluginError(f"{body['metadata']['name']} has no stored revisions")
    if wanted is not None:
        for row in rows:
            if wanted in (str(row["revision"]), row["hash"]):
                return row
        known = ", ".join(str(r["revision"]) for r in rows)
        raise PluginError(f"revision {wanted} not found (stored: {known})")
    current = (body.get("status") or {}).get("currentRevision")
    earlier = [r for r in rows if r["hash"] != current]
    if not earlier:
        raise PluginError(f"{body['metadata']['name']} has no revision before {current}")
    # The newest revision that is not the one the spec asks for now, like `kubectl rollout undo`.
    return max(earlier, key=lambda r: int(r["revision"]))


def _group() -> str:
    from planet_contracts.api import resource

    return resource.GROUP


def _emit(output: str, data: Any) -> int:
    if output == "json":
        print(json.dumps(data, indent=2, default=str))
    else:
        sys.stdout.write(yamlio.dump(data) if isinstance(data, dict) else yamlio.dump({"items": data}))
    return 0


def _print(console: Console, renderable: RenderableType) -> int:
    console.print(renderable)
    return 0


if __name__ == "__main__":
    sys.exit(main())
