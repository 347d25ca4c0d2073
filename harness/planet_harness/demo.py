"""``planet demo`` (``make demo``): the reference pipeline end to end on the real stack.

``planet dev up``'s stack (real control plane, KServe, the operator installed by its chart as a pod),
then what a user does: ``kubectl apply`` the reference pipeline, wait for Ready, send structured
prompts through ``status.url`` by way of ``PLANET_PROXY`` (generate ▶ KServe's router ▶ upscale
chain), write the images to ``out/``, then a canary, a promotion and a rollback with ``kubectl
planet``, and last the quality gate: a canary whose LoRA pushes the planet out of its region,
scored by the verifier under live traffic and rolled back by the rollout analysis
(``planet_quality_score`` in Prometheus under ``minQualityScore``).

This machine has no GPU: the reference manifest asks for TensorRT, so the node's fallback
(``PLANET_ENGINE_FALLBACK=onnxruntime``) has the build Job compile ONNX Runtime engines under the
operator's key and the generate predictor serve them; both say so in their logs and the manifest.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import functools
import io
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from planet_harness import devstack, models
from planet_harness import stack as harness
from planet_harness.cli import say, with_stack
from planet_harness.controlplane import ControlPlane
from planet_harness.traffic import Traffic, rolled_back_on_quality

#: The contact sheet: this many fixed prompts, each attribute cycling through the manifest's values.
SHEET_SIZE = 50
SHEET_COLUMNS = 5
#: The share of the sheet whose colour and moons should follow the prompt (docs/model.md's bar).
SHEET_BAR = 0.8
#: Structured prompts for the final renders: color ▶ atmosphere ▶ moons ▶ sky.
PROMPTS: tuple[dict[str, str], ...] = (
    {"color": "deep blue", "atmosphere": "frosted cloudy zones", "moons": "no moons",
     "sky": "distant stars dark sky"},
    {"color": "crimson", "atmosphere": "glowing magma cracks", "moons": "two moons",
     "sky": "colorful nebula"},
    {"color": "emerald", "atmosphere": "auroral rings", "moons": "one small moon", "sky": "binary sunrise"},
    {"color": "pale gold", "atmosphere": "swirling storm bands", "moons": "a shattered moon ring",
     "sky": "galactic core glow"},
)  # fmt: skip


def sheet_prompts(manifest: dict[str, Any], n: int = SHEET_SIZE) -> list[dict[str, str]]:
    """``n`` fixed, distinct structured prompts over the manifest's attribute values (seeded draw)."""
    attributes = manifest["spec"]["generation"]["prompt"]["attributes"]
    names = [a["name"] for a in attributes]
    every = list(itertools.product(*(a["values"] for a in attributes)))
    return [
        dict(zip(names, combo, strict=True))
        for combo in random.Random(2026).sample(every, min(n, len(every)))
    ]


@dataclasses.dataclass(kw_only=True)
class Options:
    """What the demo does."""

    manifest: Path = Path("examples/ethereal-planets.yaml")
    out: Path = Path("out")
    requests: int = 3
    #: Denoising steps per image; None takes the lane's (the manifest's ``serving.lanes``).
    steps: int | None = 4
    #: Prompts on the contact sheet (0: none); ``-f examples/planet-demo.yaml --sheet 50 --steps 0``
    #: draws the planet preset's (docs/model.md).
    sheet: int = 0
    timeout: float = 900.0
    rollout: bool = True
    #: After the rollout: a canary with the off-centre LoRA, judged by the quality gate (needs rollout).
    gate: bool = True
    state_dir: Path = Path(".planet/demo")


