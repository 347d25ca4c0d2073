"""The local KServe runtime: InferenceServices ▶ local processes, KServe-shaped status, traffic splits.

Traffic follows KServe's rules. Knative mode: the predictor is the latest revision; with
``canaryTrafficPercent`` it gets that share and ``latestRolledoutRevision`` the rest; without it the
latest takes everything once ready (until then the rolled-out one keeps serving). Standard mode
(KServe 0.20+): ``spec.predictor`` is the stable revision and each ``spec.canary[]`` entry takes its
``trafficPercent``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from planet_operator.devstack import materialize
from planet_operator.devstack.jobs import engine_links
from planet_operator.devstack.processes import Process, free_port, stop_all
from planet_operator.kube import resources
from planet_operator.kube.client import Client, NotFound

log = logging.getLogger("planet.devstack")
Body = Mapping[str, Any]


@dataclasses.dataclass(kw_only=True)
class Service:
    """What the runtime knows about one InferenceService."""

    namespace: str
    name: str
    revisions: dict[str, Process] = dataclasses.field(default_factory=dict)
    rolled_out: str | None = None
    previous: str | None = None
    latest: str | None = None
    #: (revision, percent) pairs; percents add up to 100 when anything serves.
    traffic: list[tuple[str, int]] = dataclasses.field(default_factory=list)

    def serving(self) -> list[tuple[Process, int]]:
        """Ready revisions with a share of traffic."""
        return [
            (self.revisions[r], p)
            for r, p in self.traffic
            if p > 0 and r in self.revisions and self.revisions[r].ready
        ]


class LocalKServe:
    """Watches (by polling) InferenceServices and InferenceGraphs and makes them real, locally."""

    def __init__(self, client: Client, *, workdir: Path, preset_dir: Path, gateway: str) -> None:
        self.client = client
        self.workdir = workdir
        self.preset_dir = preset_dir
        self.gateway = gateway.rstrip("/")
        self.services: dict[tuple[str, str], Service] = {}
        self.graphs: dict[tuple[str, str], Body] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Stop every predictor process."""
        await stop_all([p for s in self.services.values() for p in s.revisions.values()])
        if self._session is not None:
            await self._session.close()

    async def sync(self) -> None:
        """One pass: processes follow specs, status follows processes."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        listed = await self.client.list_objects(resources.INFERENCE_SERVICES, None)
        seen = set()
        for body in listed.get("items", []):
            key = (body["metadata"]["namespace"], body["metadata"]["name"])
            seen.add(key)
            service = self.services.setdefault(key, Service(namespace=key[0], name=key[1]))
            await self._sync_service(service, body)
        for key in [k for k in self.services if k not in seen]:
            await stop_all(list(self.services.pop(key).revisions.values()))
        graphs = await self.client.list_objects(resources.INFERENCE_GRAPHS, None)
        self.graphs = {
            (g["metadata"]["namespace"], g["metadata"]["name"]): g for g in graphs.get("items", [])
        }
        for graph in self.graphs.values():
            await self._write_status(resources.INFERENCE_GRAPHS, graph, self._graph_status(graph))

    async def _sync_service(self, service: Service, body: Body) -> None:
        spec = body.get("spec") or {}
        mode = (body["metadata"].get("annotations") or {}).get("serving.kserve.io/deploymentMode", "Standard")
        wanted = await self._wanted_revisions(service, spec)
        for name, predictor in wanted.items():
            if name not in service.revisions:
                service.revisions[name] = await self._process(service, name, predictor)
        assert self._session is not None
        for process in service.revisions.values():
            await process.supervise(self._session)
        if mode == "Knative":
            self._knative_traffic(service, spec, wanted)
        else:
            self._standard_traffic(service, spec, wanted)
        keep = {r for r, _ in service.traffic} | {service.latest or ""}
        for name in [r for r in service.revisions if r not in keep]:
            await stop_all([service.revisions.pop(name)])
        await self._write_status(resources.INFERENCE_SERVICES, body, self._service_status(service, body))

    async def _wanted_revisions(self, service: Service, spec: Body) -> dict[str, Body]:
        predictors = [spec["predictor"]] + [entry["predictor"] for entry in spec.get("canary") or []]
        return {materialize.revision_name(service.name, p): p for p in predictors}

    def _knative_traffic(self, service: Service, spec: Body, wanted: Mapping[str, Body]) -> None:
        latest = next(iter(wanted))
        if latest != service.latest:
            service.latest = latest
        percent = spec["predictor"].get("canaryTrafficPercent")
        ready = service.revisions[latest].ready
        if percent is None:
            if ready and service.rolled_out != latest:
                service.previous, service.rolled_out = service.rolled_out, latest
            service.traffic = [(service.rolled_out, 100)] if service.rolled_out else []
        elif service.rolled_out and service.rolled_out != latest:
            service.traffic = [(latest, int(percent)), (service.rolled_out, 100 - int(percent))]
        else:
            service.rolled_out = service.rolled_out or (latest if ready else None)
            service.traffic = [(latest, 100)]

    def _standard_traffic(self, service: Service, spec: Body, wanted: Mapping[str, Body]) -> None:
        names = list(wanted)
        stable, canaries = names[0], names[1:]
        shares = [int(entry.get("trafficPercent", 0)) for entry in spec.get("canary") or []]
        if service.rolled_out != stable and service.revisions[stable].ready:
            service.previous, service.rolled_out = service.rolled_out, stable
        service.latest = canaries[-1] if canaries else stable
        service.traffic = [(stable, 100 - sum(shares)), *zip(canaries, shares, strict=True)]

    async def _process(self, service: Service, name: str, predictor: Body) -> Process:
        config_maps = {}
        for cm in materialize.config_map_names(predictor):
            try:
                config_maps[cm] = (await self.client.get(resources.CONFIG_MAPS, service.namespace, cm)).get(
                    "data", {}
                )
            except NotFound:
                log.warning("%s: ConfigMap %s not found yet", name, cm)
        port = free_port()
        local = materialize.local_command(
            predictor=predictor,
            service=service.name,
            port=port,
            grpc_port=free_port(),
            config_maps=config_maps,
            workdir=self.workdir / service.namespace / name,
            preset_dir=self.preset_dir,
            engine_links=engine_links(self.workdir),
        )
        log.info("starting %s on 127.0.0.1:%d: %s", name, port, " ".join(local.argv[2:]))
        return Process(
            name=name,
            command=local.argv,
            env=local.env,
            port=port,
            ready_path=local.ready_path,
            log_path=self.workdir / "logs" / f"{service.namespace}-{name}.log",
        )

    def service_url(self, namespace: str, name: str) -> str:
        """The URL clients (and InferenceGraph steps) call."""
        return f"{self.gateway}/serving/{namespace}/{name}"

    def _service_status(self, service: Service, body: Body) -> dict[str, Any]:
        latest = service.revisions.get(service.latest or "")
        serving = service.serving()
        ready = bool(serving) and latest is not None and latest.ready
        message = ""
        if latest is not None and not latest.ready:
            if latest.restarts:
                exited = f"predictor exited with code {latest.last_exit} ({latest.restarts} restarts)"
                message = f"{exited}: {latest.tail(1)}"
            else:
                message = "predictor is loading"
        conditions = [
            _condition(
                "PredictorReady",
                ready,
                "" if ready else ("ProcessExited" if latest and latest.restarts else "Loading"),
                message,
            ),
            _condition("IngressReady", bool(serving), "" if serving else "NoReadyRevision", ""),
            _condition("Ready", ready, "" if ready else "PredictorNotReady", message),
        ]
        base = self.service_url(service.namespace, service.name)
        ready_names = [n for n, p in service.revisions.items() if p.ready]
        traffic = [
            {
                "revisionName": name,
                "percent": percent,
                "latestRevision": name == service.latest,
                "tag": "latest" if name == service.latest else "prev",
                "url": f"{base}/_rev/{name}",
            }
            for name, percent in service.traffic
        ]
        predictor: dict[str, Any] = {"traffic": traffic, "url": base}
        for key, value in (
            ("latestCreatedRevision", service.latest),
            ("latestReadyRevision", ready_names[-1] if ready_names else None),
            ("latestRolledoutRevision", service.rolled_out),
            ("previousRolledoutRevision", service.previous),
        ):
            if value:
                predictor[key] = value
        return {
            "url": base,
            "address": {"url": base},
            "conditions": conditions,
            "components": {"predictor": predictor},
            "observedGeneration": body["metadata"].get("generation", 1),
        }

    def _graph_status(self, graph: Body) -> dict[str, Any]:
        namespace = graph["metadata"]["namespace"]
        steps = graph["spec"]["nodes"]["root"].get("steps", [])
        missing = [
            s.get("serviceName", "")
            for s in steps
            if not (svc := self.services.get((namespace, s.get("serviceName", "")))) or not svc.serving()
        ]
        ready = not missing
        message = "" if ready else "waiting for " + ", ".join(missing)
        return {
            "url": f"{self.gateway}/graphs/{namespace}/{graph['metadata']['name']}",
            "conditions": [_condition("Ready", ready, "" if ready else "ServicesNotReady", message)],
            "observedGeneration": graph["metadata"].get("generation", 1),
        }

    async def _write_status(self, resource: Any, body: Body, status: dict[str, Any]) -> None:
        current = dict(body.get("status") or {})
        if _same(current, status):
            return
        meta = body["metadata"]
        with contextlib.suppress(NotFound):  # deleted meanwhile
            await self.client.patch(
                resource, meta["namespace"], meta["name"], {"status": status}, subresource="status"
            )


def _condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "status": "True" if ok else "False"}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message[:500]
    return out


def _same(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Equal, ignoring transition times the API server or others may add."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "lastTransitionTime"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return bool(strip(dict(current)) == strip(dict(wanted)))
