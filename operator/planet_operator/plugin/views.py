"""What the plugin prints: rows for tables (and for ``-o json|yaml``), rich tables for people."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from planet_contracts.api import resource, validation
from planet_operator.reconcile import causes, diagnose, observe

Body = Mapping[str, Any]
Row = dict[str, Any]


def age(timestamp: str | None, *, now: datetime.datetime | None = None) -> str:
    """Short age as kubectl prints it: ``42s``, ``7m``, ``3h``, ``12d``."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.UTC)
    seconds = int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())
    # Each unit is used from twice its size, so "90s" rather than "1m".
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def condition(status: Body, kind: str) -> Body:
    """One condition by type, or an empty mapping."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def pipeline_row(body: Body, *, with_namespace: bool = False) -> Row:
    """The printer columns of ``kubectl get pp``, plus the canary when there is one."""
    status = body.get("status") or {}
    meta = body["metadata"]
    row: Row = {"namespace": meta.get("namespace", "")} if with_namespace else {}
    traffic = status.get("trafficPercent")
    row |= {
        "name": meta["name"],
        "phase": status.get("phase", ""),
        "revision": status.get("currentRevision", ""),
        "traffic": f"{traffic}%" if traffic is not None else "",
        "ready": condition(status, "Ready").get("status", ""),
        "age": age(meta.get("creationTimestamp")),
    }
    return row


def rollout_summary(body: Body) -> Row | None:
    """Where the canary stands: step, weight, pause, checks; None without a canary."""
    status = body.get("status") or {}
    state = status.get("rollout")
    if not status.get("canaryRevision") and not state:
        return None
    state = state or {}
    steps = _steps(body)
    step = int(state.get("step") or 0)
    weight = steps[step] if step < len(steps) else status.get("trafficPercent")
    return {
        "stable": status.get("stableRevision"),
        "canary": status.get("canaryRevision"),
        "step": f"{min(step + 1, len(steps))}/{len(steps)}" if steps else str(step),
        "weight": weight,
        "traffic": status.get("trafficPercent"),
        "paused": bool(state.get("paused")),
        "failedChecks": int(state.get("failedChecks") or 0),
        "inconclusiveChecks": int(state.get("inconclusiveChecks") or 0),
        "lastAnalysis": state.get("lastAnalysis"),
        "message": state.get("message", ""),
    }


def _steps(body: Body) -> list[int]:
    """Canary weights of the spec, with the API's defaults applied."""
    try:
        spec = validation.parse_spec(body.get("spec") or {}, name=body["metadata"]["name"])
    except validation.InvalidPipeline:
        return [int(s.get("weight", 0)) for s in (body.get("spec") or {}).get("rollout", {}).get("steps", [])]
    return [s.weight for s in spec.rollout.steps]


def history_rows(revisions: Sequence[Body], pipeline: Body) -> list[Row]:
    """One row per stored revision: number, model hash, version, age, and how it served."""
    status = pipeline.get("status") or {}
    results = {e.get("revision"): e for e in status.get("history") or []}
    rows = []
    for stored in revisions:
        meta = stored["metadata"]
        rev = (meta.get("labels") or {}).get(resource.LABEL_REVISION, "")
        data = stored.get("data") or {}
        serving = [
            role
            for role, key in (
                ("current", "currentRevision"),
                ("stable", "stableRevision"),
                ("canary", "canaryRevision"),
            )
            if rev and status.get(key) == rev
        ]
        entry = results.get(rev, {})
        rows.append(
            {
                "revision": int(stored.get("revision") or 0),
                "hash": rev,
                "version": (data.get("version") if isinstance(data, dict) else None) or "",
                "age": age(meta.get("creationTimestamp")),
                "result": entry.get("result", ""),
                "reason": entry.get("reason", ""),
                "serving": ",".join(serving),
            }
        )
    return rows


def table(rows: Sequence[Row], *, title: str | None = None) -> Table:
    """A kubectl-looking table: upper-case headers, no borders."""
    out = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False)
    columns = list(rows[0]) if rows else []
    for column in columns:
        out.add_column(_header(column), overflow="fold")
    for row in rows:
        out.add_row(*(_cell(row[c]) for c in columns))
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class Child:
    """One child of a pipeline as the plugin read it, with the pods that run it."""

    kind: str
    name: str
    #: None: the child does not exist (yet).
    body: Body | None = None
    pods: Sequence[Body] = ()
    #: Why it could not be read (RBAC, a missing CRD), instead of the body.
    error: str = ""


#: Longest message in the chain: one screen for the whole chain.
CHAIN_MESSAGE = 240
_BAD, _WAIT, _GOOD = "red", "yellow", "green"


def chain(body: Body, children: Sequence[Child]) -> Tree:
    """The pipeline's conditions, then each child and, under it, the pods that keep it from working."""
    status = body.get("status") or {}
    meta = body["metadata"]
    phase = str(status.get("phase", "Unknown"))
    style = _BAD if phase in ("Degraded", "Failed", "RolledBack") else (_GOOD if phase == "Ready" else _WAIT)
    tree = Tree(
        Text.assemble(
            ("PlanetPipeline ", "bold"), f"{meta.get('namespace', '')}/{meta['name']} ", (phase, style)
        )
    )
    ready = condition(status, "Ready")
    if ready:
        tree.add(_condition(ready, bad=ready.get("status") != "True"))
    for kind in ("EnginesReady", "Degraded"):
        item = condition(status, kind)
        bad = bool(item) and (item.get("status") == "True") == (kind == "Degraded")
        # The same causes are in Ready's message already: say them once.
        if bad and item.get("message") != ready.get("message"):
            tree.add(_condition(item, bad=True))
    for child in children:
        tree.children.append(_child(child))
    return tree


