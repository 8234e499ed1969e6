"""Probabilities that mean what they say: temperature scaling (Guo et al., 2017) and its scores.

A trained network is usually over-confident: of the digits it calls "99% sure", fewer than 99%
are right. Temperature scaling divides its log-probabilities by one number T (> 1 softens them)
and renormalises. T is fitted by minimising the negative log-likelihood on training images held
out from training (`TrainConfig.validation`) — never on the test set. Dividing by T > 0 keeps
the order of the ten scores, so the predicted digit, and the accuracy, do not change.

`calibrate_run` is called once at the end of training: it fits T on the run's held-out images,
trains the "not a digit" detector (`digitlab.reject`) and rewrites `model.safetensors` with
both in it. A run with nothing held out (the `seed` recipe, which trains on all 60,000 images
as the notebook did) gets neither; its metadata says why and how to get them.

The expected calibration error (ECE, 15 equal-width confidence bins) comes from torchmetrics,
imported only when a score is computed.
"""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from digitlab.checkpoint import load_model, read_model_file, save_model
from digitlab.data import MNIST, split_validation
from digitlab.evaluation import Evaluation, predict_log_probs
from digitlab.mnist_format import NUM_CLASSES

if TYPE_CHECKING:  # applying a temperature (`TemperatureScaled`) needs no training code
    from digitlab.config import TrainConfig

ECE_BINS = 15  # as in Guo et al.; the definition
NO_HOLDOUT = (
    "nothing was held out of training to fit it on (this recipe trains on every training "
    "image); train with --validation 5000 to get one"
)
NO_DETECTOR = (
    "no 'not a digit' detector: this digitlab has no src/digitlab/pretrained/rejector."
    "safetensors; make it with tools/make_rejector.py"
)
OLD_CHECKPOINT = "this checkpoint was written before digitlab calibrated its models"
# Bounds of the search for log T: T from e^-3 ≈ 0.05 to e^3 ≈ 20 covers every sane network.
LOG_TEMPERATURE_RANGE = (-3.0, 3.0)


@dataclass(frozen=True)
class CalibrationScores:
    """How well a model's confidence matches its accuracy, before and after temperature T."""

    temperature: float | None  # None: the model has none, "after" is the same as "before"
    ece: float  # after scaling, a fraction (0.01 = 1%)
    ece_uncalibrated: float
    nll: float  # mean negative log-likelihood after scaling
    nll_uncalibrated: float
    images: int  # how many labelled images these were measured on

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TemperatureScaled(nn.Module):
    """A model whose log-probabilities are divided by `temperature` and renormalised."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.temperature = temperature

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return scale_log_probs(self.model(pixels), self.temperature)


def scale_log_probs(log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(log p / T): the same as dividing the logits by T, since log p only differs
    from the logits by a per-image constant. Works for an ensemble's averaged probabilities."""
    if temperature == 1.0:
        return log_probs
    return F.log_softmax(log_probs / temperature, dim=1)


