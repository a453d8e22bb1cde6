"""One weights loader: `train --encoder-weights` and `analyze --weights` accept the same files."""

from __future__ import annotations

import pytest
import torch
import torchvision

from scorpion_build.analysis.features import build_resnet50
from scorpion_build.models import build_model
from scorpion_build.weights import WeightsError, load_state_dict


def _wrapped(state: dict) -> dict:
    # how a DataParallel training script saves: nested, every key prefixed "module."
    return {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}


def test_a_wrapped_data_parallel_checkpoint_loads_as_encoder_weights(tmp_path):
    torch.manual_seed(5)
    source = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18-dp.pth"
    torch.save(_wrapped(source), path)
    model = build_model(encoder="resnet18", num_classes=3, encoder_weights=path)
    torch.testing.assert_close(
        model.encoder.layer4[0].conv1.weight, source["layer4.0.conv1.weight"]
    )


def test_safetensors_load_for_both_options(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(6)
    source = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    features = build_resnet50(path)
    assert torch.equal(features.layer4[0].conv1.weight, source["layer4.0.conv1.weight"])
    encoder = build_model(encoder="resnet50", num_classes=3, encoder_weights=path)
    assert torch.equal(encoder.encoder.layer4[0].conv1.weight, source["layer4.0.conv1.weight"])


@pytest.mark.parametrize("option", ["--weights", "--encoder-weights"])
def test_bad_files_name_the_file_the_option_and_the_fix(tmp_path, option):
    with pytest.raises(WeightsError, match=rf"missing\.pth: weights file not found; pass {option}"):
        load_state_dict(tmp_path / "missing.pth", option)
    notes = tmp_path / "notes.pth"
    torch.save({"lr": 0.1, "note": "not weights"}, notes)
    with pytest.raises(WeightsError, match=r"notes\.pth: expected a state dict of tensors"):
        load_state_dict(notes, option)


def test_encoder_weights_refuse_a_pickle_that_runs_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("unpickled",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, path)
    with pytest.raises(WeightsError, match=r"evil\.pth: cannot load as weights"):
        build_model(encoder="resnet18", num_classes=3, encoder_weights=path)
