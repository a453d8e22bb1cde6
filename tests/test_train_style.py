"""Task and style augmentations on batched tensors: shape, range, seeds, content kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage import color

from scorpion_build.train.augment import TaskAugment, gaussian_blur, random_flips
from scorpion_build.train.colorspace import rgb_to, to_rgb
from scorpion_build.train.randstainna import (
    RandStainNA,
    StainStatistics,
    channel_stats,
    fit_stain_statistics,
    reinhard_transfer,
)
from scorpion_build.train.style import (
    FDA,
    ColorJitter,
    build_style_augmentation,
    fda_transfer,
    low_frequency_mask,
)


def tissue_batch(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth, H&E-like float RGB in [0, 1], away from 0 and 1 so transfers do not clip."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.tensor([0.80, 0.55, 0.70]).view(1, 3, 1, 1)
    blobs = torch.nn.functional.interpolate(
        torch.rand(n, 1, 8, 8, generator=gen), size=(size, size), mode="bilinear"
    )
    purple = torch.tensor([-0.35, -0.30, -0.10]).view(1, 3, 1, 1)
    noise = 0.02 * torch.randn(n, 3, size, size, generator=gen)
    return (base + purple * blobs + noise).clamp(0.05, 0.95)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- colour spaces --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "reference"),
    [("lab", color.rgb2lab), ("hsv", color.rgb2hsv), ("hed", color.rgb2hed)],
)
def test_colour_conversions_match_skimage_and_invert(space, reference):
    rgb = np.random.default_rng(0).random((2, 6, 6, 3))
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2)
    mine = rgb_to(space, x).permute(0, 2, 3, 1).numpy()
    if space == "hed":  # skimage clips negative optical densities; we keep them to invert
        mine = np.maximum(mine, 0)
    np.testing.assert_allclose(mine, np.stack([reference(im) for im in rgb]), atol=1e-3)
    np.testing.assert_allclose(to_rgb(space, rgb_to(space, x)).numpy(), x.numpy(), atol=1e-9)


# --- style augmentations: the common contract ---------------------------------------------


def stats_for(x: torch.Tensor, space: str = "lab") -> StainStatistics:
    images = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return fit_stain_statistics(list(images), space)


def all_styles(x: torch.Tensor) -> dict[str, object]:
    return {
        "colorjitter": ColorJitter(),
        "randstainna": RandStainNA(stats_for(x)),
        "fda": FDA(beta=0.05),
    }


@pytest.mark.parametrize("name", ["colorjitter", "randstainna", "fda"])
def test_style_augmentation_shape_range_and_seed(name):
    x = tissue_batch()
    sa = all_styles(x)[name]
    out = sa(x, gen(7))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, sa(x, gen(7)), rtol=0, atol=0)  # same seed, same result
    assert not torch.allclose(out, sa(x, gen(8)))  # another seed, another style
    assert not torch.allclose(out, x)  # it did change the style


@pytest.mark.parametrize("name", ["colorjitter", "randstainna", "fda"])
def test_style_augmentation_keeps_content(name):
    # structure (the pattern of light and dark) survives: high correlation of luminance;
    # FDA moves the coarsest patterns too (by design), its exact content check is the phase
    x = tissue_batch()
    out = all_styles(x)[name](x, gen(1))
    lum_in, lum_out = x.mean(1).flatten(1), out.mean(1).flatten(1)
    for a, b in zip(lum_in, lum_out, strict=True):
        assert np.corrcoef(a.numpy(), b.numpy())[0, 1] > 0.85


def test_build_style_augmentation_names():
    x = tissue_batch()
    assert build_style_augmentation("none") is None
    assert isinstance(build_style_augmentation("fda", fda_beta=0.02), FDA)
    assert isinstance(build_style_augmentation("randstainna", stats=stats_for(x)), RandStainNA)
    with pytest.raises(ValueError, match="statistics"):
        build_style_augmentation("randstainna")
    with pytest.raises(ValueError, match="unknown style"):
        build_style_augmentation("cyclegan")


# --- ColorJitter ------------------------------------------------------------------------------


def test_colorjitter_with_zero_ranges_is_identity():
    x = tissue_batch()
    out = ColorJitter(0, 0, 0, 0)(x, gen(0))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_colorjitter_hue_stays_in_its_small_range():
    x = tissue_batch()
    out = ColorJitter(0, 0, 0, hue=0.05)(x, gen(3))
    h_in, h_out = rgb_to("hsv", x)[:, 0], rgb_to("hsv", out)[:, 0]
    shift = (h_out - h_in + 0.5) % 1.0 - 0.5  # circular difference in turns
    assert shift.abs().max() <= 0.05 + 1e-4
    # one shift per image: every pixel of an image turns by the same angle
    assert (shift.flatten(1).std(dim=1) < 1e-3).all()


def test_colorjitter_rejects_full_wheel_hue():
    with pytest.raises(ValueError, match="hue"):
        ColorJitter(hue=0.8)


# --- RandStainNA ------------------------------------------------------------------------------


def test_fit_stain_statistics_matches_per_image_statistics():
    images = [
        (tissue_batch(1, seed=s)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        for s in range(5)
    ]
    stats = fit_stain_statistics(images, "lab")
    labs = [color.rgb2lab(im) for im in images]
    means = np.array([lab.reshape(-1, 3).mean(0) for lab in labs])
    stds = np.array([lab.reshape(-1, 3).std(0) for lab in labs])
    np.testing.assert_allclose(stats.mean_mean, means.mean(0), atol=1e-2)
    np.testing.assert_allclose(stats.mean_std, means.std(0), atol=1e-2)
    np.testing.assert_allclose(stats.std_mean, stds.mean(0), atol=1e-2)
    np.testing.assert_allclose(stats.std_std, stds.std(0), atol=1e-2)
    assert stats.n_images == 5


def test_reinhard_transfer_hits_target_statistics_exactly():
    x = rgb_to("lab", tissue_batch().double())
    mean = torch.tensor([[60.0, 20.0, -10.0]]).double().expand(4, 3)
    std = torch.tensor([[8.0, 5.0, 4.0]]).double().expand(4, 3)
    got_mean, got_std = channel_stats(reinhard_transfer(x, mean, std))
    torch.testing.assert_close(got_mean, mean)
    torch.testing.assert_close(got_std, std)


@pytest.mark.parametrize("space", ["lab", "hsv", "hed"])
def test_randstainna_output_has_the_sampled_statistics(space):
    x = tissue_batch(n=6).double()
    sa = RandStainNA(stats_for(x.float(), space), spread=0.5)
    mean, std = sa.sample_targets(6, gen(5), x)
    out = sa(x, gen(5))  # same generator state: the same targets
    got_mean, got_std = channel_stats(rgb_to(space, out))
    # equal up to the few pixels clipped back into [0, 1]
    scale = std.abs().mean(0)
    assert ((got_mean - mean).abs() / scale).max() < 0.05
    assert ((got_std - std).abs() / scale).max() < 0.05


def test_stain_statistics_save_load_round_trip_and_bad_file(tmp_path):
    stats = stats_for(tissue_batch())
    path = stats.save(tmp_path / "stats.json")
    assert StainStatistics.load(path) == stats
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"color_space": "lab"}))
    with pytest.raises(ValueError, match="bad.json.*RandStainNA"):
        StainStatistics.load(bad)


# --- FDA -------------------------------------------------------------------------------------


def test_fda_keeps_phase_and_swaps_low_frequency_amplitude():
    x, ref = tissue_batch(2, seed=1).double(), tissue_batch(2, seed=2).double()
    out = fda_transfer(x, ref, beta=0.1, clip=False)
    spec_x, spec_ref, spec_out = (torch.fft.fft2(t) for t in (x, ref, out))
    mask = low_frequency_mask(32, 32, 0.1)
    assert mask.sum() == 7 * 7  # b = floor(0.1 * 32) = 3 bins each side of DC
    torch.testing.assert_close(spec_out.abs()[..., mask], spec_ref.abs()[..., mask])
    torch.testing.assert_close(spec_out.abs()[..., ~mask], spec_x.abs()[..., ~mask])
    significant = spec_x.abs() > 1e-6
    phase_diff = torch.angle(spec_out * spec_x.conj())[significant]
    assert phase_diff.abs().max() < 1e-6


def test_fda_beta_zero_transfers_the_mean_colour_only():
    x, ref = tissue_batch(2, seed=1).double(), tissue_batch(2, seed=2).double()
    out = fda_transfer(x, ref, beta=0.0, clip=False)
    torch.testing.assert_close(out.mean((2, 3)), ref.mean((2, 3)))
    torch.testing.assert_close(
        out - out.mean((2, 3), keepdim=True), x - x.mean((2, 3), keepdim=True)
    )


def test_fda_never_uses_an_image_as_its_own_reference():
    # images of constant, distinct colours: with beta = 0 each output is its reference's colour
    colours = torch.linspace(0.1, 0.9, 5).view(5, 1, 1, 1).expand(5, 3, 8, 8).contiguous()
    for seed in range(10):
        out = FDA(beta=0.0)(colours, gen(seed))
        assert not torch.isclose(out[:, 0, 0, 0], colours[:, 0, 0, 0]).any()


def test_fda_needs_two_images():
    with pytest.raises(ValueError, match="batch size"):
        FDA()(tissue_batch(1), gen(0))


# --- task augmentations ---------------------------------------------------------------------


def test_flips_move_image_and_label_together():
    x = tissue_batch(8)
    label = (x[:, 0] > 0.6).long()
    for seed in range(3):
        x2, label2 = random_flips(x, label, gen(seed))
        torch.testing.assert_close(label2, (x2[:, 0] > 0.6).long())
    flipped = [not torch.equal(a, b) for a, b in zip(x2, x, strict=True)]
    assert any(flipped) and not all(flipped)


def test_gaussian_blur_zero_sigma_is_identity_and_blur_smooths():
    x = tissue_batch(2)
    out = gaussian_blur(x, torch.tensor([0.0, 1.5]), 1.5)
    torch.testing.assert_close(out[0], x[0])
    assert out[1].diff(dim=-1).abs().mean() < 0.5 * x[1].diff(dim=-1).abs().mean()
    torch.testing.assert_close(out[1].mean(), x[1].mean(), atol=5e-3, rtol=0)


def test_task_augment_range_seed_and_label_integrity():
    x = tissue_batch(6)
    label = torch.randint(0, 3, (6, 32, 32), generator=gen(0))
    aug = TaskAugment(blur_p=1.0, noise_p=1.0, noise_std=(0.02, 0.02))
    out, label_out = aug(x, label, gen(4))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert set(label_out.unique().tolist()) <= {0, 1, 2}
    out2, label2 = aug(x, label, gen(4))
    torch.testing.assert_close(out, out2, rtol=0, atol=0)
    torch.testing.assert_close(label_out, label2, rtol=0, atol=0)
    # each label map is one of the four flips of the input's
    for a, b in zip(label, label_out, strict=True):
        assert any(torch.equal(f, b) for f in (a, a.flip(-1), a.flip(-2), a.flip(-1).flip(-2)))


def test_task_augment_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="blur_p"):
        TaskAugment(blur_p=1.5)