def fit_temperature(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the NLL of `log_probs / T` on these labelled images."""
    log_probs = log_probs.double()
    return minimise_temperature(lambda t: F.nll_loss(scale_log_probs(log_probs, t), labels).item())


def minimise_temperature(nll: Callable[[float], float]) -> float:
    """The T in LOG_TEMPERATURE_RANGE that minimises `nll(T)`, a held-out set's negative
    log-likelihood at temperature T.

    The NLL of a softmax is convex in 1/T, so a bounded one-dimensional search finds the
    minimum; golden section on log T needs no gradients and no learning rate. The sequence
    reader's string NLL (`digitlab.reader`) is fitted the same way.
    """
    low, high = LOG_TEMPERATURE_RANGE
    ratio = (5**0.5 - 1) / 2
    for _ in range(60):  # shrinks the bracket by 0.618^60 ≈ 3e-13
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if nll(math.exp(a)) < nll(math.exp(b)):
            high = b
        else:
            low = a
    return math.exp((low + high) / 2)


def expected_calibration_error(log_probs: torch.Tensor, labels: torch.Tensor) -> float:
    """ECE with 15 equal-width bins (top-label, L1), as a fraction."""
    from torchmetrics.classification import MulticlassCalibrationError

    metric = MulticlassCalibrationError(num_classes=NUM_CLASSES, n_bins=ECE_BINS, norm="l1")
    return float(metric(log_probs.exp().float(), labels))


def calibration_scores(
    log_probs: torch.Tensor, labels: torch.Tensor, temperature: float | None
) -> CalibrationScores:
    """ECE and NLL of raw log-probabilities and of the same divided by `temperature`."""
    scaled = scale_log_probs(log_probs, temperature or 1.0)
    return CalibrationScores(
        temperature=temperature,
        ece=expected_calibration_error(scaled, labels),
        ece_uncalibrated=expected_calibration_error(log_probs, labels),
        nll=F.nll_loss(scaled, labels).item(),
        nll_uncalibrated=F.nll_loss(log_probs, labels).item(),
        images=len(labels),
    )


def temperature_of(metadata: dict[str, Any]) -> float | None:
    """The checkpoint's fitted temperature, or None if it has none."""
    found = (metadata.get("calibration") or {}).get("temperature")
    return float(found) if found is not None else None


def missing_calibration(metadata: dict[str, Any]) -> str | None:
    """Why a checkpoint has no temperature (None when it has one)."""
    if temperature_of(metadata) is not None:
        return None
    calibration = metadata.get("calibration")
    return str(calibration["reason"]) if calibration else OLD_CHECKPOINT


def calibrate_run(
    config: "TrainConfig",
    mnist: MNIST,
    checkpoint: Path,
    model: nn.Module,
    device: torch.device,
    *,
    held_out_log_probs: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Fit the temperature on the run's held-out training images and store it, with the
    "not a digit" detector and its threshold, in `checkpoint` (`model`'s finished file).
    `held_out_log_probs`, `model`'s log-probabilities on those images when the caller has them
    (training scored them after its last epoch), spare evaluating them again.

    Returns the metadata written. A run with nothing held out gets no temperature, and its
    metadata says why.
    """
    from digitlab.reject import load_packaged, rejector_tensors, run_rejection

    _, metadata = read_model_file(checkpoint)
    _, (held_out, held_out_labels) = split_validation(
        mnist.train_images[: config.subset], mnist.train_labels[: config.subset], config.validation
    )
    calibrated = None
    if len(held_out):
        log_probs = held_out_log_probs
        if log_probs is None or len(log_probs) != len(held_out):
            log_probs = predict_log_probs(
                model, held_out, batch_size=config.eval_batch_size, device=device
            )
        temperature = fit_temperature(log_probs, held_out_labels)
        scores = calibration_scores(log_probs, held_out_labels, temperature)
        metadata["calibration"] = scores.to_dict() | {"fitted_on": "held-out training images"}
        calibrated = scale_log_probs(log_probs, temperature).exp()
    else:
        metadata["calibration"] = {"temperature": None, "reason": f"no temperature: {NO_HOLDOUT}"}
    packaged = load_packaged()
    if packaged is None:
        metadata["rejection"] = {"threshold": None, "reason": NO_DETECTOR}
        save_model(checkpoint, model, metadata)
        return metadata
    rejector, metadata["rejection"] = packaged  # without held-out digits: the detector alone
    if calibrated is not None:
        metadata["rejection"] = run_rejection(rejector, metadata["rejection"], held_out, calibrated)
    save_model(checkpoint, model, metadata, extra_tensors=rejector_tensors(rejector))
    return metadata


def reliability_bins(log_probs: torch.Tensor, labels: torch.Tensor) -> dict[str, list[float]]:
    """Per confidence bin (ECE_BINS equal widths): mean confidence, accuracy, share of images.

    What the reliability diagram draws; a bin with no images has confidence and accuracy NaN.
    """
    confidence, predicted = log_probs.exp().max(1)
    correct = (predicted == labels).double()
    bins = torch.clamp((confidence.double() * ECE_BINS).ceil().long() - 1, 0, ECE_BINS - 1)
    counts = torch.bincount(bins, minlength=ECE_BINS).double()
    sums = torch.zeros(ECE_BINS, dtype=torch.float64)
    mean_confidence = sums.index_add(0, bins, confidence.double()) / counts
    accuracy = sums.index_add(0, bins, correct) / counts
    return {
        "confidence": mean_confidence.tolist(),
        "accuracy": accuracy.tolist(),
        "share": (counts / max(1, len(labels))).tolist(),
    }


def _calibrated_classifier(
    model: nn.Module, temperature: float | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """float pixels → calibrated probabilities (N, 10), on the model's device."""
    scaled = TemperatureScaled(model, temperature or 1.0).eval()
    device = next(model.parameters()).device

    @torch.inference_mode()
    def classify(pixels: torch.Tensor) -> torch.Tensor:
        return scaled(pixels.to(device)).exp().float().cpu()

    return classify


def evaluate_checkpoint(
    checkpoint: Path,
    mnist: MNIST,
    *,
    device: torch.device | str = "cpu",
    model: nn.Module | None = None,
    test_log_probs: torch.Tensor | None = None,
) -> tuple[Evaluation, nn.Module, dict[str, Any]]:
    """`evaluate` on the test set, with calibration (ECE and NLL before and after the
    checkpoint's temperature) and "not a digit" figures. Accuracy and loss are the raw model's
    (a temperature cannot change the predicted digit); confidences are calibrated.

    `model`, the checkpoint's network already in memory, and `test_log_probs`, its
    log-probabilities on the test set, spare loading the one and computing the other (training
    has both when it ends)."""
    from dataclasses import replace

    from digitlab.evaluation import evaluate, evaluation_of
    from digitlab.reject import rejection_report

    if model is None:
        model, metadata = load_model(checkpoint, device)
    else:
        _, metadata = read_model_file(checkpoint)
    if test_log_probs is not None and len(test_log_probs) == len(mnist.test_labels):
        evaluation = evaluation_of(test_log_probs, mnist.test_labels)
    else:
        evaluation = evaluate(model, mnist.test_images, mnist.test_labels, device=device)
    assert evaluation.log_probs is not None  # evaluate always keeps them
    temperature = temperature_of(metadata)
    calibration = calibration_scores(evaluation.log_probs, mnist.test_labels, temperature)
    calibrated = scale_log_probs(evaluation.log_probs, temperature or 1.0)
    details: dict[str, Any] = {
        "reliability": reliability_bins(calibrated, mnist.test_labels),
        "reliability_uncalibrated": reliability_bins(evaluation.log_probs, mnist.test_labels),
    }
    missing = missing_calibration(metadata)
    if missing:
        details["missing"] = missing
    evaluation = replace(
        evaluation,
        confidences=calibrated.exp().max(1).values,
        calibration=calibration.to_dict() | details,
        rejection=rejection_report(
            checkpoint,
            metadata,
            mnist.test_images,
            calibrated.exp(),
            _calibrated_classifier(model, temperature),
        ),
    )
    return evaluation, model, metadata
