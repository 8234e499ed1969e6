"""How good a model is on labelled digits: accuracy, loss, per-class metrics, confusions."""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from digitlab.data import to_float
from digitlab.mnist_format import NUM_CLASSES

# Images per forward pass when scoring. Small enough for a batch's activations to stay in the
# CPU's caches and in memory malloc reuses: at 1000, vggbn's first activations (74 MB) were
# mapped and page-faulted afresh for every batch, and scoring 5,000 images took 1.9 s on one
# thread; at 128, 0.75 s (lenet 0.29 → 0.15 s, bncnn 0.15 → 0.10 s), the same log-probabilities
# bit for bit. On a GPU, still thousands of images a second. TrainConfig.eval_batch_size's
# default is the same number.
EVAL_BATCH_SIZE = 128


@torch.inference_mode()
def predict_log_probs(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Log-probabilities (N, 10) on the CPU for uint8 images (N, 28, 28), in eval mode."""
    was_training = model.training
    model.eval()
    outputs = [
        model(to_float(images[i : i + batch_size].to(device))).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(outputs)


def loss_and_accuracy(log_probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy over all samples and the fraction predicted right."""
    loss = F.nll_loss(log_probs, labels).item()
    accuracy = int((log_probs.argmax(1) == labels).sum()) / len(labels)
    return loss, accuracy


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    confusion_matrix: torch.Tensor  # (10, 10) int64: rows are true digits, columns predictions
    predictions: torch.Tensor  # (N,) predicted digits
    confidences: torch.Tensor  # (N,) probability of the predicted digit
    labels: torch.Tensor  # (N,) true digits
    log_probs: torch.Tensor | None = None  # (N, 10) as the model gave them
    calibration: dict[str, Any] | None = None  # digitlab.calibrate's scores on these images
    rejection: dict[str, Any] | None = None  # digitlab.reject's figures ("not a digit")

    @property
    def misclassified(self) -> list[int]:
        return torch.nonzero(self.predictions != self.labels).flatten().tolist()

    def per_class(self) -> list[dict[str, float | int]]:
        matrix = self.confusion_matrix.double()
        true_positives = matrix.diag()
        precision = true_positives / matrix.sum(0).clamp(min=1)
        recall = true_positives / matrix.sum(1).clamp(min=1)
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        support = self.confusion_matrix.sum(1)
        return [
            {
                "digit": d,
                "precision": precision[d].item(),
                "recall": recall[d].item(),
                "f1": f1[d].item(),
                "support": int(support[d]),
            }
            for d in range(NUM_CLASSES)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "per_class": self.per_class(),
            "confusion_matrix": self.confusion_matrix.tolist(),
            "misclassified": self.misclassified,
        } | {
            name: value
            for name, value in (("calibration", self.calibration), ("rejection", self.rejection))
            if value is not None
        }


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    pairs = labels * NUM_CLASSES + predictions
    counts = torch.bincount(pairs, minlength=NUM_CLASSES * NUM_CLASSES)
    return counts.reshape(NUM_CLASSES, NUM_CLASSES)


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    device: torch.device | str = "cpu",
) -> Evaluation:
    """Score `model` on uint8 `images` (N, 28, 28) with their `labels`: accuracy, mean loss,
    per-class metrics, the confusion matrix and the misclassified indices (see `Evaluation`)."""
    log_probs = predict_log_probs(model, images, batch_size=batch_size, device=device)
    return evaluation_of(log_probs, labels)


def evaluation_of(log_probs: torch.Tensor, labels: torch.Tensor) -> Evaluation:
    """`evaluate`'s figures from a model's log-probabilities (N, 10) on images with `labels`."""
    loss, accuracy = loss_and_accuracy(log_probs, labels)
    confidences, predictions = log_probs.exp().max(1)
    return Evaluation(
        accuracy=accuracy,
        loss=loss,
        confusion_matrix=confusion_matrix(labels, predictions),
        predictions=predictions,
        confidences=confidences,
        labels=labels,
        log_probs=log_probs,
    )
