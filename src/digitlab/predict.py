"""`Predictor`: a trained checkpoint turned into digits with probabilities.

It predicts MNIST-format tensors directly, and image files (photos, scans, drawings) after
`digitlab.preprocess` has turned them into MNIST format.
"""

import glob
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digitlab.device import select_device
from digitlab.errors import ConfigError, DigitlabError
from digitlab.models import model_label
from digitlab.runs import resolve_checkpoint

RUNTIMES = ("torch", "onnx")  # what runs the model: PyTorch, or ONNX Runtime on the CPU
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Prediction:
    digit: int | None  # None: the image is not a digit (see `reason`)
    probability: float  # of the most likely digit (of `digit` when there is one)
    probabilities: list[float]  # 10 values that sum to 1
    top3: list[tuple[int, float]] = field(default_factory=list)  # (digit, probability), best first
    reason: str | None = None  # "not a digit" when the detector rejected it
    not_digit_score: float | None = None  # the detector's score (higher: less like a digit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "digit": self.digit,
            "probability": self.probability if self.digit is not None else None,
            "reason": self.reason,
            "top3": [{"digit": d, "probability": p} for d, p in self.top3],
            "probabilities": self.probabilities,
            "not_digit_score": self.not_digit_score,
        }


class Predictor:
    """Loads a model once and predicts batches of MNIST-format digits.

    The probabilities are calibrated with the checkpoint's temperature, and images the "not a
    digit" detector scores above `reject_threshold` get `digit=None` (see digitlab.reject).
    `missing` lists what an older checkpoint lacks (no temperature, no detector).

    The "not a digit" score is the detector's plus `doubt_weight` × the classifier's doubt
    (`digitlab.reject.with_doubt`). `cut_threshold` is the detector's own stored threshold
    whatever the user's rejection settings: `digitlab read` weighs candidate cuts by it, so
    that how a number is cut never depends on whether "not a digit" answers are wanted.
    """

    def __init__(
        self,
        model: nn.Module,
        metadata: dict[str, Any],
        device: torch.device,
        *,
        rejector: nn.Module | None = None,
        reject_threshold: float | None = None,
        cut_threshold: float | None = None,
        doubt_weight: float = 0.0,
        checkpoint: Path | None = None,
        runtime: str = "torch",
    ) -> None:
        self.model = model.eval()
        self.metadata = metadata
        self.device = device
        self.rejector = rejector.to(device).eval() if rejector is not None else None
        self.reject_threshold = reject_threshold if rejector is not None else None
        self.cut_threshold = cut_threshold if rejector is not None else None
        self.doubt_weight = doubt_weight
        # Where the model came from, so that worker processes can load copies of their own.
        self.checkpoint = checkpoint
        self.runtime = runtime

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | None = None,
        device: str = "auto",
        runtime: str = "torch",
        *,
        reject: bool = True,
        reject_threshold: float | None = None,
    ) -> "Predictor":
        """Load a checkpoint: a `.safetensors` file or a run folder; None = the newest run under
        ./runs, else the packaged model. `runtime="onnx"` exports the model to ONNX in memory
        and runs it with ONNX Runtime.

        `reject=False` never answers "not a digit"; `reject_threshold` replaces the stored one.
        """
        from digitlab.calibrate import load_calibrated_model
        from digitlab.reject import (
            detector_threshold_of,
            doubt_weight_of,
            read_rejector,
            threshold_of,
        )

        check_runtime(runtime, device)
        path = resolve_checkpoint(path)
        model: nn.Module
        if runtime == "onnx":
            from digitlab.export import load_onnx_model

            model, metadata = load_onnx_model(path, device)
            torch_device = torch.device("cpu")
        else:
            torch_device = select_device(device)
            model, metadata = load_calibrated_model(path, torch_device)
        stored = threshold_of(metadata)
        rejector = read_rejector(path) if stored is not None else None
        threshold = reject_threshold if reject_threshold is not None else stored
        return cls(
            model, metadata, torch_device, rejector=rejector,
            reject_threshold=threshold if reject else None,
            cut_threshold=detector_threshold_of(metadata), doubt_weight=doubt_weight_of(metadata),
            checkpoint=path, runtime=runtime,
        )  # fmt: skip

    @property
    def model_name(self) -> str:
        """The registry name, or e.g. "5 × vggbn" for an ensemble."""
        return model_label(str(self.metadata["model"]), int(self.metadata.get("members", 1)))

    @property
    def temperature(self) -> float | None:
        """The calibration temperature applied to the probabilities, if the model has one."""
        from digitlab.calibrate import temperature_of

        return temperature_of(self.metadata)

    @property
    def missing(self) -> list[str]:
        """What this checkpoint lacks, one sentence each (empty for a current checkpoint)."""
        from digitlab.calibrate import missing_calibration
        from digitlab.reject import missing_rejection

        found = [missing_calibration(self.metadata), missing_rejection(self.metadata)]
        return [reason for reason in found if reason]

    @torch.inference_mode()
    def predict_tensor(self, pixels: torch.Tensor) -> list[Prediction]:
        """Predict float digits (N, 1, 28, 28) in [0, 1], white ink on black (ToTensor format)."""
        probabilities = self.predict_probabilities(pixels)
        if self.rejector is None or self.reject_threshold is None:
            return [_to_prediction(p) for p in probabilities]
        scores = self.not_digit_scores(pixels, probabilities).tolist()
        return [
            _to_prediction(p, score, rejected=score > self.reject_threshold)
            for p, score in zip(probabilities, scores, strict=True)
        ]

    @torch.inference_mode()
    def detector_scores(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N,) the detector's scores on the CPU (higher: less like one whole digit); the
        predictor must have a detector."""
        assert self.rejector is not None
        return self.rejector(pixels.to(self.device)).float().cpu()

    def not_digit_scores(self, pixels: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        """(N,) the scores compared with `reject_threshold`: the detector's with the doubt of
        the classifier, whose calibrated `probabilities` (N, 10) of `pixels` are given."""
        from digitlab.reject import with_doubt

        return with_doubt(self.detector_scores(pixels), probabilities, self.doubt_weight)

    def digitness(self, pixels: torch.Tensor) -> torch.Tensor | None:
        """(N,) how much each view looks like exactly one whole digit to the detector, 0-1
        (`digitlab.reject.digitness` at `cut_threshold`); None without a detector."""
        from digitlab.reject import digitness

        if self.rejector is None or self.cut_threshold is None:
            return None
        return digitness(self.detector_scores(pixels), self.cut_threshold)

    @torch.inference_mode()
    def predict_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 10) calibrated probabilities on the CPU for float digits (N, 1, 28, 28) as
        predict_tensor, without the "not a digit" check."""
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
        answer = found.to_dict() if found else {}
        return {
            "path": str(self.path),
            "digit": answer.get("digit"),
            "probability": answer.get("probability"),
            "top3": answer.get("top3", []),
            "reason": self.reason or answer.get("reason"),
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
    for chunk in chunked(paths, batch_size):
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


def chunked(items: Iterable[Path], size: int) -> Iterator[list[Path]]:
    """Lists of `size` paths (the last may be shorter), taken lazily from any iterable."""
    chunk: list[Path] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _to_prediction(
    probabilities: torch.Tensor, not_digit_score: float | None = None, *, rejected: bool = False
) -> Prediction:
    top = probabilities.topk(3)
    from digitlab.reject import NOT_A_DIGIT

    return Prediction(
        digit=None if rejected else int(top.indices[0]),
        probability=float(top.values[0]),
        probabilities=probabilities.tolist(),
        top3=[(int(d), float(p)) for p, d in zip(top.values, top.indices, strict=True)],
        reason=NOT_A_DIGIT if rejected else None,
        not_digit_score=not_digit_score,
    )
