"""Helpers shared by the benchmark scripts: cached synthetic suites and peak-memory runs."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"


def synth_suite(name: str, **config) -> Path:  # noqa: ANN003 - SynthConfig fields
    """Synthesise (once) into benchmarks/.cache/NAME and return the folder."""
    from scorpion_build.synth import SynthConfig, synthesize

    out = CACHE / name
    stamp = out / "config.json"
    key = json.dumps(config, sort_keys=True, default=str)
    if not (stamp.is_file() and stamp.read_text() == key):
        synthesize(out, SynthConfig(**config))
        stamp.write_text(key)
    return out


def scanned_build(src: Path, name: str) -> Path:
    """benchmarks/.cache/NAME: a build holding the scan of suite ``src`` (scanned once)."""
    from scorpion_build.manifest import BuildDir
    from scorpion_build.scan import scan

    build = CACHE / name
    if not (build / "manifests" / "slides.parquet").is_file():
        BuildDir.at(build).write("slides", scan(src / "slides.csv"))
    return build


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux's ``VmHWM`` starts afresh when a program is exec'd; ``ru_maxrss`` (the fallback
    elsewhere) does not: a child started by a large parent reports the parent's size.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_isolated(module: str, *args: str) -> dict:
    """Run ``python -m MODULE ARGS`` in a fresh process (so its peak RSS is its own) and
    return the JSON it prints on its last line."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
