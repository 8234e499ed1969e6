"""`load_bundle`: one loader for every kind of checkpoint; default checkpoints per task; the
runtime path importing no training or generating code."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from digitlab.bundle import READER_PREFIX, load_bundle
from digitlab.calibrate import TemperatureScaled
from digitlab.checkpoint import METADATA_KEY, read_checkpoint, tensors_under
from digitlab.errors import CheckpointError, ConfigError
from digitlab.predict import Predictor
from digitlab.pretrained import PACKAGED_MODEL
from digitlab.read import NumberReader
from digitlab.reader import CRNN
from digitlab.reject import Rejector
from digitlab.runs import default_checkpoint, task_of_run

# Modules that train models or generate data: none of them may load on the runtime path.
TRAINING = ("digitlab.synth", "digitlab.train", "digitlab.training", "digitlab.augment",
            "digitlab.ensemble", "digitlab.distributed", "digitlab.config")  # fmt: skip


def test_the_packaged_model_bundles_a_classifier_a_detector_and_a_reader():
    bundle = load_bundle(PACKAGED_MODEL, device="cpu")
    assert bundle.path == PACKAGED_MODEL and bundle.device == torch.device("cpu")
    assert isinstance(bundle.classifier, TemperatureScaled) and not bundle.classifier.training
    assert isinstance(bundle.rejector, Rejector) and bundle.rejection["threshold"] is not None
    assert isinstance(bundle.reader, NumberReader) and isinstance(bundle.reader.model, CRNN)
    assert bundle.reader.temperature == bundle.metadata["reader"]["temperature"]
    tensors, _ = read_checkpoint(PACKAGED_MODEL)
    carried = tensors_under(tensors, READER_PREFIX)
    loaded = bundle.reader.model.state_dict()
    assert carried.keys() == loaded.keys()
    assert all(torch.equal(carried[k], loaded[k]) for k in carried)
    predictor = Predictor.from_bundle(bundle)
    assert predictor.reject_threshold == bundle.rejection["threshold"]
    assert NumberReader.from_bundle(bundle) is bundle.reader


def test_a_classifier_run_bundles_its_classifier_alone(untrained_run):
    bundle = load_bundle(untrained_run, device="cpu")
    assert bundle.path == untrained_run / "model.safetensors"
    assert bundle.classifier is not None and not isinstance(bundle.classifier, TemperatureScaled)
    assert bundle.rejector is None and bundle.rejection == {} and bundle.reader is None
    with pytest.raises(CheckpointError, match="carries no number reader"):
        NumberReader.from_bundle(bundle)
    assert Predictor.from_bundle(bundle).reject_threshold is None


def test_a_reader_run_bundles_its_own_reader(reader_run):
    bundle = load_bundle(reader_run, device="cpu", task="numbers")
    assert bundle.classifier is None and bundle.rejector is None and bundle.rejection == {}
    assert isinstance(bundle.reader, NumberReader) and bundle.reader.model_name == "crnn"
    assert bundle.reader.threshold is None and bundle.reader.temperature == 1.0
    with pytest.raises(CheckpointError, match="is a number reader"):
        Predictor.from_bundle(bundle)
    packaged = load_bundle(PACKAGED_MODEL, device="cpu").reader
    assert packaged is not None
    line = torch.rand(1, 1, 32, 96)
    with torch.no_grad():  # the same weights, whether carried or a run's own
        assert torch.equal(bundle.reader.model(line), packaged.model(line))


def test_the_onnx_runtime_bundles_an_onnx_classifier_and_a_torch_reader():
    pytest.importorskip("onnxruntime")
    from digitlab.export import OnnxModel

    bundle = load_bundle(PACKAGED_MODEL, runtime="onnx")
    assert isinstance(bundle.classifier, OnnxModel) and bundle.device == torch.device("cpu")
    assert bundle.reader is not None and isinstance(bundle.reader.model, CRNN)
    torch_bundle = load_bundle(PACKAGED_MODEL, device="cpu")
    assert torch_bundle.classifier is not None
    pixels = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (bundle.classifier(pixels) - torch_bundle.classifier(pixels)).abs().max()
    assert difference < 1e-4
    with pytest.raises(ConfigError, match="unknown runtime"):
        load_bundle(PACKAGED_MODEL, runtime="tpu")


def copy_with(tmp_path: Path, change) -> Path:
    """The packaged model with `change(tensors, metadata)` applied, as a new file."""
    tensors, metadata = read_checkpoint(PACKAGED_MODEL)
    change(tensors, metadata)
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(metadata)})
    return path


@pytest.mark.parametrize("keep_bytes", [-1, 1000, 0], ids=["last-byte", "header", "empty"])
def test_a_damaged_file_is_one_clear_error(tmp_path, keep_bytes):
    damaged = tmp_path / "model.safetensors"
    damaged.write_bytes(PACKAGED_MODEL.read_bytes()[:keep_bytes])
    with pytest.raises(CheckpointError, match="not a valid digitlab checkpoint") as error:
        load_bundle(damaged)
    assert "\n" not in str(error.value)


def test_damaged_parts_are_named(tmp_path):
    def drop_a_reader_weight(tensors: dict, metadata: dict) -> None:
        del tensors[next(k for k in tensors if k.startswith(READER_PREFIX))]

    with pytest.raises(CheckpointError, match="has a damaged number reader"):
        load_bundle(copy_with(tmp_path, drop_a_reader_weight))

    def drop_a_detector_weight(tensors: dict, metadata: dict) -> None:
        del tensors[next(k for k in tensors if k.startswith("rejector."))]

    with pytest.raises(CheckpointError, match="damaged not-a-digit detector"):
        load_bundle(copy_with(tmp_path, drop_a_detector_weight))

    def drop_a_classifier_weight(tensors: dict, metadata: dict) -> None:
        del tensors[next(k for k in tensors if "." in k and k.split(".")[0] == "conv1")]

    with pytest.raises(CheckpointError, match="does not fit model 'bncnn'"):
        load_bundle(copy_with(tmp_path, drop_a_classifier_weight))

    def no_metadata(tensors: dict, metadata: dict) -> None:
        metadata.clear()

    with pytest.raises(CheckpointError, match="no digitlab metadata"):
        load_bundle(copy_with(tmp_path, no_metadata))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_bundle(tmp_path / "nothing-here")


def test_the_default_checkpoint_is_the_newest_run_of_the_task(tmp_path, reader_run, untrained_run):
    runs = tmp_path / "runs"
    assert (
        default_checkpoint("digits", runs) == default_checkpoint("numbers", runs) == PACKAGED_MODEL
    )
    shutil.copytree(untrained_run, runs / "lenet")
    assert default_checkpoint("digits", runs) == runs / "lenet" / "model.safetensors"
    assert default_checkpoint("numbers", runs) == PACKAGED_MODEL  # a classifier is no reader
    shutil.copytree(reader_run, runs / "reader")
    assert default_checkpoint("numbers", runs) == runs / "reader" / "model.safetensors"
    old = time.time() - 100
    os.utime(runs / "lenet" / "model.safetensors", (old, old))
    # The reader is newer, but not a classifier: predict keeps the newest classifier.
    assert default_checkpoint("digits", runs) == runs / "lenet" / "model.safetensors"
    assert [task_of_run(runs / name) for name in ("lenet", "reader")] == ["digits", "numbers"]
    (runs / "broken").mkdir()
    (runs / "broken" / "model.safetensors").write_bytes(b"not a checkpoint")
    assert task_of_run(runs / "broken") is None
    assert default_checkpoint("numbers", runs) == runs / "reader" / "model.safetensors"


RUNTIME_PATH = """
import sys
from PIL import Image
import numpy as np
from digitlab.bundle import load_bundle
from digitlab.predict import Predictor, predict_paths
from digitlab.read import NumberReader, read_paths
import digitlab.serve, digitlab.explain, digitlab.export

