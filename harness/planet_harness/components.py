"""The real components the tests run, built from their pinned Go modules into a cache folder.

Each Go module under ``harness/components/`` pins one project (``go.mod`` + ``go.sum``) and names the
main packages it ships as ``tool`` lines. A component is rebuilt only when its pin changes: the
cache key hashes the module files, the link flags and the Go version. Builds are slow on a small
machine (about 35 minutes cold on 2 cores, KEDA alone about 20), so they print progress while they run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "harness" / "components"
#: Where binaries land; ``PLANET_COMPONENTS_CACHE`` moves it (CI caches it between runs).
CACHE = Path(os.environ.get("PLANET_COMPONENTS_CACHE", ROOT / ".cache" / "components"))

KUBERNETES_VERSION = "v1.34.4"
#: The KEDA KServe v0.20.0 requires (its go.mod); harness/components/keda pins the same.
KEDA_VERSION = "v2.18.0"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Binary:
    """One executable: its name in the cache and the Go main package it is built from."""

    name: str
    package: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Component:
    """One pinned Go module and the binaries built from it."""

    name: str
    binaries: tuple[Binary, ...]
    ldflags: str = ""

    @property
    def module(self) -> Path:
        """The folder of its ``go.mod``."""
        return MODULES / self.name

    def key(self, go_version: str) -> str:
        """Content hash of everything that decides what gets built."""
        digest = hashlib.sha256()
        for file in ("go.mod", "go.sum"):
            digest.update((self.module / file).read_bytes())
        digest.update(
            json.dumps([self.ldflags, go_version, [dataclasses.astuple(b) for b in self.binaries]]).encode()
        )
        return digest.hexdigest()[:16]


def _version_flags(version: str) -> str:
    # Without these the servers report v0.0.0-master, which kubectl and client-go cannot parse.
    major, minor = version.lstrip("v").split(".")[:2]
    return " ".join(
        f"-X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor}"
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    )


COMPONENTS: tuple[Component, ...] = (
    Component(
        name="etcd",
        binaries=(Binary(name="etcd", package="go.etcd.io/etcd/server/v3"),),
    ),
    Component(
        name="kubernetes",
        binaries=(
            Binary(name="kube-apiserver", package="k8s.io/kubernetes/cmd/kube-apiserver"),
            Binary(name="kube-controller-manager", package="k8s.io/kubernetes/cmd/kube-controller-manager"),
            Binary(name="kube-scheduler", package="k8s.io/kubernetes/cmd/kube-scheduler"),
            # The tests' kubectl matches the server's minor version (kubectl supports one minor of skew).
            Binary(name="kubectl", package="k8s.io/kubernetes/cmd/kubectl"),
        ),
        ldflags=_version_flags(KUBERNETES_VERSION),
    ),
    Component(
        name="helm",
        binaries=(Binary(name="helm", package="helm.sh/helm/v3/cmd/helm"),),
        # Helm's `version` reads these; unset, it prints a dev version and charts' kubeVersion checks misfire.
        ldflags="-X helm.sh/helm/v3/internal/version.version=v3.22.0",
    ),
    Component(
        name="kserve",
        binaries=(
            Binary(name="kserve-manager", package="github.com/kserve/kserve/cmd/manager"),
            Binary(name="kserve-router", package="github.com/kserve/kserve/cmd/router"),
        ),
    ),
    Component(
        name="keda",
        binaries=(
            # Named as in KEDA's images (its Dockerfiles' /keda and /keda-adapter).
            Binary(name="keda", package="github.com/kedacore/keda/v2/cmd/operator"),
            Binary(name="keda-adapter", package="github.com/kedacore/keda/v2/cmd/adapter"),
        ),
        # KEDA logs and serves its version from these (its Makefile's GO_LDFLAGS).
        ldflags=f"-X github.com/kedacore/keda/v2/version.Version={KEDA_VERSION} "
        "-X github.com/kedacore/keda/v2/version.GitCommit=559e73850876f0c1d2fe915f9c23904608e5e235",
    ),
    Component(
        name="prometheus",
        # Without the `builtinassets` tag the web UI is not embedded (it needs npm); the API is whole.
        binaries=(Binary(name="prometheus", package="github.com/prometheus/prometheus/cmd/prometheus"),),
        ldflags="-X github.com/prometheus/common/version.Version=3.4.2",
    ),
)


def go_version() -> str:
    """``go version`` output, part of every cache key."""
    return subprocess.run(["go", "version"], check=True, capture_output=True, text=True).stdout.strip()


def bin_dir(component: Component, go: str | None = None) -> Path:
    """Where ``component``'s binaries live for its current pin."""
    return CACHE / component.name / component.key(go or go_version())


