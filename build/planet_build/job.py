"""One engine build: key ▶ cache hit or lock ▶ resume ▶ export + parity + engine per component ▶ manifest."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

from planet_build import (
    cache,
    components,
    manifest,
    onnx_export,
    ort_engine,
    parity,
    sources,
    trt_engine,
    trt_version,
)
from planet_build import request as request_module
from planet_build.errors import ComponentFailed, UsageError
from planet_build.progress import Reporter
from planet_build.request import BuildRequest, validate
from planet_contracts.engines import FALLBACK_ENV

ONNX_DIR = "onnx"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Where the engines are and whether this run built them."""

    key: str
    entry_dir: Path
    hit: bool
    manifest: dict[str, Any]


def run(request: BuildRequest, reporter: Reporter) -> Outcome:
    """Build (or find) the engines for ``request``; raises :class:`~planet_build.errors.BuildError`."""
    validate(request)
    request = dataclasses.replace(request, revision=sources.model_revision(request))
    installed_trt = None
    fallback: dict[str, str] | None = None
    if request.backend == "tensorrt":
        try:
            installed_trt = trt_engine.preflight(request.precision, quantized_dir=request.quantized_onnx)
        except UsageError as exc:
            fallback = _fallback(exc)
        else:  # only a machine that can build TensorRT has a GPU product to compare
            warning = trt_engine.gpu_product_warning(request.gpu_product)
            if warning:
                reporter.warn(warning)
    if fallback is not None:
        # The operator's key, so its predictors find this entry; what is in it, the manifest says.
        key, trt_spelling = request.expect_key or request.key(None), None
        reporter.warn(
            f"{fallback['reason']}: {FALLBACK_ENV}={fallback['backend']} builds {fallback['backend']} fp32"
            " engines under this key instead (a development node; the manifest records it)"
        )
        request = dataclasses.replace(request, backend=fallback["backend"], precision="fp32")
    else:
        key, trt_spelling = trt_version.resolve_key(request, installed_trt)
    entry = cache.Entry(request.cache_dir, key)
    reporter.info(
        f"engine key {key} ({request.backend}, {request.precision}, {request.width}x{request.height})"
    )
    found = entry.complete()
    if found is not None:
        reporter.info(f"cache hit: {entry.dir} is complete and verified; nothing to build")
        return Outcome(key, entry.dir, True, found)
    sources.check_inputs(request)
    waiting = f"another builder holds the lock for {key[:12]}; waiting for it"
    with entry.lock(timeout=request.lock_timeout, on_wait=lambda: reporter.info(waiting)):
        found = entry.complete()
        if found is not None:  # the builder we waited for finished this key
            reporter.info(f"cache hit: {entry.dir} was built by another builder")
            return Outcome(key, entry.dir, True, found)
        entry.dir.mkdir(parents=True, exist_ok=True)
        entry.invalidate()
        entry.clean_staging()
        built = _Builder(request, entry, reporter, tensorrt_version=installed_trt).run()
        document = manifest.build(request, key=key, tensorrt_version=trt_spelling, components=built)
        if fallback is not None:
            document["fallback"] = fallback
        cache.write_json_atomic(entry.manifest_path, document)
        _tidy(entry, keep_onnx=request.keep_onnx)
        reporter.info(f"engines ready: {entry.dir}")
        return Outcome(key, entry.dir, False, document)


def _fallback(exc: UsageError) -> dict[str, str]:
    """What to build when TensorRT cannot run here: re-raise unless the node allows a fallback."""
    allowed = os.environ.get(FALLBACK_ENV, "")
    if allowed != "onnxruntime":
        raise exc
    return {"backend": allowed, "requested": "tensorrt", "reason": str(exc).split(";")[0]}


def _tidy(entry: cache.Entry, *, keep_onnx: bool) -> None:
    """Drop what only a resumed build needs, once the manifest is written."""
    with contextlib.suppress(FileNotFoundError):
        (entry.dir / cache.PROGRESS).unlink()
    if not keep_onnx:
        shutil.rmtree(entry.dir / ONNX_DIR, ignore_errors=True)


