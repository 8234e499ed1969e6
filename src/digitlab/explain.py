"""Why the model chose its digit: Integrated Gradients heat maps over the 28×28 it saw.

For a digit in MNIST format, `explain_view` attributes the model's log-probability of its
answer, and of its runner-up, to each of the 784 input pixels with Integrated Gradients
(Sundararajan et al. 2017, through Captum). The baseline is an empty 28×28 (all 0: black, no
ink in MNIST format), so a map answers "which ink, added to an empty square, made the model
say 7 rather than 2". A pixel's value is signed: positive pixels raised the class's
log-probability, negative ones lowered it, and a map sums (up to the integral's
approximation error, `delta`) to log p(class | view) - log p(class | empty).

Why Integrated Gradients and not Occlusion: it gives one value per pixel (occlusion blurs by its
window), its maps add up to a number one can check (the completeness above), and it costs
`STEPS` forward and backward passes (occlusion needs one forward pass per window position,
~600 for a 4×4 window at stride 1). With an empty baseline, a pixel without ink gets exactly 0:
like every method that compares with an empty image, it shows what the ink did, not where
missing ink mattered.

Explanations need gradients, so they need the PyTorch model: a `Predictor` running ONNX Runtime
raises `ConfigError`. Every registry model and ensembles work (an ensemble's output is the log
of its averaged probability, explained as a whole). The maps are deterministic: the same view
and model on the same device and thread count give the same numbers, bit for bit (nothing is
sampled, and each view is explained in a batch of its own, whatever else is explained with it).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digitlab.errors import ConfigError
from digitlab.predict import FileResult, Prediction, Predictor, predict_paths

# Points on the path from the empty image to the view. Measured on 100 MNIST test digits with
# the default lenet: the maps' sum misses the change in log-probability by a median of 2.3%
# with 32 steps, 1.3% with 50 (Captum's default) at 1.4× the cost, 5.4% with 16.
STEPS = 32
BASELINE = 0.0  # the empty 28×28: black, no ink, in MNIST format (white ink on black)
# Pixels at least half as bright as a stroke's core count as ink in `positive_share_on_ink`.
# (Every pixel with any ink would make the share 1 by construction: off-ink pixels get 0.)
INK_LEVEL = 0.5
INSTALL_HINT = "pip install 'digitlab[explain]' (it adds captum)"


@dataclass(frozen=True)
class ClassMap:
    """One class's attribution over the 28×28 view."""

    digit: int
    probability: float
    map: torch.Tensor  # float32 (28, 28), signed, in units of log-probability
    delta: float  # sum(map) minus the true change in log-probability: the integral's error

    @property
    def total(self) -> float:
        """The map's sum: ≈ log p(digit | view) - log p(digit | empty image)."""
        return float(self.map.sum())

    def summary(self, view: torch.Tensor) -> dict[str, Any]:
        return {
            "digit": self.digit,
            "probability": self.probability,
            "total": self.total,
            "delta": self.delta,
            "positive_share_on_ink": positive_share_on_ink(self.map, view),
        }


@dataclass(frozen=True)
class Explanation:
    """The answer's map and the runner-up's, over the view the model saw."""

    view: torch.Tensor  # float32 (28, 28) in [0, 1], white ink on black
    prediction: Prediction
    answer: ClassMap
    runner_up: ClassMap

    def summary(self) -> dict[str, Any]:
        """Numbers without the maps (what `digitlab explain --json` prints)."""
        return {
            "digit": self.answer.digit,
            "probability": self.answer.probability,
            "runner_up": self.runner_up.digit,
            "runner_up_probability": self.runner_up.probability,
            "answer_map": self.answer.summary(self.view),
            "runner_up_map": self.runner_up.summary(self.view),
        }


def check_explainable(model: nn.Module) -> None:
    """ConfigError unless `model` is a PyTorch model and Captum is installed."""
    from digitlab.export import OnnxModel

    if isinstance(model, OnnxModel):
        raise ConfigError(
            "explanations need gradients, which ONNX Runtime does not give; "
            "use the torch runtime (drop --runtime onnx)"
        )
    _import_integrated_gradients()


def attribute(
    model: nn.Module, view: torch.Tensor, digits: Sequence[int], *, steps: int = STEPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated Gradients of log p(digit) for each of `digits`, over one view (1, 28, 28).

    Returns the maps (len(digits), 28, 28) and each map's convergence delta (len(digits),).
    """
    check_explainable(model)
    integrated_gradients = _import_integrated_gradients()
    device = next(model.parameters(), view).device  # where the weights are
    inputs = view.to(device, torch.float32).expand(len(digits), *view.shape).contiguous()
    with torch.enable_grad():  # callers may sit in torch.inference_mode or no_grad
        maps, deltas = integrated_gradients(model.eval()).attribute(
            inputs,
            baselines=BASELINE,
            target=list(digits),
            n_steps=steps,
            return_convergence_delta=True,
        )
    return maps[:, 0].detach().float().cpu(), deltas.detach().float().cpu()


def explain_view(predictor: Predictor, view: torch.Tensor) -> Explanation:
    """The answer's and the runner-up's maps for one view (1, 28, 28) in [0, 1]."""
    check_explainable(predictor.model)
    prediction = predictor.predict_tensor(view[None])[0]
    (answer, answer_p), (runner_up, runner_up_p) = prediction.top3[:2]
    maps, deltas = attribute(predictor.model, view, [answer, runner_up])
    return Explanation(
        view=view[0].detach().float().cpu(),
        prediction=prediction,
        answer=ClassMap(answer, answer_p, maps[0], float(deltas[0])),
        runner_up=ClassMap(runner_up, runner_up_p, maps[1], float(deltas[1])),
    )


@dataclass(frozen=True)
class FileExplanation:
    """What one image file gave: an explanation, or the `FileResult` saying why there is none."""

    result: FileResult
    explanation: Explanation | None = None

    @property
    def path(self) -> Path:
        return self.result.path


def explain_paths(predictor: Predictor, paths: Sequence[Path]) -> list[FileExplanation]:
    """Read and preprocess image files as `predict_paths` does, and explain each digit found."""
    check_explainable(predictor.model)
    explained = []
    for result in predict_paths(predictor, paths):
        explanation = explain_view(predictor, result.view) if result.view is not None else None
        explained.append(FileExplanation(result, explanation))
    return explained


def positive_share_on_ink(attribution: torch.Tensor, view: torch.Tensor) -> float:
    """The fraction of a map's positive attribution on pixels at least INK_LEVEL bright."""
    positive = attribution.clamp(min=0)
    total = float(positive.sum())
    if total == 0:
        return 0.0
    return float(positive[view.reshape(positive.shape) >= INK_LEVEL].sum()) / total


def _import_integrated_gradients() -> Any:
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        raise ConfigError(f"explanations need the captum package: {INSTALL_HINT}") from None
    return IntegratedGradients
