"""ONNX and TorchScript export: valid files, dynamic batches, parity with PyTorch on real MNIST.

Parity means identical predicted digits on every image and log-probabilities within 1e-4.
lenet, bncnn and vggbn are trained for 100 Adam steps first, so that their predictions are
confident and agreeing on them means something, and are compared on the whole real test set
(10,000 images). The simplecnn models cost 30-100× more per image (simplecnn3: ~170M multiply-
adds); on 2 CPU cores the whole test set takes ~100 s per runtime for simplecnn3 alone, so they
are left untrained (fixed seed, BatchNorm statistics measured on real digits so that folding
BatchNorm into the convolutions is really tested) and compared on the first HEAVY_IMAGES test
images.
"""

import importlib.util
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.checkpoint import save_model
from digitlab.data import MNIST, iterate_batches, to_float
from digitlab.errors import CheckpointError, ConfigError, DigitlabError
from digitlab.export import (
    PARITY_TOLERANCE,
    ExportError,
    OnnxModel,
    compare_outputs,
    export_checkpoint,
    export_onnx,
    load_torchscript,
    onnx_bytes,
    torchscript_bytes,
)
from digitlab.models import create_model, list_models
from digitlab.predict import Predictor

TRAINED = ("lenet", "bncnn", "vggbn")  # trained briefly and compared on all 10,000 test images
TRAIN_STEPS = 100
HEAVY_IMAGES = 1000  # test images for the untrained simplecnn models (see the docstring)
FORMATS = ("onnx", "torchscript")


@dataclass
class Case:
    """One model, the real test images it is checked on, and PyTorch's answers for them."""

    name: str
    model: nn.Module
    images: torch.Tensor
    reference: torch.Tensor  # PyTorch's log-probabilities for `images`
    exports: dict[str, bytes] = field(default_factory=dict)

    def run(self, format: str, pixels: torch.Tensor) -> torch.Tensor:
        if format not in self.exports:
            to_bytes = onnx_bytes if format == "onnx" else torchscript_bytes
            self.exports[format] = to_bytes(self.model)
        data = self.exports[format]
        runner = OnnxModel(data, threads=2) if format == "onnx" else load_torchscript(data)
        with torch.inference_mode():
            return runner(pixels)