bundle = load_bundle(sys.argv[1], device="cpu")
Image.fromarray(np.full((60, 200), 255, np.uint8)).save(sys.argv[2])
read_paths(NumberReader.from_bundle(bundle), [sys.argv[2]])
predict_paths(Predictor.from_bundle(bundle), [sys.argv[2]])
print(" ".join(sorted(m for m in sys.modules if m.startswith(tuple(sys.argv[3:])))))
"""


def test_the_runtime_path_imports_no_training_or_generating_code(tmp_path):
    """Loading, predicting, reading, and importing serve, explain and export leave no
    digitlab.synth (or training) module behind: the installed runtime path stays lean."""
    argv = [str(PACKAGED_MODEL), str(tmp_path / "blank.png"), *TRAINING]
    done = subprocess.run(
        [sys.executable, "-c", RUNTIME_PATH, *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
    # The check can fail: importing a generator is seen.
    code = RUNTIME_PATH.replace("import sys\n", "import sys\nimport digitlab.synth.marks\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert "digitlab.synth.marks" in done.stdout.split()


@pytest.mark.slow  # evaluates the packaged model on the 10,000 test digits
def test_evaluate_imports_no_generating_code(mnist_dir, tmp_path):
    """`digitlab evaluate` scores the shipped frozen non-digits: nothing is generated."""
    code = (
        "import sys; from digitlab.cli import main; "
        "assert main(['evaluate', sys.argv[1], '--json']) == 0, 'evaluate failed'; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('digitlab.synth'))))"
    )
    env = os.environ | {"DIGITLAB_DATA": str(mnist_dir)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(PACKAGED_MODEL)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rejection = json.loads(lines[0])["rejection"]
    assert rejection["nondigits"] == 1000 and "nondigits-v1" in rejection["nondigit_source"]
    assert lines[1:] == [""] or lines[1:] == []


def test_load_file_of_a_bundle_reads_the_same_tensors():
    """The bundle's classifier is the checkpoint's, weight for weight."""
    bundle = load_bundle(PACKAGED_MODEL, device="cpu")
    assert isinstance(bundle.classifier, TemperatureScaled)
    stored = load_file(str(PACKAGED_MODEL))
    for name, value in bundle.classifier.model.state_dict().items():
        assert torch.equal(stored[name], value)
