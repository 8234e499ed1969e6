"""ONNX and TorchScript export, checked against PyTorch before anything is written.

    digitlab export runs/default-20250101-120000 --format onnx --out lenet.onnx

Every exported model has the same contract as the PyTorch model it came from: input `pixels`,
float32 (N, 1, 28, 28) in [0, 1] (white digit on black, as torchvision's ToTensor gives), any
normalisation inside; output `log_probs`, (N, 10) log-probabilities of the digits 0-9, calibrated
with the checkpoint's temperature when it has one (baked into the graph, see digitlab.calibrate).
N is a dynamic axis, so one file serves single images and large batches. The "not a digit"
detector is not exported.

`OnnxModel` runs an ONNX file (or in-memory bytes) with ONNX Runtime behind the interface of a
PyTorch model, which is how `load_bundle(..., runtime="onnx")` (and so `Predictor`) uses it.

onnx and onnxruntime are optional (`pip install 'digitlab[export]'`) and imported only here,
inside the functions that need them.
"""

import copy
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from digitlab.checkpoint import atomic_path
from digitlab.errors import CheckpointError, ConfigError, DigitlabError
from digitlab.extras import require
from digitlab.mnist_format import IMAGE_SIZE

FORMATS = ("onnx", "torchscript")
INPUT_NAME = "pixels"
OUTPUT_NAME = "log_probs"
# Opset 17 (2022) has every op these models use and runs on every ONNX Runtime since 1.13.
ONNX_OPSET = 17
# Exports must match PyTorch to this much (largest |difference| of log-probabilities); float32
# exports differ by ~1e-6 from reordered arithmetic, so 1e-4 only fails on a real mismatch.
PARITY_TOLERANCE = 1e-4
# Random images for the parity check run by `export_checkpoint` (noise, not digits: it checks
# the arithmetic, and needs no dataset on the exporting machine).
PARITY_BATCH = 64

_DOC_STRING = (
    f"{INPUT_NAME}: float32 [N, 1, 28, 28] in [0, 1], a white digit on black (MNIST format); "
    f"{OUTPUT_NAME}: [N, 10] log-probabilities of the digits 0-9."
)


class ExportError(DigitlabError):
    """An export could not be written, or does not reproduce the PyTorch model."""


@dataclass(frozen=True)
class Parity:
    """How closely a candidate's log-probabilities follow the reference's."""

    max_abs_diff: float  # largest |reference - candidate| over all images and digits
    argmax_agreement: float  # fraction of images whose predicted digit is the same, 0..1


def compare_outputs(reference: torch.Tensor, candidate: torch.Tensor) -> Parity:
    """Compare two (N, 10) outputs of the same images."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {tuple(reference.shape)} vs {tuple(candidate.shape)}")
    reference, candidate = reference.detach().float().cpu(), candidate.detach().float().cpu()
    same_digit = reference.argmax(dim=1) == candidate.argmax(dim=1)
    return Parity(
        max_abs_diff=float((reference - candidate).abs().max()),
        argmax_agreement=float(same_digit.float().mean()),
    )


# ---------------------------------------------------------------------------------------------
# Exporting


def onnx_bytes(model: nn.Module) -> bytes:
    """The model as a checked ONNX file, in memory."""
    require("onnx", "ONNX export")
    import onnx

    buffer = io.BytesIO()
    # The TorchScript-based exporter (dynamo=False), not torch 2.9+'s default torch.export one:
    # - the new one needs the extra `onnxscript` package, and takes ~3 s per export against
    #   ~0.2 s, which `--runtime onnx` would pay on every start (it exports in memory);
    # - both reproduce these plain feed-forward CNNs equally well (measured on every model:
    #   largest log-probability difference 2-5e-7 with either);
    # - torch is pinned, and the old exporter lives exactly as long as torch.jit, which the
    #   TorchScript format needs anyway. Its deprecation warning is therefore silenced here.
    # When torch is next upgraded: if this exporter is gone, switch to dynamo=True with
    # dynamic_shapes=({0: torch.export.Dim("batch")},) and add onnxscript to the export extra.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            _exportable(model),
            (_example_input(),),
            buffer,  # type: ignore[arg-type]  # this exporter writes to file objects too
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=ONNX_OPSET,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.doc_string = _DOC_STRING
    onnx.checker.check_model(proto, full_check=True)  # full_check adds shape inference
    return proto.SerializeToString()


def torchscript_bytes(model: nn.Module) -> bytes:
    """The model as a TorchScript archive, in memory (load it with `torch.jit.load`)."""
    buffer = io.BytesIO()
    # Tracing, not scripting: the models' forward uses Python that TorchScript's compiler
    # rejects (zip(..., strict=True)), and has no data-dependent control flow to lose.
    # torch.jit is deprecated in favour of torch.export, but TorchScript is the format asked for.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(_exportable(model), _example_input())
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def export_onnx(model: nn.Module, out: Path) -> Path:
    """Write `model` to `out` as ONNX (atomically; missing folders are created)."""
    return _write(out, onnx_bytes(model))


def export_torchscript(model: nn.Module, out: Path) -> Path:
    """Write `model` to `out` as TorchScript (atomically; missing folders are created)."""
    return _write(out, torchscript_bytes(model))


def export_checkpoint(checkpoint: Path, out: Path, format: str) -> Path:
    """Export a checkpoint's model, check it matches PyTorch, then write it to `out`.

    Raises ExportError if the export does not reproduce the model within PARITY_TOLERANCE;
    nothing is written then.
    """
    from digitlab.bundle import load_bundle

    to_bytes = _exporter(format)
    model = load_bundle(checkpoint, device="cpu").classifier
    if model is None:
        raise ExportError(
            f"{checkpoint} is a number reader; only digit classifiers export (its contract is "
            "one 28×28 digit in, ten log-probabilities out)"
        )
    data = to_bytes(model)
    pixels = torch.rand(PARITY_BATCH, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        parity = compare_outputs(model(pixels), _loader(format)(data)(pixels))
    if not parity.max_abs_diff <= PARITY_TOLERANCE:  # `not <=` also catches NaN
        raise ExportError(
            f"the {format} export of {checkpoint} does not match PyTorch (largest difference "
            f"{parity.max_abs_diff:.2g} > {PARITY_TOLERANCE}); nothing was written. Please "
            "report this with your torch and onnxruntime versions"
        )
    return _write(out, data)


def _exporter(format: str) -> Callable[[nn.Module], bytes]:
    exporters = {"onnx": onnx_bytes, "torchscript": torchscript_bytes}
    if format not in exporters:
        raise ConfigError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    return exporters[format]


def load_torchscript(source: str | Path | bytes) -> torch.jit.ScriptModule:
    """A TorchScript export (file or bytes) loaded on the CPU, ready to call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit: see torchscript_bytes
        if isinstance(source, bytes):
            return torch.jit.load(io.BytesIO(source), map_location="cpu")
        return torch.jit.load(str(source), map_location="cpu")