def train_briefly(name: str, mnist: MNIST) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    order = torch.randperm(len(mnist.train_images))[: TRAIN_STEPS * 64]
    for images, labels in iterate_batches(mnist.train_images, mnist.train_labels, 64, order=order):
        loss = F.nll_loss(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def untrained_with_real_statistics(name: str, images: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # running statistics = the average over what it has seen
    with torch.no_grad():
        model.train()(images)
    return model.eval()


@pytest.fixture(scope="module", params=list_models())
def case(request: pytest.FixtureRequest, mnist: MNIST) -> Case:
    name = request.param
    if name in TRAINED:
        model, images = train_briefly(name, mnist), to_float(mnist.test_images)
        with torch.inference_mode():
            accuracy = (model(images).argmax(1) == mnist.test_labels).float().mean()
        assert accuracy > 0.9, f"{name} did not learn ({accuracy:.1%}); parity would mean little"
    else:
        model = untrained_with_real_statistics(name, to_float(mnist.train_images[:64]))
        images = to_float(mnist.test_images[:HEAVY_IMAGES])
    with torch.inference_mode():
        reference = model(images)
    return Case(name, model, images, reference)


@pytest.fixture(scope="module")
def checkpoint(mnist: MNIST, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained lenet saved as a digitlab checkpoint."""
    path = tmp_path_factory.mktemp("export") / "model.safetensors"
    save_model(path, train_briefly("lenet", mnist), {"model": "lenet"})
    return path


# ---------------------------------------------------------------------------------------------
# Every model (slow: `case` trains lenet, bncnn and vggbn briefly)


@pytest.mark.slow
def test_onnx_file_passes_checker_and_declares_its_interface(case: Case, tmp_path: Path):
    import onnx

    path = export_onnx(case.model, tmp_path / f"{case.name}.onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    (pixels,), (log_probs,) = proto.graph.input, proto.graph.output
    assert (pixels.name, log_probs.name) == ("pixels", "log_probs")
    assert pixels.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert _dims(pixels) == ["batch", 1, 28, 28]
    assert _dims(log_probs) == ["batch", 10]


def _dims(value_info) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.slow
@pytest.mark.parametrize("format", FORMATS)
def test_export_runs_any_batch_size(case: Case, format: str):
    # For the simplecnn models the parity test below runs the 1000-image batch.
    for size in (1, 7, 1000) if case.name in TRAINED else (1, 7):
        output = case.run(format, case.images[:size])
        assert output.shape == (size, 10)
        assert torch.allclose(output, case.reference[:size], atol=PARITY_TOLERANCE, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("format", FORMATS)
def test_export_matches_pytorch_on_real_test_digits(case: Case, format: str):
    parity = compare_outputs(case.reference, case.run(format, case.images))
    assert parity.argmax_agreement == 1.0
    assert parity.max_abs_diff <= PARITY_TOLERANCE
    assert len(case.images) == (10_000 if case.name in TRAINED else HEAVY_IMAGES)


# ---------------------------------------------------------------------------------------------
# Checkpoints, Predictor and errors


def test_compare_outputs_measures_both_differences():
    reference = torch.tensor([[0.0, -1.0], [-1.0, 0.0]])
    candidate = torch.tensor([[0.0, -0.75], [0.5, 0.0]])  # second row now predicts digit 0
    parity = compare_outputs(reference, candidate)
    assert (parity.max_abs_diff, parity.argmax_agreement) == (1.5, 0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        compare_outputs(reference, candidate[:1])


@pytest.mark.slow
@pytest.mark.parametrize("format", FORMATS)
def test_export_checkpoint_creates_folders_and_writes_a_working_file(
    checkpoint: Path, mnist: MNIST, tmp_path: Path, format: str
):
    out = tmp_path / "new" / "folder" / f"model.{format}"
    assert export_checkpoint(checkpoint, out, format) == out
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary files left
    pixels = to_float(mnist.test_images[:100])
    exported = OnnxModel(out) if format == "onnx" else load_torchscript(out)
    with torch.inference_mode():
        log_probs = exported(pixels)
    reference = Predictor.from_checkpoint(checkpoint, "cpu").predict_tensor(pixels)
    assert log_probs.argmax(1).tolist() == [p.digit for p in reference]


@pytest.mark.slow
def test_export_that_does_not_match_pytorch_writes_nothing(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import digitlab.export

    def off_by_a_little(data: bytes):
        return lambda pixels: OnnxModel(data)(pixels) + 1e-3

    monkeypatch.setattr(digitlab.export, "_loader", lambda format: off_by_a_little)
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export_checkpoint(checkpoint, out, "onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_onnx_runtime_predictor_gives_the_same_digits(checkpoint: Path, mnist: MNIST):
    pixels = to_float(mnist.test_images[:1000])
    by_torch = Predictor.from_checkpoint(checkpoint, "cpu").predict_tensor(pixels)
    onnx_predictor = Predictor.from_checkpoint(checkpoint, "cpu", runtime="onnx")
    by_onnx = onnx_predictor.predict_tensor(pixels)
    assert isinstance(onnx_predictor.model, OnnxModel)  # really ONNX Runtime, not a fallback
    assert onnx_predictor.model_name == "lenet"
    assert [p.digit for p in by_onnx] == [p.digit for p in by_torch]
    assert (
        max(
            abs(a - b)
            for x, y in zip(by_onnx, by_torch, strict=True)
            for a, b in zip(x.probabilities, y.probabilities, strict=True)
        )
        <= PARITY_TOLERANCE
    )


@pytest.mark.slow
def test_unknown_format_runtime_or_device_is_a_config_error(checkpoint: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="onnx, torchscript"):
        export_checkpoint(checkpoint, tmp_path / "model.tflite", "tflite")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="runtime 'tensorrt'"):
        Predictor.from_checkpoint(checkpoint, "cpu", runtime="tensorrt")
    with pytest.raises(ConfigError, match="CPU"):
        Predictor.from_checkpoint(checkpoint, "cuda", runtime="onnx")


@pytest.mark.slow
def test_missing_onnxruntime_says_what_to_install(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "onnxruntime" else find_spec(name, *args),
    )
    with pytest.raises(ConfigError, match=r"pip install 'digitlab\[export\]'"):
        Predictor.from_checkpoint(checkpoint, "cpu", runtime="onnx")


@pytest.mark.slow
def test_unwritable_destination_is_a_digitlab_error(checkpoint: Path, tmp_path: Path):
    # A path under a regular file can't be created, even by root (for whom chmod is no barrier).
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(DigitlabError, match="cannot write .*not-a-folder"):
        export_checkpoint(checkpoint, blocker / "model.onnx", "onnx")


def test_onnx_model_refuses_missing_and_invalid_files(tmp_path: Path):
    with pytest.raises(CheckpointError, match="no ONNX model"):
        OnnxModel(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf")
    with pytest.raises(CheckpointError, match="not a valid ONNX model"):
        OnnxModel(junk)


def test_importing_digitlab_does_not_import_onnx():
    code = (
        "import sys, digitlab, digitlab.export, digitlab.predict; "
        "print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.slow
def test_server_with_onnx_runtime_answers_like_torch(checkpoint: Path, mnist: MNIST):
    from fastapi.testclient import TestClient

    from digitlab.serve import create_app

    with pytest.raises(ConfigError, match="runtime 'tensorrt'"):
        create_app(checkpoint, runtime="tensorrt")  # refused before the server starts
    pixels = mnist.test_images[:20]
    answers = {}
    for runtime in ("torch", "onnx"):
        with TestClient(create_app(checkpoint, device="cpu", runtime=runtime)) as client:
            if runtime == "onnx":
                assert isinstance(client.app.state.predictor.model, OnnxModel)
            responses = [client.post("/predict", json={"pixels": p.tolist()}) for p in pixels]
        assert all(r.status_code == 200 for r in responses)
        answers[runtime] = [r.json()["digit"] for r in responses]
    assert answers["onnx"] == answers["torch"]
    assert answers["torch"] == [p.digit for p in _torch_digits(checkpoint, pixels)]


def _torch_digits(checkpoint: Path, images: torch.Tensor):
    return Predictor.from_checkpoint(checkpoint, "cpu").predict_tensor(to_float(images))
