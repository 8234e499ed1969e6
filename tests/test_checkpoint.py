"""Checkpoints: round trip, refusing damaged or foreign files, atomic writes, finding runs."""

import os
import time

import pytest
import torch

from digitlab.checkpoint import atomic_path, load_model, read_model_file, save_model
from digitlab.errors import CheckpointError
from digitlab.models import create_model
from digitlab.runs import RunPaths, latest_run, resolve_checkpoint

METADATA = {"model": "lenet", "epoch": 1}


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    model = create_model("lenet")
    path = tmp_path / "model.safetensors"
    save_model(path, model, METADATA | {"note": "ü"})
    loaded, metadata = load_model(path)
    assert metadata == METADATA | {"note": "ü"}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert not loaded.training


def test_written_files_are_readable_by_others(tmp_path):
    # safetensors writes a new file of its own, private unless atomic_path opens it up.
    save_model(tmp_path / "model.safetensors", create_model("lenet"), METADATA)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"\xff" * 8 + data[8:],  # header length garbage
        lambda data: b"not a checkpoint at all",
    ],
)
def test_damaged_checkpoint_is_refused(tmp_path, damage):
    path = tmp_path / "model.safetensors"
    save_model(path, create_model("lenet"), METADATA)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match="not a valid digitlab checkpoint"):
        load_model(path)


def test_checkpoint_of_a_different_shape_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    model = create_model("lenet")
    model.fc3 = torch.nn.Linear(84, 7)
    save_model(path, model, METADATA)
    with pytest.raises(CheckpointError, match="does not fit model 'lenet'"):
        load_model(path)


def test_checkpoint_without_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError):
        read_model_file(path)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "file.bin"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["file.bin"]


def test_resolve_checkpoint_and_latest_run(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(CheckpointError, match="digitlab train"):
        latest_run(runs)
    for age, name in ((100, "old"), (0, "new")):
        path = RunPaths(runs / name).model
        save_model(path, create_model("lenet"), METADATA)
        os.utime(path, (time.time() - age, time.time() - age))
    assert latest_run(runs) == runs / "new"
    assert resolve_checkpoint(None, runs) == runs / "new" / "model.safetensors"
    assert resolve_checkpoint(runs / "old", runs) == runs / "old" / "model.safetensors"
    with pytest.raises(CheckpointError, match="not a run folder"):
        resolve_checkpoint(tmp_path, runs)
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nope", runs)
