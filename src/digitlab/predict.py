"""`Predictor`: a trained checkpoint turned into digits with probabilities."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digitlab.checkpoint import load_model
from digitlab.device import select_device


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

    def __init__(self, model: nn.Module, metadata: dict[str, Any], device: torch.device) -> None:
        self.model = model.eval()
        self.metadata = metadata
        self.device = device

    @classmethod
    def from_checkpoint(cls, path: Path, device: str = "auto") -> "Predictor":
        torch_device = select_device(device)
        model, metadata = load_model(path, torch_device)
        return cls(model, metadata, torch_device)

    @property
    def model_name(self) -> str:
        return str(self.metadata["model"])

    @torch.inference_mode()
    def predict_tensor(self, pixels: torch.Tensor) -> list[Prediction]:
        """Predict float digits (N, 1, 28, 28) in [0, 1], white ink on black (ToTensor format)."""
        probabilities = self.model(pixels.to(self.device)).float().exp().cpu()
        return [_to_prediction(p) for p in probabilities]


def _to_prediction(probabilities: torch.Tensor) -> Prediction:
    top = probabilities.topk(3)
    return Prediction(
        digit=int(top.indices[0]),
        probability=float(top.values[0]),
        probabilities=probabilities.tolist(),
        top3=[(int(d), float(p)) for p, d in zip(top.values, top.indices, strict=True)],
    )
