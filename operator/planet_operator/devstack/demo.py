"""``planet demo`` (``make demo``): the product end to end on one machine, with progress as it goes.

Starts the local stack, ``kubectl apply``s the reference pipeline, waits for Ready, sends
structured-prompt requests through the pipeline's endpoint (generate ▶ upscale chain), writes the
raw and final images to ``out/`` and prints what happened.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image
from rich.console import Console
from rich.table import Table

from planet_operator.api import resource
from planet_operator.devstack.stack import LocalStack, StackOptions
from planet_operator.kube import resources
from planet_operator.kube.client import Client, Connection, NotFound

#: Structured prompts: color ▶ atmosphere ▶ moons ▶ sky, as the reference workload writes them.
PROMPTS: tuple[dict[str, str], ...] = (
    {"color": "deep blue", "atmosphere": "frosted cloudy zones", "moons": "no moons",
     "sky": "distant stars dark sky"},
    {"color": "crimson", "atmosphere": "glowing magma cracks", "moons": "two moons",
     "sky": "colorful nebula"},
    {"color": "emerald", "atmosphere": "auroral rings", "moons": "one small moon", "sky": "binary sunrise"},
    {"color": "pale gold", "atmosphere": "swirling storm bands", "moons": "a shattered moon ring",
     "sky": "galactic core glow"},
)  # fmt: skip


@dataclasses.dataclass(kw_only=True)
class DemoOptions:
    """What the demo does."""

    manifest: Path = Path("examples/ethereal-planets.yaml")
    out: Path = Path("out")
    requests: int = 3
    steps: int = 4
    timeout: float = 480.0
    #: Also show a canary rollout, a promotion and a rollback.
    rollout: bool = True
    stack: StackOptions = dataclasses.field(default_factory=StackOptions)


@dataclasses.dataclass(kw_only=True)
class Outcome:
    """One request's result."""

    prompt: dict[str, str]
    seed: int
    seconds: float
    raw: Path | None = None
    raw_size: tuple[int, int] | None = None
    final: Path | None = None
    final_size: tuple[int, int] | None = None
    error: str = ""


async def run(options: DemoOptions, console: Console) -> int:
    """The whole demo; 0 when every request produced images."""
    started = time.monotonic()
    async with LocalStack(options.stack) as stack:
        console.print(f"[bold]local stack up[/]: API server {stack.server.url}, gateway {stack.gateway_url}")
        console.print(f"  kubeconfig: {stack.kubeconfig}  (kubectl --kubeconfig {stack.kubeconfig} get pp)")
        name, namespace = apply(stack, options.manifest, console)
        client = Client(Connection(server=stack.server.url))
        try:
            status = await wait_ready(client, namespace, name, options.timeout, console)
            url = str(status["url"])
            console.print(f"[green]Ready[/] in {time.monotonic() - started:.0f}s: {url}")
            outcomes = await send_requests(client, url, namespace, name, options, console)
            print_summary(outcomes, options, console, elapsed=time.monotonic() - started)
            rolled = (
                await rollout_stage(client, stack.kubeconfig, namespace, name, options, console)
                if options.rollout
                else True
            )
        finally:
            await client.close()
        return 0 if all(not o.error for o in outcomes) and rolled else 1


def apply(stack: LocalStack, manifest: Path, console: Console) -> tuple[str, str]:
    """``kubectl apply`` (the user's path), or the API directly where kubectl is not installed."""
    import yaml

    document = yaml.safe_load(manifest.read_text())
    name = document["metadata"]["name"]
    namespace = document["metadata"].get("namespace", "default")
    kubectl = shutil.which("kubectl")
    if kubectl:
        command = [kubectl, "--kubeconfig", str(stack.kubeconfig), "apply", "-f", str(manifest)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl apply failed: {result.stderr.strip()}")
        console.print(f"$ kubectl apply -f {manifest}\n{result.stdout.strip()}")
    else:
        from kubernetes import client

        configuration = client.Configuration(host=stack.server.url)
        with client.ApiClient(configuration) as api:
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                resource.GROUP, resource.VERSION, namespace, resource.PLURAL, document
            )
        console.print(f"applied {manifest} (kubectl not installed: used the API directly)")
    return name, namespace


