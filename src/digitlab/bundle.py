"""One loader for inference: a checkpoint → every model `predict`, `read`, `explain` and
`serve` use from it, the file read once.

    bundle = load_bundle("runs/default-20261201-101500")   # None: the newest run, else packaged
    predictor = Predictor.from_bundle(bundle)               # digits, and "not a digit"
    reader = NumberReader.from_bundle(bundle)               # numbers, if it carries a reader

What a checkpoint holds depends on what trained it:

- a digit classifier's run: the classifier (tensors without a prefix) with its temperature
  (metadata "calibration") and the "not a digit" detector (`rejector.*`, metadata "rejection");
- the packaged model: the same, and a number reader (`reader.*`, metadata "reader");
- a number reader's run (metadata "model" a model of task "numbers", e.g. "crnn"): the
  reader's own tensors, without a prefix, and its temperature and threshold (metadata "reader").

Nothing here trains or generates data: the runtime path stays in checkpoint, models, reader,
calibrate (`TemperatureScaled`), reject (`Rejector`) and read.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from digitlab.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from digitlab.read import NumberReader
    from digitlab.reject import Rejector

RUNTIMES = ("torch", "onnx")  # what runs the classifier: PyTorch, or ONNX Runtime on the CPU
READER_PREFIX = "reader."  # the tensors of a reader carried by a classifier's checkpoint


@dataclass(frozen=True)
class Bundle:
    """A checkpoint's models, ready for inference (each in eval mode on `device`)."""

    path: Path
    metadata: dict[str, Any]
    device: torch.device
    runtime: str  # of the classifier: "torch" or "onnx" (the reader always runs in torch)
    classifier: nn.Module | None  # log-probabilities, calibrated; None in a reader's run
    rejector: "Rejector | None"  # the "not a digit" detector, when the checkpoint has a threshold
    rejection: dict[str, Any]  # the detector's metadata (threshold, doubt weight, method)
    reader: "NumberReader | None"  # the number reader: the run's own, or the one it carries


def load_bundle(
    checkpoint: str | Path | None = None,
    *,
    device: str = "auto",
    runtime: str = "torch",
    task: str = "digits",
) -> Bundle:
    """Read a checkpoint (a `.safetensors` file or a run folder) once and build its models.

    None is the newest run of `task` ("digits" or "numbers") under ./runs, else the packaged
    model. `runtime="onnx"` exports the classifier to ONNX in memory and runs it with ONNX
    Runtime on the CPU. A missing, damaged or unfitting checkpoint is a CheckpointError."""
    from digitlab.calibrate import TemperatureScaled, temperature_of
    from digitlab.checkpoint import build_checkpoint_model, read_checkpoint, tensors_under
    from digitlab.device import select_device
    from digitlab.models import task_of
    from digitlab.reject import REJECTOR_PREFIX, rejector_from_tensors, threshold_of
    from digitlab.runs import resolve_checkpoint

    check_runtime(runtime, device)
    path = resolve_checkpoint(checkpoint, task=task)
    on = torch.device("cpu") if runtime == "onnx" else select_device(device)
    tensors, metadata = read_checkpoint(path)
    model = build_checkpoint_model(path, metadata, tensors)
    if task_of(str(metadata["model"])) == "numbers":
        own = _number_reader(model, metadata, on)
        return Bundle(path, metadata, on, runtime, None, None, {}, own)
    temperature = temperature_of(metadata)
    if temperature is not None:
        model = TemperatureScaled(model, temperature)
    classifier = _onnx(model) if runtime == "onnx" else model.to(on).eval()
    rejector = None
    if threshold_of(metadata) is not None:  # a detector without a threshold says nothing
        rejector = rejector_from_tensors(path, tensors_under(tensors, REJECTOR_PREFIX))
    carried = tensors_under(tensors, READER_PREFIX)
    reader = _carried_reader(path, metadata, carried, on) if carried else None
    return Bundle(
        path, metadata, on, runtime, classifier, rejector, metadata.get("rejection") or {}, reader
    )


def check_runtime(runtime: str, device: str = "auto") -> None:
    """ConfigError now, rather than at load time, if `runtime` can't run on `device` here."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    if runtime == "onnx":
        from digitlab.export import check_onnx_runtime

        check_onnx_runtime(device)


def _onnx(model: nn.Module) -> nn.Module:
    from digitlab.export import onnx_runtime_model

    return onnx_runtime_model(model.eval())


def _carried_reader(
    path: Path, metadata: dict[str, Any], tensors: dict[str, torch.Tensor], device: torch.device
) -> "NumberReader":
    """The reader a classifier's checkpoint carries under READER_PREFIX (the packaged model)."""
    from digitlab.models import create_model

    info = metadata.get("reader") or {}
    model = create_model(str(info.get("model", "crnn")))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        first_line = str(err).splitlines()[0]
        raise CheckpointError(f"{path} has a damaged number reader: {first_line}") from err
    return _number_reader(model, metadata, device)


def _number_reader(
    model: nn.Module, metadata: dict[str, Any], device: torch.device
) -> "NumberReader":
    from digitlab.read import NumberReader
    from digitlab.reader import CRNN

    if not isinstance(model, CRNN):  # the only reader digitlab has
        raise ConfigError(f"{type(model).__name__} is not a number reader digitlab can run")
    info = metadata.get("reader") or {}
    threshold = info.get("threshold")
    return NumberReader(
        model,
        temperature=float(info.get("temperature") or 1.0),
        threshold=None if threshold is None else float(threshold),
        device=device,
        metadata=metadata,
    )
