"""`Predictor`: a trained classifier turned into digits with probabilities, and "not a digit".

It predicts MNIST-format tensors directly, and image files (photos, scans, drawings) after
`digitlab.preprocess` has turned them into MNIST format: `predict_stream` streams the results
of many files in order (the cleaning in worker processes if asked), `predict_paths` collects
them.
"""

import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from digitlab.errors import CheckpointError, DigitlabError
from digitlab.models import model_label
from digitlab.workers import BATCH, stream

if TYPE_CHECKING:
    from digitlab.bundle import Bundle


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
    """A classifier loaded once, predicting batches of MNIST-format digits.

    The probabilities are calibrated with the checkpoint's temperature, and images the "not a
    digit" detector scores above `reject_threshold` get `digit=None` (see digitlab.reject).
    `missing` lists what an older checkpoint lacks (no temperature, no detector). The "not a
    digit" score is the detector's plus `doubt_weight` × the classifier's doubt
    (`digitlab.reject.with_doubt`).
    """

    def __init__(
        self,
        model: nn.Module,
        metadata: dict[str, Any],
        device: torch.device,
        *,
        rejector: nn.Module | None = None,
        reject_threshold: float | None = None,
        doubt_weight: float = 0.0,
    ) -> None:
        self.model = model.eval()
        self.metadata = metadata
        self.device = device
        self.rejector = rejector.to(device).eval() if rejector is not None else None
        self.reject_threshold = reject_threshold if rejector is not None else None
        self.doubt_weight = doubt_weight

    @classmethod
    def from_bundle(
        cls, bundle: "Bundle", *, reject: bool = True, reject_threshold: float | None = None
    ) -> "Predictor":
        """The classifier of a loaded checkpoint (`digitlab.bundle.load_bundle`), with its
        detector. `reject=False` never answers "not a digit"; `reject_threshold` replaces the
        stored threshold. A number reader's checkpoint is a CheckpointError."""
        from digitlab.reject import doubt_weight_of, threshold_of

        if bundle.classifier is None:
            raise CheckpointError(
                f"{bundle.path} is a number reader ({bundle.metadata['model']}), not a digit "
                "classifier: pass a classifier's run (`digitlab train`) to --checkpoint, or "
                "drop --checkpoint to use the packaged model"
            )
        stored = threshold_of(bundle.metadata)
        threshold = reject_threshold if reject_threshold is not None else stored
        return cls(
            bundle.classifier, bundle.metadata, bundle.device, rejector=bundle.rejector,
            reject_threshold=threshold if reject else None,
            doubt_weight=doubt_weight_of(bundle.metadata),
        )  # fmt: skip

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
        """`from_bundle(load_bundle(path, ...))`: a `.safetensors` file or a run folder; None =
        the newest classifier's run under ./runs, else the packaged model. `runtime="onnx"`
        exports the model to ONNX in memory and runs it with ONNX Runtime."""
        from digitlab.bundle import load_bundle

        bundle = load_bundle(path, device=device, runtime=runtime, task="digits")
        return cls.from_bundle(bundle, reject=reject, reject_threshold=reject_threshold)

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

    @torch.inference_mode()
    def predict_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 10) calibrated probabilities on the CPU for float digits (N, 1, 28, 28) as
        predict_tensor, without the "not a digit" check."""
        return self.model(pixels.to(self.device)).float().exp().cpu()


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


def predict_stream(
    predictor: Predictor,
    paths: Iterable[Path],
    *,
    workers: int = 1,
    batch_size: int = BATCH,
    keep_views: bool = False,
) -> Iterator[FileResult]:
    """Preprocess and predict `paths`, yielding one result per file in input order.

    `workers` = 1 preprocesses in this process; more starts that many worker processes
    (`digitlab.workers`): decoding and cleaning an image (OpenCV, scipy) costs far more than
    the network's forward pass, so the workers preprocess and this process predicts.
    Unreadable files become results with `error` set. The 28×28 views the model saw are
    dropped once predicted unless `keep_views`."""
    finish = functools.partial(_predict, predictor, keep_views=keep_views)
    return stream(paths, preprocess_chunk, finish, workers=workers, batch_size=batch_size)


def predict_paths(
    predictor: Predictor, paths: Sequence[Path], *, workers: int = 1, batch_size: int = BATCH
) -> list[FileResult]:
    """`predict_stream` collected, with the views the model saw."""
    return list(
        predict_stream(predictor, paths, workers=workers, batch_size=batch_size, keep_views=True)
    )


@dataclass(frozen=True)
class _CleanedFile:
    """One file as `preprocess_path` left it. The view is an array: a tensor would cross the
    process boundary as shared memory of its own, its file descriptor handed over through a
    socket (measured: 0.24 ms of the reading process's CPU per image, against 0.014 ms for
    an array, and about a millisecond of waiting)."""

    path: Path
    view: np.ndarray | None = None  # (1, 28, 28) float32
    reason: str | None = None  # read, but no digit in it, and why
    error: str | None = None  # the file could not be read

    def result(self) -> FileResult:
        view = torch.from_numpy(self.view) if self.view is not None else None
        return FileResult(self.path, view=view, reason=self.reason, error=self.error)


def preprocess_chunk(paths: Sequence[Path]) -> list[_CleanedFile]:
    """Open and preprocess each file (in a worker process or here)."""
    cleaned = []
    for path in paths:
        try:
            view, reason = preprocess_to_array(path)
        except DigitlabError as err:
            cleaned.append(_CleanedFile(path, error=str(err)))
            continue
        cleaned.append(_CleanedFile(path, view, reason))
    return cleaned


def preprocess_to_array(source: Path | bytes) -> tuple[np.ndarray | None, str | None]:
    """`preprocess_path` with the (1, 28, 28) view as an array, to hand from a worker process
    to its parent (see `_CleanedFile`), or the reason there is no digit."""
    from digitlab.preprocess import preprocess_path

    preprocessed = preprocess_path(source)
    view = preprocessed.pixels.numpy() if preprocessed.pixels is not None else None
    return view, preprocessed.reason


def _predict(
    predictor: Predictor, cleaned: list[_CleanedFile], keep_views: bool
) -> list[FileResult]:
    results = [c.result() for c in cleaned]
    views = [r.view for r in results if r.view is not None]
    if not views:
        return results
    predictions = iter(predictor.predict_tensor(torch.stack(views)))
    return [
        replace(r, prediction=next(predictions), view=r.view if keep_views else None)
        if r.view is not None
        else r
        for r in results
    ]


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