async def wait_ready(
    client: Client, namespace: str, name: str, seconds: float, console: Console
) -> dict[str, Any]:
    """Follow the pipeline's phase until Ready, printing each change."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            body = await client.get(resources.PIPELINES, namespace, name)
        except NotFound:
            body = {}
        status = body.get("status") or {}
        phase = status.get("phase")
        if phase != last:
            ready: dict[str, Any] = next(
                (c for c in status.get("conditions", []) if c.get("type") == "Ready"), {}
            )
            console.print(f"  phase {phase or 'Pending'}: {ready.get('message', '')}")
            last = phase
        if phase == "Ready" and status.get("url"):
            return dict(status)
        if phase in ("Failed", "Degraded"):
            raise RuntimeError(f"pipeline {name} is {phase}: {status.get('conditions')}")
        await asyncio.sleep(1.0)
    raise TimeoutError(f"pipeline {name} not Ready after {seconds:.0f}s (last phase {last})")


async def send_requests(
    client: Client, url: str, namespace: str, name: str, options: DemoOptions, console: Console
) -> list[Outcome]:
    """Raw images from the generate service, final ones through the graph; same seed, same picture."""
    options.out.mkdir(parents=True, exist_ok=True)
    generate = await client.get(resources.INFERENCE_SERVICES, namespace, f"{name}-generate")
    generate_url = f"{generate['status']['url']}/v1/models/{name}-generate:predict"
    outcomes = []
    timeout = aiohttp.ClientTimeout(total=options.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for index in range(options.requests):
            prompt = PROMPTS[index % len(PROMPTS)]
            seed = 1000 + index
            instance = {"prompt": prompt, "seed": seed, "steps": options.steps, "lane": "final"}
            body = {"instances": [instance]}
            outcome = Outcome(prompt=prompt, seed=seed, seconds=0.0)
            t0 = time.monotonic()
            try:
                raw = await _post(session, generate_url, body)
                outcome.raw, outcome.raw_size = _save(raw, options.out / f"planet-{index + 1}-raw")
                final = await _post(session, url, body)
                outcome.final, outcome.final_size = _save(final, options.out / f"planet-{index + 1}-final")
            except (aiohttp.ClientError, TimeoutError, RuntimeError, KeyError, ValueError) as exc:
                outcome.error = str(exc)[:200]
            outcome.seconds = time.monotonic() - t0
            state = "[red]failed[/]" if outcome.error else "[green]ok[/]"
            console.print(
                f"  request {index + 1}/{options.requests} {state} in {outcome.seconds:.1f}s: {prompt}"
            )
            outcomes.append(outcome)
    return outcomes


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with session.post(url, json=body) as reply:
        text = await reply.text()
        if reply.status != 200:
            raise RuntimeError(f"{url}: HTTP {reply.status}: {text[:300]}")
        return dict(json.loads(text))


def _save(response: dict[str, Any], stem: Path) -> tuple[Path, tuple[int, int]]:
    prediction = response["predictions"][0]
    data = base64.b64decode(prediction["image"])
    fmt = prediction.get("format", "png")
    path = stem.with_suffix(f".{fmt}")
    path.write_bytes(data)
    with Image.open(io.BytesIO(data)) as image:
        return path, image.size


def print_summary(outcomes: list[Outcome], options: DemoOptions, console: Console, *, elapsed: float) -> None:
    """One row per request."""
    table = Table(title=f"planetgen demo: {len(outcomes)} requests, {elapsed:.0f}s in all")
    for column in ("#", "prompt", "seed", "latency", "raw", "final", "files"):
        table.add_column(column)
    for index, o in enumerate(outcomes, 1):
        prompt = ", ".join(o.prompt.values())
        raw = f"{o.raw_size[0]}x{o.raw_size[1]}" if o.raw_size else "-"
        final = f"{o.final_size[0]}x{o.final_size[1]}" if o.final_size else "-"
        files = " ".join(str(p) for p in (o.raw, o.final) if p) or f"[red]{o.error}[/]"
        table.add_row(str(index), prompt, str(o.seed), f"{o.seconds:.1f}s", raw, final, files)
    console.print(table)
    console.print(f"images in {options.out.resolve()}; logs in {options.stack.state_dir.resolve()}")


async def rollout_stage(
    client: Client, kubeconfig: Path, namespace: str, name: str, options: DemoOptions, console: Console
) -> bool:
    """A new checkpoint as a 50% canary on live traffic, promoted, then rolled back by revision."""
    console.rule("rollout: a new revision as a canary")
    before = (await client.get(resources.PIPELINES, namespace, name))["status"]
    first = str(before["stableRevision"])
    # An indefinite pause at 50%: the demo, not a timer, decides when to promote.
    change = {
        "spec": {
            "version": "v4",
            "generation": {"guidanceScale": 5.0},
            "rollout": {"steps": [{"weight": 50, "pause": {}}], "analysis": {"interval": "1h"}},
        }
    }
    await client.patch(resources.PIPELINES, namespace, name, change)
    status = await _wait_status(client, namespace, name, lambda s: s.get("canaryRevision"), options.timeout)
    canary = str(status["canaryRevision"])
    console.print(f"  canary {canary} takes {status.get('trafficPercent')}% next to stable {first}")
    generate = await client.get(resources.INFERENCE_SERVICES, namespace, f"{name}-generate")
    url = f"{generate['status']['url']}/v1/models/{name}-generate:predict"
    seen = await _revisions_answering(url, canary, options)
    console.print(f"  {sum(seen.values())} draft requests answered by: {seen}")
    await plugin(kubeconfig, console, "promote", name, "-n", namespace)
    await _wait_status(client, namespace, name, lambda s: s.get("stableRevision") == canary and
                       s.get("phase") == "Ready", options.timeout)  # fmt: skip
    console.print(f"  [green]promoted[/]: {canary} is stable")
    console.rule("rollback to the earlier revision")
    await plugin(kubeconfig, console, "rollback", name, "-n", namespace, "--to-revision", first)
    status = await _wait_status(client, namespace, name, lambda s: s.get("stableRevision") == first,
                                options.timeout)  # fmt: skip
    spec = (await client.get(resources.PIPELINES, namespace, name))["spec"]
    console.print(f"  [green]rolled back[/]: {first} serves again; spec.version is {spec.get('version')!r}")
    history = Table(title="status.history")
    for column in ("revision", "version", "result", "reason"):
        history.add_column(column)
    for entry in status.get("history", []):
        history.add_row(
            entry["revision"], str(entry.get("version")), entry["result"], entry.get("reason", "")
        )
    console.print(history)
    return canary in seen and first in seen


async def plugin(kubeconfig: Path, console: Console, *args: str) -> None:
    """``kubectl planet ...`` as a user types it: kubectl finds the plugin on PATH (the venv's bin)."""
    bin_dir = Path(sys.executable).parent
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    # kubectl hands its plugins no flags of its own, so the kubeconfig goes by environment.
    env = {**os.environ, "PATH": path, "KUBECONFIG": str(kubeconfig)}
    kubectl = shutil.which("kubectl", path=path)
    if kubectl and shutil.which("kubectl-planet", path=path):
        command = [kubectl, "planet", *args]
    else:  # no kubectl: the same plugin, called directly
        entry = "from planet_operator.plugin.main import main; raise SystemExit(main())"
        command = [sys.executable, "-c", entry, *args]
    console.print(f"  $ kubectl planet {' '.join(args)}")
    result = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, check=False, env=env
    )
    for line in (result.stdout + result.stderr).strip().splitlines():
        console.print(f"    {line}")
    if result.returncode != 0:
        raise RuntimeError(f"kubectl planet {args[0]} failed with exit code {result.returncode}")


async def _wait_status(
    client: Client, namespace: str, name: str, check: Any, seconds: float
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = (await client.get(resources.PIPELINES, namespace, name)).get("status") or {}
        if check(status):
            return dict(status)
        await asyncio.sleep(1.0)
    raise TimeoutError(f"pipeline {name}: condition not reached in {seconds:.0f}s")


async def _revisions_answering(url: str, canary: str, options: DemoOptions) -> dict[str, int]:
    """Small draft requests until both revisions have answered (the canary may still be loading)."""
    seen: dict[str, int] = {}
    body = {
        "instances": [
            {"prompt": "a small violet planet", "lane": "draft", "steps": 1, "width": 256, "height": 112}
        ]
    }
    deadline = time.monotonic() + options.timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        while time.monotonic() < deadline and (len(seen) < 2 or sum(seen.values()) < 12):
            try:
                answer = await _post(session, url, body)
            except (aiohttp.ClientError, RuntimeError):
                await asyncio.sleep(1.0)
                continue
            revision = str(answer["predictions"][0].get("revision"))
            seen[revision] = seen.get(revision, 0) + 1
    return seen