class _Builder:
    """Builds the components an earlier attempt did not finish, recording each as it is done."""

    def __init__(
        self, request: BuildRequest, entry: cache.Entry, reporter: Reporter, *, tensorrt_version: str | None
    ) -> None:
        self.request = request
        self.entry = entry
        self.reporter = reporter
        self.tensorrt_version = tensorrt_version
        self.done = entry.load_progress()
        self._pipe: Any = None

    def run(self) -> dict[str, dict[str, Any]]:
        names = components.names(self.request)
        finished = [name for name in names if name in self.done]
        if finished:
            self.reporter.info(f"resuming: {', '.join(finished)} already built")
        for name in names:
            if name not in self.done:
                self._component(name)
        return {name: self.done[name] for name in names}

    # -- loading ---------------------------------------------------------------------------------

    def _pipeline(self) -> Any:
        if self._pipe is None:
            with self.reporter.step("load model") as notes:
                self._pipe = sources.load_pipeline(self.request)
                notes.append(self.request.base_uri)
                if self.request.loras:
                    notes.append(f"{len(self.request.loras)} LoRA(s) fused")
        return self._pipe

    def _make(self, name: str) -> components.Component:
        for uri in self.request.upscalers:
            if request_module.upscaler_component(uri) == name:
                path = sources.upscaler_file(self.request, uri)
                return components.upscaler(uri, sources.load_upscaler(path), self.request)
        pipe = self._pipeline()
        if name == "unet":
            return components.unet(pipe, self.request)
        if name == "vae_decoder":
            return components.vae_decoder(pipe, self.request)
        return components.text_encoder(pipe, self.request, second=name == "text_encoder_2")

    # -- one component -----------------------------------------------------------------------------

    def _component(self, name: str) -> None:
        component = self._make(name)
        source = self._source(component)
        if self.request.backend == "onnxruntime":
            record = self._ort(component, source)
        else:
            record = self._trt(component, source)
        record.update(
            {
                "inputs": list(component.input_names),
                "outputs": list(component.output_names),
                **component.extra,
            }
        )
        self.done[name] = record
        self.entry.save_progress(self.done)

    def _source(self, component: components.Component) -> Path:
        """The fp32 ONNX graph (exported now, or by an earlier attempt, or given pre-quantized)."""
        if self.request.quantized_onnx is not None:
            given = self.request.quantized_onnx / f"{component.name}.onnx"
            if given.is_file():
                return given
        step = f"{ONNX_DIR}/{component.name}"
        relative = f"{ONNX_DIR}/{component.name}.onnx"
        target = self.entry.dir / relative
        if step in self.done:
            return target
        target.parent.mkdir(exist_ok=True)
        with self.reporter.step(f"export {component.name}") as notes:
            try:
                files = onnx_export.export(
                    component,
                    self.entry.staging(f"export-{component.name}"),
                    target,
                    opset=self.request.opset,
                )
            except Exception as exc:  # the exporter raises anything from torch internals
                raise ComponentFailed(component.name, f"ONNX export failed: {_line(exc)}") from exc
            notes.append(_size(files))
        self.done[step] = self._files(relative)
        self.entry.save_progress(self.done)
        return target

    def _parity(self, component: components.Component, path: Path, precision: str) -> parity.Parity:
        with self.reporter.step(f"parity {component.name}") as notes:
            result = parity.check_onnx(component, path, precision=precision)
            notes.append(f"max_abs={result.max_abs:.2e} (rtol={result.rtol}, atol={result.atol})")
        if not result.passed:
            raise ComponentFailed(
                component.name,
                f"ONNX Runtime output differs from torch: max abs error {result.max_abs:.3e}"
                f" exceeds rtol={result.rtol}, atol={result.atol}",
            )
        return result

    def _ort(self, component: components.Component, source: Path) -> dict[str, Any]:
        precision = "fp32" if component.force_fp32 else self.request.precision
        relative = f"{component.name}.onnx"
        with self.reporter.step(f"engine {component.name}") as notes:
            try:
                files = ort_engine.build(
                    source,
                    self.entry.dir / relative,
                    self.entry.staging(f"ort-{component.name}"),
                    fp16=precision == "fp16",
                    optimization=self.request.ort_optimization,
                )
            except Exception as exc:  # ONNX / ORT raise their own untyped errors
                raise ComponentFailed(component.name, f"ONNX Runtime engine failed: {_line(exc)}") from exc
            notes.append(
                f"onnxruntime {precision}, optimization={self.request.ort_optimization}, {_size(files)}"
            )
        result = self._parity(component, self.entry.dir / relative, precision)
        return {**self._files(relative), "precision": precision, "parity": result.record()}

    def _trt(self, component: components.Component, source: Path) -> dict[str, Any]:
        quantized = trt_engine.is_quantized(source)
        if quantized:
            checked: dict[str, Any] = {"skipped": "Q/DQ graph: checked on the GPU (engine_parity)"}
        else:
            checked = self._parity(component, source, "fp32").record()
        precision = self.request.precision if quantized else ("fp32" if component.force_fp32 else "fp16")
        if self.request.precision == "fp32":
            precision = "fp32"
        assert self.tensorrt_version is not None
        settings = trt_engine.PlanSettings(
            precision=precision,
            profile=component.profile,
            workspace_gib=self.request.workspace_gib,
            timing_cache=trt_engine.timing_cache_path(self.request.cache_dir, self.tensorrt_version),
        )
        relative = f"{component.name}.plan"
        with self.reporter.step(f"engine {component.name}") as notes:
            trt_engine.build_plan(
                component.name, source, self.entry.dir / relative, self.entry.staging(relative), settings
            )
            notes.append(f"tensorrt {precision}, {_size([self.entry.dir / relative])}")
        record = {
            **self._files(relative),
            "precision": precision,
            "parity": checked,
            "engine_parity": self._engine_parity(component, self.entry.dir / relative, precision),
            "profile": {
                name: {"min": list(low), "opt": list(opt), "max": list(high)}
                for name, (low, opt, high) in component.profile.items()
            },
        }
        return record

    def _engine_parity(self, component: components.Component, plan: Path, precision: str) -> dict[str, Any]:
        """The plan against torch on the GPU at the profile's smallest shapes (enforced for fp32/fp16)."""
        import torch

        sizes = {name: low for name, (low, _opt, _high) in component.profile.items()}
        inputs = components.inputs_for(component, sizes)
        with self.reporter.step(f"engine parity {component.name}") as notes:
            module = component.module.to("cuda")
            try:
                expected = parity.reference(component, [t.to("cuda") for t in inputs])
            finally:
                component.module.to("cpu")
                torch.cuda.empty_cache()
            got = trt_engine.run_plan(
                plan, dict(zip(component.input_names, inputs, strict=True)), component.output_names
            )
            result = parity.compare(expected, got, precision=parity.ENGINE_PRECISION.get(precision, "fp16"))
            notes.append(f"max_abs={result.max_abs:.2e}")
            del module
        enforced = precision in ("fp32", "fp16")
        if enforced and not result.passed:
            raise ComponentFailed(
                component.name, f"TensorRT engine differs from torch: max abs error {result.max_abs:.3e}"
            )
        return {**result.record(), "provider": "TensorRT", "enforced": enforced}

    def _files(self, relative: str) -> dict[str, Any]:
        record = cache.file_record(self.entry.dir, relative)
        data = onnx_export.external_data(self.entry.dir / relative)
        if data is not None:
            record["external_data"] = cache.file_record(self.entry.dir, str(data.relative_to(self.entry.dir)))
        return record


def _size(files: list[Path]) -> str:
    total = sum(path.stat().st_size for path in files if path.exists())
    return f"{total / 1e6:.1f} MB"


def _line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
