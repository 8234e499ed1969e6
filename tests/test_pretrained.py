"""The packaged model: it loads with no data and no network, scores what it says, reads photos,
is re-created by its recorded command; and the commands fall back to it when ./runs is empty."""

import importlib.util
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from digitlab.checkpoint import read_model_file, save_model
from digitlab.cli import main
from digitlab.config import TrainConfig
from digitlab.data import DATA_CHECKSUM, ENV_VAR, to_float
from digitlab.models import create_model
from digitlab.predict import Predictor, predict_paths
from digitlab.pretrained import PACKAGED_MODEL
from digitlab.runs import RunPaths, default_checkpoint, is_packaged
from digitlab.synth.photos import make_wild_image

# The classifier and its detector take 437 kB; the number reader it carries (466,475 float32
# parameters) about 1.9 MB more.
MAX_PACKAGED_BYTES = 3 * 1024 * 1024
MIN_TEST_ACCURACY = 0.993
WILD_COUNT = 1000  # the same size as tests/test_predict.py's wild set
MAKE_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_pretrained.py"


def become_fresh_user(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new user's machine: an empty working folder, no MNIST anywhere, no network."""
    monkeypatch.chdir(folder)
    monkeypatch.setenv("HOME", str(folder / "home"))
    monkeypatch.setenv(ENV_VAR, str(folder / "no-mnist-here"))

    def no_network(*args, **kwargs):
        raise AssertionError("the packaged model must not need the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)


@pytest.fixture
def fresh_user(tmp_path, monkeypatch) -> Path:
    become_fresh_user(tmp_path, monkeypatch)
    return tmp_path


def write_photo(mnist, folder: Path, index: int, seed: int = 0) -> Path:
    """A real test digit rendered as a photo (digitlab.synth.photos), saved as a JPEG."""
    path = folder / f"photo-{index}.jpg"
    make_wild_image(mnist.test_images[index], np.random.default_rng([seed, index])).save(path)
    return path


def test_packaged_model_is_small_and_says_how_it_was_made():
    assert 0 < PACKAGED_MODEL.stat().st_size <= MAX_PACKAGED_BYTES
    _, metadata = read_model_file(PACKAGED_MODEL)
    assert metadata["complete"] and metadata["data_checksum"] == DATA_CHECKSUM
    config = metadata["config"]
    command = metadata["source"]["command"]
    assert command.startswith("digitlab train ")
    assert f"--recipe {config['recipe']}" in command and f"--epochs {config['epochs']}" in command
    assert config["rotation"] > 0 and config["scale"] > 0 and config["translate"] > 0


def test_packaged_model_predicts_a_photo_with_no_data_and_no_network(mnist, tmp_path, capsys):
    photos = [write_photo(mnist, tmp_path, i) for i in (100, 0, 1)]  # before MNIST goes away
    labels = [int(mnist.test_labels[i]) for i in (100, 0, 1)]
    with pytest.MonkeyPatch.context() as patch:
        become_fresh_user(tmp_path, patch)
        code = main(["predict", *map(str, photos), "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    assert [r["digit"] for r in json.loads(out)] == labels
    assert err.count("\n") == 1 and "using the packaged model" in err


@pytest.mark.slow  # the packaged model on all 10,000 test images
def test_packaged_model_scores_its_recorded_accuracy(fresh_user, mnist_dir, capsys):
    code = main(["evaluate", "--json", "--data-dir", str(mnist_dir)])
    out, err = capsys.readouterr()
    assert code == 0 and "using the packaged model" in err
    _, metadata = read_model_file(PACKAGED_MODEL)
    recorded = metadata["metrics"]["test_accuracy"]
    assert json.loads(out)["accuracy"] == recorded >= MIN_TEST_ACCURACY


@pytest.mark.slow  # 1,000 photos made, cleaned and read
def test_packaged_model_reads_photos_as_well_as_clean_digits(mnist, tmp_path):
    """The wild set of tests/test_predict.py: the same 1,000 test digits, clean and as photos."""
    predictor = Predictor.from_checkpoint(PACKAGED_MODEL, "cpu")
    indices = np.random.default_rng(1).choice(len(mnist.test_images), WILD_COUNT, replace=False)
    labels = [int(mnist.test_labels[i]) for i in indices]
    photos = [write_photo(mnist, tmp_path, i, seed=1) for i in indices]
    results = predict_paths(predictor, photos, batch_size=128)
    wild = np.mean(
        [
            r.prediction is not None and r.prediction.digit == y
            for r, y in zip(results, labels, strict=True)
        ]
    )
    clean = predictor.predict_tensor(to_float(mnist.test_images[torch.from_numpy(indices)]))
    clean_accuracy = np.mean([p.digit == y for p, y in zip(clean, labels, strict=True)])
    print(f"packaged model: clean {clean_accuracy:.2%}, as photos {wild:.2%} ({WILD_COUNT} digits)")
    assert wild >= clean_accuracy - 0.01


def test_default_checkpoint_is_the_newest_run_else_the_packaged_model(tmp_path):
    runs = tmp_path / "runs"
    assert default_checkpoint(runs_root=runs) == PACKAGED_MODEL and is_packaged(PACKAGED_MODEL)
    for age, name in ((100, "old"), (0, "new")):
        path = RunPaths(runs / name).model
        save_model(path, create_model("lenet"), {"model": "lenet", "epoch": 1})
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))
    assert default_checkpoint(runs_root=runs) == RunPaths(runs / "new").model
    assert not is_packaged(default_checkpoint(runs_root=runs))


def test_commands_say_which_model_they_use(mnist, fresh_user, capsys):
    photo = write_photo(mnist, fresh_user, 100)
    assert main(["predict", str(photo)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("digitlab: using the packaged model (") and err.count("\n") == 1
    run = fresh_user / "runs" / "mine"
    save_model(RunPaths(run).model, create_model("lenet"), {"model": "lenet", "epoch": 1})
    assert main(["predict", str(photo)]) == 0
    # The bare checkpoint also gets notes that it has no calibration and no detector.
    first_line, *notes = capsys.readouterr().err.splitlines()
    assert first_line == f"digitlab: using the newest run, {Path('runs/mine')} " + (
        "(--checkpoint RUN_DIR to choose another)"
    )
    assert all(note.startswith("digitlab: note: ") for note in notes)
    assert main(["predict", str(photo), "--checkpoint", str(run)]) == 0
    # A checkpoint that was asked for goes unannounced.
    assert "using" not in capsys.readouterr().err


@pytest.mark.slow
def test_recorded_command_recreates_the_packaged_weights(mnist_dir, tmp_path):
    spec = importlib.util.spec_from_file_location("make_pretrained", MAKE_SCRIPT)
    assert spec is not None and spec.loader is not None
    make_pretrained = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_pretrained)
    _, metadata = read_model_file(PACKAGED_MODEL)
    assert metadata["source"]["command"] == make_pretrained.COMMAND
    remade = make_pretrained.train(tmp_path / "run", mnist_dir)
    assert make_pretrained.same_weights(remade, PACKAGED_MODEL)
    remade_metadata = read_model_file(remade)[1]
    for key in ("model", "metrics", "data_checksum", "source"):
        assert remade_metadata[key] == metadata[key], key
    # Fields added to TrainConfig since the model was made take their defaults; settings that
    # cannot change the weights (RESULT_NEUTRAL: threads, the evaluation batch, ...) may differ.
    remade_config = TrainConfig.from_dict(remade_metadata["config"])
    assert remade_config.result_differences(TrainConfig.from_dict(metadata["config"])) == []


def test_predictor_takes_a_run_folder_a_string_or_nothing(fresh_user):
    assert Predictor.from_checkpoint().metadata["source"]["command"].startswith("digitlab train")
    run = fresh_user / "runs" / "mine"
    save_model(RunPaths(run).model, create_model("lenet"), {"model": "lenet", "epoch": 1})
    assert Predictor.from_checkpoint().model_name == "lenet"  # the newest run comes first
    assert Predictor.from_checkpoint(str(run)).model_name == "lenet"
    assert Predictor.from_checkpoint(str(PACKAGED_MODEL)).model_name == "bncnn"