def binary(name: str) -> Path:
    """The path of a built binary; raises with the command to run when it is missing."""
    go = go_version()
    for component in COMPONENTS:
        for item in component.binaries:
            if item.name == name:
                path = bin_dir(component, go) / name
                if not path.exists():
                    raise FileNotFoundError(
                        f"{name} is not built for the current pin: run `make components` (or "
                        f"`python -m planet_harness.components`)"
                    )
                return path
    raise KeyError(name)


def module_dir(component: str, module: str) -> Path:
    """The unpacked source of a Go module that ``component`` requires (CRDs, manifests)."""
    found = subprocess.run(
        ["go", "mod", "download", "-json", module],
        cwd=MODULES / component,
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(json.loads(found.stdout)["Dir"])


def build(component: Component, *, say: Callable[[str], None] = print) -> tuple[Path, bool]:
    """Build ``component`` unless its binaries for this pin exist; returns (folder, built now)."""
    go = go_version()
    target = bin_dir(component, go)
    if all((target / b.name).exists() for b in component.binaries):
        return target, False
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    started = time.monotonic()
    for item in component.binaries:
        say(f"[{component.name}] building {item.name} ({item.package})")
        command = ["go", "build", "-v", "-o", str(staging / item.name)]
        if component.ldflags:
            command += ["-ldflags", component.ldflags]
        total = _count_packages(component, item.package)
        _run_with_progress(
            [*command, item.package], cwd=component.module, total=total, label=item.name, say=say
        )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    say(f"[{component.name}] built in {time.monotonic() - started:.0f} s: {target}")
    # Older pins' binaries are dead weight (hundreds of MB each).
    for old in target.parent.iterdir():
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target, True


def _count_packages(component: Component, package: str) -> int:
    """How many packages ``go build -v`` may print for ``package`` (all of them, when nothing is cached)."""
    listed = subprocess.run(
        ["go", "list", "-deps", package], cwd=component.module, capture_output=True, text=True, check=True
    )
    return max(1, len(listed.stdout.split()))


def _run_with_progress(
    command: list[str], *, cwd: Path, total: int, label: str, say: Callable[[str], None]
) -> None:
    """Run ``go build -v``, turning its per-package lines into a progress line every 15 s."""
    process = subprocess.Popen(command, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert process.stderr is not None
    compiled = 0
    tail: list[str] = []
    done = threading.Event()

    def report() -> None:
        while not done.wait(15.0):
            say(f"[{label}] compiled {compiled}/{total} packages")

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    for line in process.stderr:
        compiled += 1
        tail = [*tail[-30:], line.rstrip()]
    done.set()
    if process.wait() != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {cwd}:\n" + "\n".join(tail))


def main(argv: list[str] | None = None) -> int:
    """Build every component that is missing for its pin, then print where each binary is."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m planet_harness.components", description=__doc__)
    parser.add_argument("--list", action="store_true", help="print the binaries' paths, build nothing")
    args = parser.parse_args(argv)
    go = go_version()
    for component in COMPONENTS:
        if args.list:
            folder = bin_dir(component, go)
        else:
            folder, built = build(component, say=lambda text: print(text, flush=True))
            if not built:
                print(f"[{component.name}] up to date: {folder}", flush=True)
        for item in component.binaries:
            print(f"  {item.name}: {folder / item.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
