"""Small builders shared by tests: pyramidal TIFFs and a two-scanner build with a known map."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tifffile

from scorpion_build import geometry as geo
from scorpion_build.manifest import BuildDir, order_columns
from scorpion_build.scan import scan


def write_pyramid(path: Path, image: np.ndarray, mpp: float | None, levels: int = 3) -> Path:
    """Tiled pyramidal TIFF, reduced levels as NewSubfileType=1 pages, resolution in cm."""
    with tifffile.TiffWriter(path) as tif:
        img = image
        for k in range(levels):
            kw = {}
            if mpp is not None:
                res = 1e4 / (mpp * 2**k)
                kw = {"resolution": (res, res), "resolutionunit": "CENTIMETER"}
            tif.write(
                img,
                tile=(64, 64),
                photometric="rgb",
                subfiletype=1 if k else 0,
                compression="zlib",
                **kw,
            )
            h, w = img.shape[0] // 2, img.shape[1] // 2
            img = cv2.resize(img[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA)
    return path


def paired_build(
    tmp_path: Path,
    texture: np.ndarray,
    truth: geo.Affine,
    error_px: float = 0.0,
    mpp: float = 0.5,
    fail_scanner: bool = False,
) -> tuple[Path, geo.Affine]:
    """A build with scanner AT2 (texture as is) and B (texture warped: AT2 px -> B px = truth,
    re-stained), with registrations set to ``truth`` plus a translation error."""
    h, w = texture.shape[:2]
    warped = cv2.warpAffine(
        texture, geo.to_opencv(truth), (w, h), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255)
    )
    stained = np.clip(warped.astype(np.float32) * (0.92, 1.0, 1.06) + (6, -4, 0), 0, 255)
    slides = tmp_path / "slides"
    slides.mkdir()
    write_pyramid(slides / "AT2.tif", texture, mpp)
    write_pyramid(slides / "B.tif", stained.astype(np.uint8), mpp)
    csv = tmp_path / "slides.csv"
    pd.DataFrame(
        {
            "slide_id": ["s1", "s1"],
            "scanner": ["AT2", "B"],
            "path": [str(slides / "AT2.tif"), str(slides / "B.tif")],
        }
    ).to_csv(csv, index=False)
    build = BuildDir.at(tmp_path / "build")
    build.write("slides", scan(csv))
    given = geo.compose(geo.translation(error_px, -error_px), truth)
    regs = pd.DataFrame(
        [
            {
                "slide_id": "s1",
                "scanner": "AT2",
                "reference": "AT2",
                "matrix": geo.to_six(geo.identity()),
                "status": "ok",
                "message": "",
            },
            {
                "slide_id": "s1",
                "scanner": "B",
                "reference": "AT2",
                "matrix": geo.to_six(given),
                "status": "failed" if fail_scanner else "ok",
                "message": "too few inliers" if fail_scanner else "",
            },
        ]
    )
    build.write("registrations", order_columns(regs, "registrations"))
    return build.root, given


def kill_during_extract(
    args: list[str], build: Path, after_samples: int = 1, timeout_s: float = 300.0
) -> None:
    """Run ``scorpion-build ARGS`` so that it SIGKILLs itself right after extract has
    checkpointed its ``after_samples``-th sample (``scorpion_build.faults``), and check that
    it died exactly there: no polling, so the kill always lands mid-run."""
    import os
    import signal
    import subprocess
    import sys

    from scorpion_build import faults

    def markers() -> set[Path]:
        return set((build / ".state").glob("extract*/samples/*.json"))

    before = markers()
    env = {**os.environ, faults.ENV: f"extract-marker:{after_samples}"}
    proc = subprocess.run(
        [sys.executable, "-m", "scorpion_build.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert proc.returncode == -signal.SIGKILL, (
        f"expected a kill after sample {after_samples}, got exit {proc.returncode}: "
        f"{proc.stderr[-2000:]}"
    )
    new = markers() - before
    assert len(new) == after_samples, new


def labelled_build(root: Path, extra_args: tuple[str, ...] = ()) -> dict:
    """A synthetic 1-slide, 5-scanner build (GT450 turned 90 degrees, DP200 mirrored, P1000
    turned 180) registered and extracted with ``--annotations`` from synth's true classes."""
    from click.testing import CliRunner

    from scorpion_build.cli.main import main
    from scorpion_build.register import register_build
    from scorpion_build.synth import Scenario, SynthConfig, synthesize

    turns = {"GT450": "rot90", "DP200": "mirror", "P1000": "rot180"}
    config = SynthConfig(
        n_slides=1,
        width_um=1200,
        height_um=1000,
        seed=3,
        scenarios=tuple(Scenario(name, scanner) for scanner, name in turns.items()),
    )
    synthesize(root / "synth", config)
    build = BuildDir.at(root / "build")
    build.write("slides", scan(root / "synth" / "slides.csv"))
    register_build(build.root, workers=1, progress=False)
    args = extract_args(build.root, root / "synth" / "annotations")
    result = CliRunner().invoke(main, [*args, *extra_args])
    return {"synth": root / "synth", "build": build.root, "turns": turns, "result": result}


def extract_args(build: Path, annotations: Path) -> list[str]:
    """``scorpion-build extract`` arguments of :func:`labelled_build` (3 x 300 um, 128 px)."""
    args = ["extract", str(build), "--regions", "3", "--region-um", "300", "--size", "128"]
    return [*args, "--workers", "1", "--annotations", str(annotations)]
