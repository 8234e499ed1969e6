"""`Predictor`: a trained checkpoint turned into digits with probabilities.

It predicts MNIST-format tensors directly, and image files (photos, scans, drawings) after
`digitlab.preprocess` has turned them into MNIST format.
"""

import glob
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digitlab.checkpoint import load_model
from digitlab.device import select_device
from digitlab.errors import ConfigError, DigitlabError
from digitlab.models import model_label

RUNTIMES = ("torch", "onnx")  # what runs the model: PyTorch, or ONNX Runtime on the CPU
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Prediction:
    digit: int
    probability: float
    probabilities: list[float]  # 10 values that sum to 1
    top3: list[tuple[int, float]] = field(default_factory=list)  # (digit, probability), best first

    def to_dict(self) -> dict[str, Any]:
        return {
            "digit": self.digit,
            "probability": self.probability,
            "top3": [{"digit": d, "probability": p} for d, p in self.top3],
            "probabilities": self.probabilities,
        }


class Predictor:
    """Loads a model once and predicts batches of MNIST-format digits."""

    def __init__(
        self,
        model: nn.Module,
        metadata: dict[str, Any],
        device: torch.device,
        *,
        checkpoint: Path | None = None,
        runtime: str = "torch",
    ) -> None:
        self.model = model.eval()
        self.metadata = metadata
        self.device = device
        # Where the model came from, so that worker processes can load copies of their own.
        self.checkpoint = checkpoint
        self.runtime = runtime

    @classmethod
    def from_checkpoint(
        cls, path: Path, device: str = "auto", runtime: str = "torch"
    ) -> "Predictor":
        """`runtime="onnx"` exports the model to ONNX in memory and runs it with ONNX Runtime."""
        check_runtime(runtime, device)
        if runtime == "onnx":
            from digitlab.export import load_onnx_model

            onnx_model, metadata = load_onnx_model(path, device)
            return cls(onnx_model, metadata, torch.device("cpu"), checkpoint=path, runtime=runtime)
        torch_device = select_device(device)
        model, metadata = load_model(path, torch_device)
        return cls(model, metadata, torch_device, checkpoint=path, runtime=runtime)

    @property
    def model_name(self) -> str:
        """The registry name, or e.g. "5 × vggbn" for an ensemble."""
        return model_label(str(self.metadata["model"]), int(self.metadata.get("members", 1)))

    def predict_tensor(self, pixels: torch.Tensor) -> list[Prediction]:
        """Predict float digits (N, 1, 28, 28) in [0, 1], white ink on black (ToTensor format)."""
        return [_to_prediction(p) for p in self.predict_probabilities(pixels)]

    @torch.inference_mode()
    def predict_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 10) probabilities on the CPU for float digits (N, 1, 28, 28) as predict_tensor."""
        return self.model(pixels.to(self.device)).float().exp().cpu()


def check_runtime(runtime: str, device: str = "auto") -> None:
    """ConfigError now, rather than at load time, if `runtime` can't run on `device` here."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    if runtime == "onnx":
        from digitlab.export import check_onnx_runtime

        check_onnx_runtime(device)


@dataclass(frozen=True)
class FileResult:
    """What one image file gave: a prediction, no digit (with the reason), or an error."""

    path: Path
    prediction: Prediction | None = None
    view: torch.Tensor | None = None  # (1, 28, 28): what the model saw
    reason: str | None = None  # set when the file was read but holds no digit
    error: str | None = None  # set when the file could not be read

    def to_dict(self) -> dict[str, Any]:
        found = self.prediction
        return {
            "path": str(self.path),
            "digit": found.digit if found else None,
            "probability": found.probability if found else None,
            "top3": found.to_dict()["top3"] if found else [],
            "reason": self.reason,
            "error": self.error,
        }


def expand_paths(patterns: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders as their image files (recursively), globs as their matches.

    A pattern that matches nothing is kept as it is, so that it is reported as missing.
    """
    found: list[Path] = []
    for pattern in map(str, patterns):
        path = Path(pattern)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif not path.exists() and glob.has_magic(pattern):
            found += sorted(Path(p) for p in glob.glob(pattern, recursive=True)) or [path]
        else:
            found.append(path)
    return found


def predict_paths(
    predictor: Predictor,
    paths: Sequence[Path],
    *,
    batch_size: int = 256,
    on_progress: Callable[[int], None] | None = None,
) -> list[FileResult]:
    """Preprocess and predict image files in batches; unreadable files become error results."""
    results: list[FileResult] = []
    for chunk in _chunks(paths, batch_size):
        read = [_read(path) for path in chunk]
        digits = [r for r in read if r.view is not None]
        if digits:
            batch = torch.stack([r.view for r in digits if r.view is not None])
            predictions = iter(predictor.predict_tensor(batch))
            read = [
                replace(r, prediction=next(predictions)) if r.view is not None else r for r in read
            ]
        results += read
        if on_progress is not None:
            on_progress(len(chunk))
    return results


def _read(path: Path) -> FileResult:
    from digitlab.preprocess import preprocess_path

    try:
        preprocessed = preprocess_path(path)
    except DigitlabError as err:
        return FileResult(path, error=str(err))
    return FileResult(path, view=preprocessed.pixels, reason=preprocessed.reason)


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _to_prediction(probabilities: torch.Tensor) -> Prediction:
    top = probabilities.topk(3)
    return Prediction(
        digit=int(top.indices[0]),
        probability=float(top.values[0]),
        probabilities=probabilities.tolist(),
        top3=[(int(d), float(p)) for p, d in zip(top.values, top.indices, strict=True)],
    )