def _loader(format: str) -> Callable[[bytes], Callable[[torch.Tensor], torch.Tensor]]:
    return OnnxModel if format == "onnx" else load_torchscript


def _exportable(model: nn.Module) -> nn.Module:
    # A CPU copy in eval mode: the file must not depend on a GPU, BatchNorm must use its running
    # statistics, and the caller's model keeps its device and mode.
    return copy.deepcopy(model).cpu().eval()


def _example_input() -> torch.Tensor:
    # Batch 2, not 1: tracing with a batch of one could bake that size into a reshape.
    return torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE)


def _write(out: Path, data: bytes) -> Path:
    try:
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
    except OSError as err:
        raise ExportError(
            f"cannot write {out} ({err.strerror or err}); choose a writable --out path"
        ) from err
    return out


# ---------------------------------------------------------------------------------------------
# Running ONNX with ONNX Runtime


class OnnxModel(nn.Module):
    """An ONNX model run by ONNX Runtime on the CPU, callable like the PyTorch model.

    `OnnxModel("lenet.onnx")(pixels)` takes a float tensor (N, 1, 28, 28) and returns (N, 10)
    log-probabilities as a CPU tensor. It is an `nn.Module` only so that it fits wherever a model
    fits (`Predictor`, `.eval()`, `.to()`); it has no parameters and no gradients.

    `threads` is ONNX Runtime's intra-op thread count. One thread is fastest for the single
    small images a server sees (lenet, batch 1, 2 cores: ~25k images/s with one thread, ~14k
    with two); large batches gain from more (batch 1024: ~85k → ~115k).
    """

    def __init__(self, source: str | Path | bytes, *, threads: int = 1) -> None:
        super().__init__()
        require("onnxruntime", "running ONNX models")
        import onnxruntime as ort

        if not isinstance(source, bytes) and not Path(source).is_file():
            raise CheckpointError(f"no ONNX model at {source}; write one with `digitlab export`")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # the graph is a chain: nothing runs in parallel
        # Idle worker threads sleep instead of spinning: spinning starved torch (preprocessing,
        # other models) in the same process, and any process sharing the cores. Measured on
        # 2 busy cores, bncnn with 2 threads alternating with torch: 46 → 2,183 images/s.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                source if isinstance(source, bytes) else str(source),
                options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as err:  # onnxruntime raises its own types for unreadable models
            raise CheckpointError(f"{_name(source)} is not a valid ONNX model: {err}") from err

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        array = pixels.detach().to("cpu", torch.float32).contiguous().numpy()
        (log_probs,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(log_probs)


def onnx_runtime_model(model: nn.Module, *, threads: int | None = None) -> OnnxModel:
    """`model` (calibrated, as a checkpoint is loaded) exported to ONNX in memory and run by
    ONNX Runtime on the CPU.

    `threads=None` follows torch's thread setting (`torch.get_num_threads()`), so whatever
    limits torch's threads (e.g. `digitlab serve --threads`) limits ONNX Runtime's too.
    """
    threads = torch.get_num_threads() if threads is None else threads
    return OnnxModel(onnx_bytes(model), threads=threads)


def check_onnx_runtime(device: str = "auto") -> None:
    """ConfigError unless ONNX Runtime is installed and `device` is one it runs on here."""
    if device not in ("auto", "cpu"):
        raise ConfigError(f"the onnx runtime runs on the CPU; use device cpu, not {device!r}")
    require("onnx", "the onnx runtime")  # it exports the checkpoint with onnx first
    require("onnxruntime", "the onnx runtime")


def _name(source: str | Path | bytes) -> str:
    return "the in-memory model" if isinstance(source, bytes) else str(source)
