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
from torch import nn

from scorpion_build.classes import DEFAULT_CLASSES


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded, with the file named and the fix."""


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
        state = _load_state_dict(Path(encoder_weights))
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


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; pass a local weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or a pickle that is not a plain state dict
        raise CheckpointError(
            f"{path}: cannot be read as a weights-only state dict ({exc.__class__.__name__}: "
            f"{exc}); re-save it with torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def config_path(checkpoint: str | Path) -> Path:
    return Path(checkpoint).with_suffix(".json")


def save_checkpoint(model: nn.Module, config: dict[str, Any], path: str | Path) -> Path:
    """Write ``path`` (state dict) and ``path.with_suffix('.json')`` (model config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    config_path(path).write_text(json.dumps(config, indent=2, sort_keys=True))
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
        state = _load_state_dict(path)
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
