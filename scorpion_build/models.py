"""Build segmentation models and save/load checkpoints safely (shared by train and benchmark).

A checkpoint is a directory-free pair: ``model.pt`` (a plain state dict, loadable with
``torch.load(weights_only=True)``) and ``model.json`` (the config that rebuilds the
architecture). TorchScript files are accepted for inference of foreign models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scorpion_build.classes import DEFAULT_CLASSES
from scorpion_build.files import write_atomic, write_text_atomic
from scorpion_build.weights import WeightsError, load_state_dict

# Input convention of every checkpoint: float RGB in [0, 1], ImageNet mean/std, NCHW.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STRIDE_PX = 32
"""Encoders downsample by up to 32, so inputs are padded to a multiple of it."""


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Float RGB ``(B, 3, H, W)`` in [0, 1] -> ImageNet-normalised model input."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def padded_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` logits at the input's size for a normalised input of any size.

    Reflect-pads to :data:`STRIDE_PX` (zeros would look like black background), accepts
    torchvision-style ``{"out": logits}`` outputs, and crops back.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % STRIDE_PX, (-width) % STRIDE_PX
    if pad_h or pad_w:
        # reflection needs the pad smaller than the side; replicate covers tiny tiles
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    out = model(x)
    if isinstance(out, dict):
        out = out["out"]
    if out.ndim != 4:
        raise ValueError(f"model returned shape {tuple(out.shape)}; expected (B, C, H, W) logits")
    if out.shape[-2:] != x.shape[-2:]:
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return out[..., :height, :width]


class CheckpointError(WeightsError):
    """A checkpoint that cannot be loaded, with the file named and the fix."""


ARCHITECTURES = ("deeplabv3plus", "unet", "fpn")  # build_model's decoders


def build_model(
    encoder: str = "resnet34",
    num_classes: int = len(DEFAULT_CLASSES),
    arch: str = "deeplabv3plus",
    encoder_weights: str | Path | None = None,
) -> nn.Module:
    """DeepLabV3+ (segmentation-models-pytorch) with no network access.

    ``encoder_weights`` is a local file with an encoder state dict (e.g. torchvision's
    ImageNet ResNet34 ``.pth`` or a ``.safetensors``); it is never downloaded.
    """
    import segmentation_models_pytorch as smp

    archs = {"deeplabv3plus": smp.DeepLabV3Plus, "unet": smp.Unet, "fpn": smp.FPN}
    if arch not in archs:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(archs)}")
    model = archs[arch](encoder_name=encoder, encoder_weights=None, classes=num_classes)
    if encoder_weights is not None:
        state = load_state_dict(encoder_weights, "--encoder-weights")
        state = {k.removeprefix("encoder."): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        # smp's encoders override load_state_dict (dropping fc.*) and return None: call the
        # plain nn.Module method to get the missing/unexpected key report
        missing, unexpected = nn.Module.load_state_dict(model.encoder, state, strict=False)
        if len(missing) > len(state) // 2 or unexpected:
            raise CheckpointError(
                f"{encoder_weights}: does not look like {encoder} encoder weights "
                f"({len(missing)} missing, {len(unexpected)} unexpected keys)"
            )
    return model


def config_path(checkpoint: str | Path) -> Path:
    return Path(checkpoint).with_suffix(".json")


def save_checkpoint(model: nn.Module, config: dict[str, Any], path: str | Path) -> Path:
    """Write ``path`` (state dict) and ``path.with_suffix('.json')`` (model config)."""
    path = write_atomic(path, lambda tmp: torch.save(model.state_dict(), tmp))
    write_text_atomic(config_path(path), json.dumps(config, indent=2, sort_keys=True))
    return path


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a checkpoint from ``train`` (state dict + JSON) or a TorchScript file, in eval mode.

    Returns the model and its config (``classes`` at least).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    cfg_file = config_path(path)
    if cfg_file.is_file():
        config = json.loads(cfg_file.read_text())
        model = build_model(
            encoder=config.get("encoder", "resnet34"),
            num_classes=len(config.get("classes", DEFAULT_CLASSES)),
            arch=config.get("arch", "deeplabv3plus"),
        )
        state = load_state_dict(path, "--model")
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path}: weights do not match the architecture in {cfg_file.name}: {exc}"
            ) from exc
    else:
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise CheckpointError(
                f"{path}: not a TorchScript file and no {cfg_file.name} beside it; pass a "
                "checkpoint written by `scorpion-build train` or a torch.jit.save file"
            ) from exc
        config = {"classes": list(DEFAULT_CLASSES), "arch": "torchscript"}
    config.setdefault("classes", list(DEFAULT_CLASSES))
    return model.to(device).eval(), config


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device; use cpu")
    return torch.device(device)