def add_parser(sub: Any) -> None:
    """Register ``demo``."""
    parser = sub.add_parser("demo", help="the real stack, the reference pipeline, planets in out/")
    parser.add_argument("-f", "--filename", type=Path, default=Path("examples/ethereal-planets.yaml"))
    parser.add_argument("--out", type=Path, default=Path("out"), help="where images are written")
    parser.add_argument(
        "--requests", type=int, default=3, help="how many planets go through the upscale chain"
    )
    parser.add_argument(
        "--sheet", type=int, default=0, help=f"prompts on a contact sheet (0: none; {SHEET_SIZE} fixed ones)"
    )
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per image (0: the lane's)")
    parser.add_argument("--state-dir", type=Path, default=Path(".planet/demo"))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for each phase")
    parser.add_argument("--no-rollout", action="store_true", help="skip the canary / promote / rollback")
    parser.add_argument("--no-gate", action="store_true", help="skip the quality gate's bad canary")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when every request made images (and the rollout went as planned)."""
    from planet_operator.cli import errors

    if not args.filename.exists():
        raise errors.UsageError(f"{args.filename}: no such file")
    if args.requests < 1 or args.steps < 0 or args.sheet < 0:
        raise errors.UsageError("--requests must be >= 1, --steps and --sheet >= 0")
    options = Options(
        manifest=args.filename,
        out=args.out,
        requests=args.requests,
        steps=args.steps or None,
        sheet=args.sheet,
        timeout=args.timeout,
        rollout=not args.no_rollout,
        gate=not args.no_gate,
        state_dir=args.state_dir,
    )
    # Prometheus (and KEDA) at the products' own intervals: the rollout analysis, the quality gate
    # included, reads the predictors' metrics from it.
    stack = devstack.Options(state_dir=options.state_dir, autoscaling=harness.Autoscaling())
    return with_stack(stack, lambda dev, _stopping: Demo(dev, options).run(), on_signal=130)


class Demo:
    """The user's steps, against a running dev stack."""

    def __init__(self, dev: devstack.DevStack, options: Options) -> None:
        self.dev = dev
        self.cluster: ControlPlane = dev.cluster
        self.options = options
        #: The manifest as the user wrote it (``kubectl apply`` reads the file itself).
        self.manifest: dict[str, Any] = yaml.safe_load(options.manifest.read_text())
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": dev.stack.proxy}))

    def run(self) -> int:
        """Apply ▶ Ready ▶ requests ▶ rollout; 0 when all went well."""
        started = time.monotonic()
        name, namespace = self.apply()
        status = self.wait(name, namespace, lambda s: s.get("phase") == "Ready" and s.get("url"), "Ready")
        url = str(status["url"])
        say(f"Ready in {time.monotonic() - started:.0f} s at {url}")
        self.contact_sheet(name, namespace)
        made = self.requests(url, name, namespace)
        rolled = self.rollout(name, namespace) if self.options.rollout else True
        gated = self.gate(name, namespace, url) if self.options.rollout and self.options.gate else True
        say(f"images in {self.options.out.resolve()}; logs in {self.cluster.logs}")
        return 0 if made == self.options.requests and rolled and gated else 1

    def kubectl(self, *args: str, input: str | None = None) -> str:
        """The real kubectl, as the user runs it after ``. .planet/env``."""
        return self.cluster.kubectl(*args, input=input).stdout

    def apply(self) -> tuple[str, str]:
        """``kubectl apply`` the manifest as it is."""
        engine = self.manifest["spec"].get("engine", {})
        if engine.get("backend", "tensorrt") == "tensorrt":
            say("no GPU here: the TensorRT build falls back to ONNX Runtime engines (PLANET_ENGINE_FALLBACK)")
        say(f"$ kubectl apply -f {self.options.manifest}")
        say(self.kubectl("apply", "-f", str(self.options.manifest)).strip())
        meta = self.manifest["metadata"]
        return str(meta["name"]), str(meta.get("namespace", "default"))

    def pipeline(self, name: str, namespace: str) -> dict[str, Any]:
        """The pipeline as the API server has it."""
        body: dict[str, Any] = json.loads(self.kubectl("get", "pp", name, "-n", namespace, "-o", "json"))
        return body

    def wait(self, name: str, namespace: str, check: Any, what: str) -> dict[str, Any]:
        """Follow the pipeline's phase until ``check(status)``; print each change."""
        deadline = time.monotonic() + self.options.timeout
        last = None
        while time.monotonic() < deadline:
            status = self.pipeline(name, namespace).get("status") or {}
            ready: dict[str, Any] = next(
                (c for c in status.get("conditions", []) if c.get("type") == "Ready"), {}
            )
            line = f"  phase {status.get('phase') or 'Pending'}: {ready.get('message', '')}"
            if line != last:
                say(line)
                last = line
            if check(status):
                return dict(status)
            if status.get("phase") == "Failed":
                raise RuntimeError(f"pipeline {name} failed: {ready.get('message')}")
            time.sleep(2.0)
        raise TimeoutError(f"pipeline {name}: not {what} within {self.options.timeout:.0f} s ({last})")

    def send(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST through the gateway, as ``curl --proxy $PLANET_PROXY`` does (HTTP errors raise)."""
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        with self.opener.open(request, timeout=self.options.timeout) as reply:
            answer: dict[str, Any] = json.loads(reply.read())
            return answer

    def post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """:meth:`send`, an HTTP error told as a ``RuntimeError`` with the status and the body."""
        try:
            return self.send(url, body)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"{url}: HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}"
            ) from None

    def generate_url(self, name: str, namespace: str) -> str:
        """The generate InferenceService's V1 predict URL (from its status, as KServe wrote it)."""
        generate = json.loads(self.kubectl("get", "isvc", f"{name}-generate", "-n", namespace, "-o", "json"))
        return f"{generate['status']['url']}/v1/models/{name}-generate:predict"

    def instance(self, prompt: dict[str, str], seed: int) -> dict[str, Any]:
        """One V1 instance; steps only when the user asked for them."""
        body: dict[str, Any] = {"prompt": prompt, "seed": seed}
        if self.options.steps is not None:
            body["steps"] = self.options.steps
        return body

    def contact_sheet(self, name: str, namespace: str) -> None:
        """The fixed prompts at the native size, as a contact sheet, and how many follow the prompt.

        "Follow" is the verifier's count: neither the colour nor the moons check failed. The count is
        the model's measure, reported against the 80 % bar; the demo fails on errors, not on it.
        """
        if self.options.sheet == 0:
            return
        from PIL import Image

        prompts = sheet_prompts(self.manifest, self.options.sheet)
        folder = self.options.out / "sheet"
        folder.mkdir(parents=True, exist_ok=True)
        url = self.generate_url(name, namespace)
        batch = int(self.manifest["spec"].get("serving", {}).get("maxBatchSize", 4))
        say(f"contact sheet: {len(prompts)} fixed prompts, {batch} per request, to {url}")
        records: list[dict[str, Any]] = []
        tiles: list[Image.Image] = []
        started = time.monotonic()
        for first in range(0, len(prompts), batch):
            chunk = prompts[first : first + batch]
            body = {"instances": [self.instance(p, 2000 + first + i) for i, p in enumerate(chunk)]}
            answer = self.post(url, body)
            for i, (prompt, prediction) in enumerate(zip(chunk, answer["predictions"], strict=True)):
                index = first + i + 1
                data = base64.b64decode(prediction["image"])
                path = folder / f"{index:02d}.png"
                path.write_bytes(data)
                tiles.append(Image.open(io.BytesIO(data)).convert("RGB"))
                quality = prediction.get("quality") or {}
                failed = list(quality.get("failed", []))
                follows = not {"color", "moons"} & set(failed)
                records.append(
                    {"file": str(path), "prompt": prompt, "seed": 2000 + index - 1, "quality": quality,
                     "follows": follows}
                )  # fmt: skip
            say(f"  {len(records)}/{len(prompts)} in {time.monotonic() - started:.0f} s")
        _sheet(tiles, self.options.out / "contact-sheet.png")
        (self.options.out / "sheet.json").write_text(json.dumps(records, indent=1))
        followed = sum(r["follows"] for r in records)
        scores = [r["quality"]["score"] for r in records if "score" in r["quality"]]
        mean = sum(scores) / len(scores) if scores else float("nan")
        bar = "meets" if followed >= SHEET_BAR * len(records) else "is under"
        say(
            f"  colour and moons follow the prompt in {followed}/{len(records)} (the verifier's count; "
            f"{bar} the {SHEET_BAR:.0%} bar); mean quality score {mean:.3f}; "
            f"{self.options.out / 'contact-sheet.png'}"
        )

    def requests(self, url: str, name: str, namespace: str) -> int:
        """Raw images from the generate service, final ones through the pipeline; count the successes."""
        out = self.options.out
        out.mkdir(parents=True, exist_ok=True)
        generate_url = self.generate_url(name, namespace)
        made = 0
        for index in range(self.options.requests):
            prompt = PROMPTS[index % len(PROMPTS)]
            body = {"instances": [self.instance(prompt, 1000 + index)]}
            t0 = time.monotonic()
            try:
                raw = _save(self.post(generate_url, body), out / f"planet-{index + 1}-raw")
                final = _save(self.post(url, body), out / f"planet-{index + 1}-final")
            except (RuntimeError, KeyError, ValueError, OSError) as exc:
                say(f"  request {index + 1}: failed: {exc}")
                continue
            made += 1
            say(
                f"  request {index + 1}/{self.options.requests} in {time.monotonic() - t0:.1f} s: "
                f"{', '.join(prompt.values())} ▶ {raw} and {final}"
            )
        return made

    def rollout(self, name: str, namespace: str) -> bool:
        """A new checkpoint as a 50% canary, promoted with ``kubectl planet``, then rolled back."""
        say("rollout: a new revision as a paused 50% canary")
        first = str(self.pipeline(name, namespace)["status"]["stableRevision"])
        change = {
            "spec": {
                "version": "v4",
                "generation": {"guidanceScale": 5.0},
                "rollout": {"steps": [{"weight": 50, "pause": {}}], "analysis": {"interval": "1h"}},
            }
        }
        self.kubectl("patch", "pp", name, "-n", namespace, "--type=merge", "-p", json.dumps(change))
        status = self.wait(name, namespace, lambda s: s.get("canaryRevision"), "canary")
        canary = str(status["canaryRevision"])
        say(f"  canary {canary} takes {status.get('trafficPercent')}% next to stable {first}")
        self.plugin("promote", name, "-n", namespace)
        self.wait(name, namespace, lambda s: s.get("stableRevision") == canary and s.get("phase") == "Ready",
                  "promoted")  # fmt: skip
        say(f"  promoted: {canary} is stable")
        self.plugin("rollback", name, "-n", namespace, "--to-revision", first)
        self.wait(name, namespace, lambda s: s.get("stableRevision") == first, "rolled back")
        say(f"  rolled back: {first} serves again")
        return True

    def gate(self, name: str, namespace: str, url: str) -> bool:
        """A canary with the off-centre LoRA under the manifest's own analysis while clients send prompts.

        True when the gate rolls it back on a measured quality score (not "no data").
        """
        rollout = self.manifest["spec"].get("rollout") or {}
        floor = (rollout.get("analysis") or {}).get("minQualityScore")
        if floor is None or self.manifest["spec"]["model"]["base"]["uri"] != models.PLANET:
            # The bad LoRA is trained on the planet preset: on another base it would not load.
            say("quality gate: skipped (it needs the planet preset and rollout.analysis.minQualityScore)")
            return True
        say(f"quality gate: a canary whose LoRA pushes the planet out of its region, judged against "
            f"minQualityScore {floor} every {rollout['analysis'].get('interval', '1m')}")  # fmt: skip
        stable = str(self.pipeline(name, namespace)["status"]["stableRevision"])
        bad = {"name": "offcentre", "uri": models.PLANET_BAD_LORA, "scale": 1.0}
        change = {"spec": {"version": "v5", "model": {"loras": [bad]}, "rollout": rollout}}

        def body(seed: int) -> dict[str, Any]:
            return {"instances": [self.instance(PROMPTS[seed % len(PROMPTS)], 3000 + seed)]}

        traffic = Traffic(functools.partial(self.send, url), body)
        try:
            self.kubectl("patch", "pp", name, "-n", namespace, "--type=merge", "-p", json.dumps(change))
            canary = str(
                self.wait(name, namespace, lambda s: s.get("canaryRevision"), "canary")["canaryRevision"]
            )
            say(
                f"  canary {canary} (offcentre LoRA) next to stable {stable}; clients send the demo's prompts"
            )

            def ended(status: dict[str, Any]) -> bool:
                return any(h["revision"] == canary and h["result"] != "Progressing"
                           for h in status.get("history", []))  # fmt: skip

            status = self.wait(name, namespace, ended, "judged")
        finally:
            traffic.stop(timeout=self.options.timeout)  # a request in flight may take that long
        record = next(h for h in status["history"] if h["revision"] == canary)
        for revision, scores in sorted(traffic.scores.items()):
            say(f"  {revision}: {len(scores)} images, mean quality score {Traffic.mean(scores):.3f}")
        reason = str(record.get("reason", ""))
        say(f"  {record['result']}: {reason}")
        if not rolled_back_on_quality(record):
            say("  the gate did not roll the canary back on a measured score")
            return False
        say(f"  rolled back by the gate: {stable} serves")
        return True

    def plugin(self, *args: str) -> None:
        """``kubectl planet ...``: kubectl finds the plugin on PATH (the venv's bin)."""
        bin_dir = Path(sys.executable).parent
        path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {**os.environ, "PATH": path, "KUBECONFIG": str(self.cluster.kubeconfig)}
        kubectl = shutil.which("kubectl", path=path) or "kubectl"
        say(f"  $ kubectl planet {' '.join(args)}")
        result = subprocess.run(
            [kubectl, "planet", *args], capture_output=True, text=True, timeout=60, check=False, env=env
        )
        for line in (result.stdout + result.stderr).strip().splitlines():
            say(f"    {line}")
        if result.returncode != 0:
            raise RuntimeError(f"kubectl planet {args[0]} failed with exit code {result.returncode}")


def _sheet(tiles: list[Any], path: Path) -> None:
    """Tiles in rows of :data:`SHEET_COLUMNS`, 4 px apart."""
    from PIL import Image

    width, height = tiles[0].size
    rows = -(-len(tiles) // SHEET_COLUMNS)
    sheet = Image.new("RGB", (SHEET_COLUMNS * (width + 4) - 4, rows * (height + 4) - 4), (40, 40, 40))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % SHEET_COLUMNS) * (width + 4), (i // SHEET_COLUMNS) * (height + 4)))
    sheet.save(path)


def _save(response: dict[str, Any], stem: Path) -> str:
    from PIL import Image

    prediction = response["predictions"][0]
    data = base64.b64decode(prediction["image"])
    path = stem.with_suffix(f".{prediction.get('format', 'png')}")
    path.write_bytes(data)
    with Image.open(io.BytesIO(data)) as image:
        return f"{path} ({image.size[0]}x{image.size[1]})"
