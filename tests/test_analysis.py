"""Analysis: channel statistics on known patches, paired deviations, streaming over the
store, features (weights loading, caching) and UMAP."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from scorpion_build.analysis import analyze_build, channel_stats, paired_deviations
from scorpion_build.analysis import features as feat
from scorpion_build.analysis import run as run_mod
from scorpion_build.analysis.data import PatchStoreError, open_patches
from scorpion_build.analysis.embed import umap_embedding
from scorpion_build.analysis.stats import collect_stats, summary_table
from scorpion_build.manifest import BuildDir, order_columns

SCANNERS = ["AT2", "GT450", "P1000"]
# additive colour shift of each scanner relative to the reference, per RGB channel
OFFSETS = {"AT2": (0, 0, 0), "GT450": (10, -5, 0), "P1000": (-8, 4, 12)}
SIZE_PX = 32
FAILED_PATCH = ("s2_r00", "P1000")
WARN_PATCH = ("s1_r01", "P1000")
WARN_MESSAGE = "patch does not match the reference patch (NCC 0.21 < 0.5)"
# every region of s1 carries this: the report shows it once, with a count
REGION_WARNING = "only 3 of 4 regions with >= 50% tissue common to all scans"
SAMPLES = [("s1", 0), ("s1", 1), ("s1", 2), ("s2", 0), ("s2", 1)]


def tissue(seed: int) -> np.ndarray:
    """A textured RGB patch with values in [60, 190], so the offsets never clip."""
    rng = np.random.default_rng(seed)
    return rng.integers(60, 191, (SIZE_PX, SIZE_PX, 3), dtype=np.uint8)


def picture(h: int, w: int) -> np.ndarray:
    """A small non-blank BGR picture (a gradient) standing in for a figure."""
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    return np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8)


def make_build(root: Path, with_benchmark: bool = True) -> Path:
    """A complete tiny build: 2 slides x 3 scanners, 5 samples, one failed slide scan
    (s2/P1000), one failed and one flagged patch, QC overlays and a benchmark folder."""
    build = BuildDir.at(root)
    slides, regs = [], []
    for slide in ("s1", "s2"):
        for s in SCANNERS:
            bad = slide == "s2" and s == "P1000"
            slides.append(
                {
                    "slide_id": slide,
                    "scanner": s,
                    "is_reference": s == "AT2",
                    "path": f"/data/{slide}/{s}.svs",
                    "vendor": "aperio",
                    "width": 4000,
                    "height": 3000,
                    "mpp_x": 0.25,
                    "mpp_y": 0.25,
                    "mpp_source": "override" if (slide, s) == ("s1", "GT450") else "metadata",
                    "status": "failed" if bad else "ok",
                    "message": "truncated file: re-copy s2/P1000.svs" if bad else "",
                }
            )
            if bad:
                regs.append(
                    {
                        "slide_id": slide,
                        "scanner": s,
                        "reference": "AT2",
                        "status": "failed",
                        "message": "slide scan failed, not registered",
                    }
                )
                continue
            qc = f"qc/{slide}_{s}.png"
            (root / "qc").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / qc), picture(40, 60))
            regs.append(
                {
                    "slide_id": slide,
                    "scanner": s,
                    "reference": "AT2",
                    "method": "identity" if s == "AT2" else "orb-affine",
                    "matrix": [1.0, 0, 0, 0, 1.0, 0],
                    "orientation": 0,
                    "matches": 500,
                    "inliers": 400,
                    "inlier_ratio": 0.8,
                    "scale": 1.0,
                    "rotation_deg": 0.0,
                    "ncc": 0.9,
                    "residual_um": 1.5,
                    "qc_image": qc,
                    "status": "warn" if (slide, s) == ("s1", "GT450") else "ok",
                    "message": "residual 1.5 um above 1 um"
                    if (slide, s) == ("s1", "GT450")
                    else "",
                }
            )
    build.write("slides", order_columns(pd.DataFrame(slides), "slides"))
    build.write("registrations", order_columns(pd.DataFrame(regs), "registrations"))
    regions = [
        {
            "slide_id": sl,
            "region_index": r,
            "sample_id": f"{sl}_r{r:02d}",
            "x_um": 100.0 * r,
            "y_um": 50.0,
            "region_um": 8.0,
            "tissue_fraction": 0.9,
            "status": "warn" if sl == "s1" else "ok",
            "message": REGION_WARNING if sl == "s1" else "",
        }
        for sl, r in SAMPLES
    ]
    build.write("regions", order_columns(pd.DataFrame(regions), "regions"))

    group = zarr.open_group(str(build.zarr), mode="w")
    arr = group.create_array(
        "patches",
        shape=(len(SAMPLES), len(SCANNERS), SIZE_PX, SIZE_PX, 3),
        chunks=(1, 1, SIZE_PX, SIZE_PX, 3),
        dtype="uint8",
        fill_value=0,
    )
    group.attrs.update(
        {"scanners": SCANNERS, "reference": "AT2", "mpp": 0.25, "region_um": 8.0, "size": SIZE_PX}
    )
    rows = []
    for n, (sl, r) in enumerate(SAMPLES):
        sample = f"{sl}_r{r:02d}"
        base = tissue(n)
        for k, s in enumerate(SCANNERS):
            key = (sample, s)
            row = {
                "index": n,
                "sample_id": sample,
                "slide_id": sl,
                "region_index": r,
                "scanner": s,
                "scanner_index": k,
                "level": 0,
                "similarity": 1.0 if k == 0 else 0.9,
                "tissue_fraction": 0.9,
                "status": "ok",
                "message": "",
            }
            if key == FAILED_PATCH:
                row.update(
                    status="failed",
                    similarity=np.nan,
                    level=-1,
                    message="truncated file: re-copy s2/P1000.svs",
                )
            else:
                arr[n, k] = (base.astype(int) + OFFSETS[s]).astype(np.uint8)
            if key == WARN_PATCH:
                row.update(status="warn", similarity=0.21, message=WARN_MESSAGE)
            rows.append(row)
    build.write("patches", order_columns(pd.DataFrame(rows), "patches"))

    if with_benchmark:
        bench = root / "benchmark"
        bench.mkdir()
        pairs = [
            {"a": a, "b": b, "dice": 0.9 - 0.01 * i, "ci": [0.85 - 0.01 * i, 0.95 - 0.01 * i]}
            for i, (a, b) in enumerate([("AT2", "GT450"), ("AT2", "P1000"), ("GT450", "P1000")])
        ]
        report = {
            "scanners": SCANNERS,
            "pairwise": pairs,
            "average": 0.89,
            "minimum": 0.88,
            "per_class": {"tumour": {"average": 0.91, "minimum": 0.87}},
            "n_samples": 5,
            "average_ci": [0.86, 0.92],
            "minimum_ci": [0.84, 0.91],
            "failure_rate": 0.2,
            "failure_rate_ci": [0.0, 0.6],
            "failure_threshold": 0.7,
            "confidence": 0.95,
            "n_bootstrap": 1000,
        }
        (bench / "report.json").write_text(json.dumps(report))
        cv2.imwrite(str(bench / "pairwise_heatmap.png"), picture(50, 50))
    return root


# -- channel statistics ------------------------------------------------------------------
def test_channel_stats_of_a_constant_patch():
    patch = np.empty((8, 8, 3), np.uint8)
    patch[:] = (200, 100, 30)
    np.testing.assert_array_equal(channel_stats(patch), [200, 100, 30, 0, 0, 0])


def test_channel_stats_of_a_two_level_patch():
    patch = np.zeros((4, 4, 3), np.uint8)
    patch[:2, :, 0] = 255  # red: half 0, half 255 -> mean 127.5, std 127.5
    patch[:, :, 1] = 10
    patch[0, 0, 2] = 160  # blue: one pixel of 16 at 160 -> mean 10, std sqrt(15)*10 / ... exact
    stats = channel_stats(patch)
    assert stats[0] == pytest.approx(127.5) and stats[3] == pytest.approx(127.5)
    assert stats[1] == 10 and stats[4] == 0
    assert stats[2] == pytest.approx(10.0)
    assert stats[5] == pytest.approx(np.sqrt((150**2 + 15 * 10**2) / 16))


def test_channel_stats_match_numpy_on_random_patches():
    patch = np.random.default_rng(3).integers(0, 256, (37, 23, 3), dtype=np.uint8)
    flat = patch.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(channel_stats(patch)[:3], flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(channel_stats(patch)[3:], flat.std(0), rtol=1e-12)


def test_channel_stats_rejects_non_rgb_uint8():
    with pytest.raises(ValueError, match="uint8"):
        channel_stats(np.zeros((4, 4, 3), np.float32))


# -- paired deviations -------------------------------------------------------------------
def test_paired_deviations_put_the_reference_at_zero():
    values = np.array(
        [[[5.0, 1.0], [7.0, 4.0], [3.0, -1.0]], [[np.nan, np.nan], [1.0, 1.0], [2.0, 2.0]]]
    )
    dev = paired_deviations(values, ref_index=0)
    np.testing.assert_array_equal(dev[0], [[0, 0], [2, 3], [-2, -2]])
    # a sample without its reference patch cannot be paired
    assert np.isnan(dev[1]).all()


def test_collect_stats_streams_the_store_and_skips_failed_patches(tmp_path):
    build = BuildDir.at(make_build(tmp_path / "b", with_benchmark=False))
    store = open_patches(build)
    assert store.sample_ids[3] == "s2_r00" and not store.valid[3, 2] and store.valid.sum() == 14
    stats = collect_stats(store)
    assert stats.shape == (5, 3, 6)
    assert np.isnan(stats[3, 2]).all()
    np.testing.assert_allclose(stats[1, 1], channel_stats(np.asarray(store.array[1, 1])))


def test_paired_table_recovers_the_scanner_offsets(tmp_path):
    build = BuildDir.at(make_build(tmp_path / "b", with_benchmark=False))
    store = open_patches(build)
    stats = collect_stats(store)
    table = summary_table(paired_deviations(stats, store.ref_index), store.scanners).set_index(
        "scanner"
    )
    for s, offset in OFFSETS.items():
        np.testing.assert_allclose(table.loc[s, ["mean_R", "mean_G", "mean_B"]], offset, atol=1e-9)
        # an additive shift leaves the spread unchanged
        np.testing.assert_allclose(table.loc[s, ["std_R", "std_G", "std_B"]], 0, atol=1e-9)
    assert table.loc["AT2", "n"] == 5 and table.loc["P1000", "n"] == 4
    # unpaired, the tissue variation between samples shows up as spread of the means
    assert summary_table(stats, store.scanners).set_index("scanner").loc["AT2", "mean_R_sd"] > 0


def test_without_a_manifest_unwritten_patches_are_not_used(tmp_path):
    build = BuildDir.at(make_build(tmp_path / "b", with_benchmark=False))
    build.manifest("patches").unlink()
    store = open_patches(build)
    # the failed patch was never written, so it holds the store's fill value (zeros)
    assert not store.valid[3, 2] and store.valid.sum() == 14


def test_missing_store_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(PatchStoreError, match=r"patches\.zarr not found.*scorpion-build extract"):
        open_patches(BuildDir.at(tmp_path))


# -- features ----------------------------------------------------------------------------
def test_untrained_resnet_is_seeded_and_ignores_global_rng():
    torch.manual_seed(123)
    a = feat.build_resnet50()
    b = feat.build_resnet50()
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert isinstance(a.fc, torch.nn.Identity)


def test_weights_load_from_a_local_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(7)
    source = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model = feat.build_resnet50(path)
    assert torch.equal(model.layer4[0].conv1.weight, source.layer4[0].conv1.weight)


def test_bad_weights_name_the_file_and_the_fix(tmp_path):
    import torchvision

    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(feat.WeightsError, match=r"notes\.pth.*state_dict"):
        feat.build_resnet50(text)
    wrong = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(feat.WeightsError, match=r"resnet18\.pth: not torchvision ResNet50"):
        feat.build_resnet50(wrong)


def test_features_per_patch_and_distance_to_reference(tmp_path):
    build = BuildDir.at(make_build(tmp_path / "b", with_benchmark=False))
    store = open_patches(build)
    f = feat.extract_features(store, feat.build_resnet50(), input_px=32, batch_size=4, device="cpu")
    assert f.shape == (5, 3, feat.FEATURE_DIM) and f.dtype == np.float32
    assert np.isnan(f[3, 2]).all() and np.isfinite(f[store.valid]).all()
    d = feat.cosine_distance_to_reference(f, store.ref_index)
    np.testing.assert_allclose(d[:, 0], 0, atol=1e-6)
    assert np.isnan(d[3, 2]) and (d[store.valid][d[store.valid] > 1e-6]).size > 0


def test_umap_embeds_usable_patches_only():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(12, 3, 16)).astype(np.float32)
    features[2, 1] = np.nan
    emb = umap_embedding(features)
    assert emb.shape == (12, 3, 2)
    assert np.isnan(emb[2, 1]).all() and np.isfinite(np.delete(emb.reshape(-1, 2), 7, 0)).all()
    np.testing.assert_array_equal(umap_embedding(features), emb)  # seeded: reproducible


def test_analyze_caches_features_and_embedding(tmp_path, monkeypatch):
    root = make_build(tmp_path / "b", with_benchmark=False)
    analyze_build(root, features="resnet50", input_px=32, device="cpu")
    cached = root / "analysis"
    assert (cached / "features.npy").is_file() and (cached / "umap.npy").is_file()

    def refuse(*_a, **_k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(feat, "build_resnet50", refuse)
    monkeypatch.setattr(run_mod, "umap_embedding", refuse)
    monkeypatch.setattr(run_mod, "collect_stats", refuse)
    html = analyze_build(root, features="resnet50", input_px=32, device="cpu").read_text()
    assert "Loaded from the cache" in html
    # an untrained network's distances mean nothing: one line says why they are left out
    assert 'id="feature-distance-left-out"' in html and 'id="feature-distance"' not in html
    # other settings are other inputs: the cache must not answer for them
    with pytest.raises(AssertionError, match="recomputed"):
        analyze_build(root, features="resnet50", input_px=64, device="cpu")
