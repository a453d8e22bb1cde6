"""Reading network weights from a local file: the one loader behind ``train
--encoder-weights``, ``analyze --weights`` and the checkpoints ``benchmark`` loads.

Nothing is downloaded and nothing is unpickled beyond tensors, so a weights file from
elsewhere cannot run code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

# keys a checkpoint may nest its state dict under (Lightning, timm and many repos' scripts)
_WRAPPERS = ("state_dict", "model")


class WeightsError(ValueError):
    """A weights file that cannot be read as a state dict; the message names it and the fix."""


def load_state_dict(path: str | os.PathLike, option: str = "--weights") -> dict[str, torch.Tensor]:
    """Tensors from a local weights file, loaded without unpickling arbitrary objects.

    Accepts ``.safetensors`` files and ``torch.save`` files holding a state dict, possibly
    nested under ``"state_dict"`` or ``"model"`` and possibly with the ``"module."`` prefix
    that ``DataParallel`` adds (removed here).

    Parameters
    ----------
    path : str or PathLike
        The file.
    option : str
        The command-line option that named it, for the "pass ..." fix in messages.

    Raises
    ------
    WeightsError
        The file is missing, unreadable, unsafe to unpickle, or not a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found; pass {option} a local .pth file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad or unsafe pickles
        raise WeightsError(
            f"{path}: cannot load as weights ({type(exc).__name__}: {str(exc)[:200]}); save "
            "a plain state dict with torch.save(model.state_dict(), path) or use safetensors"
        ) from exc
    if isinstance(obj, dict):
        for wrapper in _WRAPPERS:
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"{path}: expected a state dict of tensors, got {type(obj).__name__}; save it with "
            "torch.save(model.state_dict(), path)"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}
