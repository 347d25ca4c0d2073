"""Turn a predictor from an InferenceService into a command that runs on this machine.

What a kubelet and KServe's storage initializer would do, done locally: ConfigMap volumes become
files, the model mount becomes the tiny preset (no hub access here), compiled engines become the
torch backend on the CPU, and the ports become free local ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Flags dropped because their inputs do not exist on a laptop (weights, LoRAs, GPU engines).
_DROPPED = (
    "--model-dir", "--engine-dir", "--lora", "--http_port", "--grpc_port", "--backend", "--preset",
    "--upscaler-root",
)  # fmt: skip


def revision_name(service: str, predictor: Mapping[str, Any]) -> str:
    """A Knative-style revision name: the same predictor template gives the same name."""
    template = {k: v for k, v in predictor.items() if k not in ("canaryTrafficPercent", "name")}
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:5]
    return f"{service}-predictor-{digest}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LocalCommand:
    """How to run one predictor revision locally."""

    argv: list[str]
    env: dict[str, str]
    ready_path: str


def local_command(
    *,
    predictor: Mapping[str, Any],
    service: str,
    port: int,
    grpc_port: int,
    config_maps: Mapping[str, Mapping[str, str]],
    workdir: Path,
    preset_dir: Path,
    engine_links: Path | None = None,
) -> LocalCommand:
    """The argv, environment and readiness path for ``predictor``; ConfigMaps go under ``workdir``.

    ``--engine-dir=/mnt/engines/<key>`` becomes the local build of ``<key>`` under ``engine_links``
    when that build finished (served with ONNX Runtime, as the cluster serves its engines), else the
    predictor runs the tiny preset in torch.
    """
    container = predictor["containers"][0]
    mounts = _materialize_mounts(predictor, container, config_maps, workdir)
    command = [sys.executable if part == "python" else part for part in container.get("command", [])]
    args = []
    backend = "torch"
    for arg in container.get("args", []):
        flag, _, value = arg.partition("=")
        if flag == "--engine-dir" and engine_links is not None:
            local_engines = engine_links / Path(value).name
            if (local_engines / "manifest.json").exists():
                args.append(f"--engine-dir={local_engines}")
                backend = "onnxruntime"
            continue
        if flag in _DROPPED:
            continue
        for mount_path, local in mounts.items():
            arg = arg.replace(mount_path, str(local))
        args.append(arg)
    args += [
        f"--http_port={port}",
        f"--grpc_port={grpc_port}",
        f"--backend={backend}",
        "--preset=tiny",
        f"--preset-dir={preset_dir}",
    ]
    env = {item["name"]: str(item.get("value", "")) for item in container.get("env", []) if "name" in item}
    probe = (container.get("readinessProbe") or {}).get("httpGet") or {}
    ready_path = str(probe.get("path") or f"/v2/models/{service}/ready")
    return LocalCommand(argv=[*command, *args], env=env, ready_path=ready_path)


def _materialize_mounts(
    predictor: Mapping[str, Any],
    container: Mapping[str, Any],
    config_maps: Mapping[str, Mapping[str, str]],
    workdir: Path,
) -> dict[str, Path]:
    volumes = {v["name"]: v for v in predictor.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        source = (volume.get("configMap") or {}).get("name")
        if not source:
            continue
        local = workdir / "configmaps" / source
        local.mkdir(parents=True, exist_ok=True)
        for key, value in config_maps.get(source, {}).items():
            (local / key).write_text(value)
        mounts[str(mount["mountPath"])] = local
    return mounts


def config_map_names(predictor: Mapping[str, Any]) -> list[str]:
    """ConfigMaps a predictor mounts."""
    return [
        str(v["configMap"]["name"])
        for v in predictor.get("volumes", [])
        if (v.get("configMap") or {}).get("name")
    ]
