"""Run every benchmark in turn (``make bench``); each writes its own file under bench/results/.

    .venv/bin/python bench/run_all.py [--only NAME ...]

The suites run one after another, never together: they measure wall time and RSS on a 2-core
machine, and two at once would measure each other.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name ▶ argv after the interpreter; defaults are the sizes the committed results were made with.
SUITES: dict[str, list[str]] = {
    "serving": [str(HERE / "serving.py")],
    "upscaler": [str(HERE / "upscaler.py")],
    "encoding": [str(HERE / "encoding.py")],
    "engines": [str(HERE / "engines.py")],
    "operator_scale": [str(HERE / "operator_scale.py"), "--sizes", "100", "500", "1000", "--steady", "60"],
    "autoscaling_sim": [str(HERE / "autoscaling_sim.py")],
    "verifier": [str(HERE / "verifier.py"), "--scenes", "16", "--rounds", "3"],
    "lora_fusion": [str(HERE / "lora_fusion.py")],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SUITES), help="run just these suites")
    args = parser.parse_args()
    failed: list[str] = []
    for name in args.only or list(SUITES):
        argv = SUITES[name]
        if not Path(argv[0]).exists():
            print(f"== {name}: {argv[0]} missing, skipped", flush=True)
            continue
        print(f"== {name}: {' '.join(argv)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, *argv])
        print(f"== {name}: exit {code} in {time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