def _condition(item: Body, *, bad: bool) -> Text:
    words = causes.clip(str(item.get("message") or ""), CHAIN_MESSAGE, keep="start")
    label = f"{item.get('type')}={item.get('status')} {item.get('reason') or ''}".rstrip()
    return Text.assemble((label, _BAD if bad else _GOOD), f": {words}" if words else "")


def _child(child: Child) -> Tree:
    title = Text.assemble((f"{child.kind} ", "bold"), child.name)
    if child.body is None:
        missing = f"  cannot read: {child.error}" if child.error else "  not created"
        return Tree(Text.assemble(title, (missing, _WAIT)))
    node = Tree(Text.assemble(title, "  ", _child_state(child)))
    if child.error:
        node.add(Text(f"cannot read: {child.error}", style=_WAIT))
    if child.kind == "InferenceService":
        for item in (child.body.get("status") or {}).get("conditions") or []:
            if item.get("type") not in ("Ready", "Stopped") and item.get("status") == "False":
                node.add(_condition(item, bad=True))
        model = (child.body.get("status") or {}).get("modelStatus") or {}
        info = model.get("lastFailureInfo") or {}
        if info and model.get("transitionStatus") in diagnose.MODEL_BLOCKED:
            words = causes.clip(causes.tail(str(info.get("message") or "")), CHAIN_MESSAGE)
            exit_code = f" exit {info['exitCode']}" if info.get("exitCode") else ""
            node.add(
                Text.assemble(
                    (f"model {model.get('transitionStatus')} {info.get('reason', '')}{exit_code}", _BAD),
                    f": {words}",
                )
            )
    healthy = 0
    for pod in child.pods:
        problem = diagnose.pod_problem(pod, now=datetime.datetime.now(datetime.UTC))
        if problem is None:
            healthy += 1
            continue
        pod_phase = str((pod.get("status") or {}).get("phase") or "Pending")
        leaf = node.add(
            Text.assemble(
                ("Pod ", "bold"), f"{problem.pod} ", (pod_phase, _BAD if problem.failing else _WAIT)
            )
        )
        words = causes.clip(problem.words, CHAIN_MESSAGE)
        leaf.add(
            Text.assemble((problem.where, _BAD if problem.failing else _WAIT), f": {words}" if words else "")
        )
    if healthy:
        node.add(Text(f"{healthy} pod{'s' if healthy > 1 else ''} without problems", style=_GOOD))
    return node


def _child_state(child: Child) -> Text:
    body = child.body or {}
    if child.kind == "Job":
        state, why = observe.job_state(body)
        counts = body.get("status") or {}
        detail = (
            f" (active {counts.get('active', 0)}, failed {counts.get('failed', 0)})"
            if state == "running"
            else ""
        )
        words = causes.clip(why, CHAIN_MESSAGE, keep="start")
        return Text.assemble(
            (state, {"failed": _BAD, "complete": _GOOD}.get(state, _WAIT)),
            detail,
            f": {words}" if words else "",
        )
    ready = observe.condition(body, "Ready") or {}
    if observe.is_ready(body):
        return Text("Ready", style=_GOOD)
    words = causes.clip(str(ready.get("message") or ""), CHAIN_MESSAGE, keep="start")
    label = f"Ready={ready.get('status', 'Unknown')} {ready.get('reason') or ''}".rstrip()
    return Text.assemble((label, _WAIT), f": {words}" if words else "")


def status_view(body: Body, children: Sequence[Child] = ()) -> RenderableType:
    """``kubectl planet status``: summary, rollout, conditions, releases, and the chain to the failing pod."""
    status = body.get("status") or {}
    meta = body["metadata"]
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    for label, value in (
        ("Name", f"{meta.get('namespace', '')}/{meta['name']}"),
        ("Phase", status.get("phase", "Unknown")),
        ("Current revision", status.get("currentRevision")),
        ("Stable revision", status.get("stableRevision")),
        ("Canary revision", status.get("canaryRevision")),
        ("URL", status.get("url")),
        ("Observed generation", f"{status.get('observedGeneration')} (generation {meta.get('generation')})"),
    ):
        summary.add_row(label, _cell(value))
    parts: list[RenderableType] = [summary]
    rollout = rollout_summary(body)
    if rollout is not None:
        parts.append(table([rollout], title="Rollout"))
    conditions = [
        {
            "type": c.get("type", ""),
            "status": c.get("status", ""),
            "reason": c.get("reason", ""),
            "age": age(c.get("lastTransitionTime")),
            "message": c.get("message", ""),
        }
        for c in status.get("conditions") or []
    ]
    parts.append(table(conditions, title="Conditions") if conditions else Text("No conditions yet."))
    releases = [
        {
            "revision": e.get("revision", ""),
            "version": e.get("version") or "",
            "result": e.get("result", ""),
            "started": age(e.get("started")),
            "finished": age(e.get("finished")) if e.get("finished") else "",
            "reason": e.get("reason", ""),
        }
        for e in status.get("history") or []
    ]
    if releases:
        parts.append(table(releases, title="Releases"))
    parts.append(Text("Chain", style="italic"))
    parts.append(chain(body, children))
    return Group(*parts)


def _header(column: str) -> str:
    spaced = "".join(f" {c}" if c.isupper() else c for c in column)
    return spaced.upper()


def _cell(value: Any) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
