"""'Not a digit': a small "exactly one whole digit?" network stored beside the classifier.

A digit classifier answers one of ten digits for anything, and its confidence on a star or a
letter is often as high as on a real digit: a maximum-probability threshold that keeps 99.5% of
MNIST's digits lets most doodles and letters through (bench/trust.py measures it). So a separate
detector scores every image. It is trained on

- one whole digit: MNIST training digits (plain, re-boxed the way a photo's ink is, with a
  thin stub of a touching neighbour as a good cut leaves one, and with thicker, thinner or
  hard-edged canvas-like strokes) and digits drawn from fonts;
- anything else: generated doodles and letters, and — made from those training digits — two
  digits close, touching or overlapping (or one and part of the next) and slices of one
  (`digitlab.synth.nondigits`).

The second kind makes it a judge of how a number is cut, too: `digitlab read` multiplies each
candidate part's score by the detector's `digitness`, so two touching digits kept whole or a
third of a 0 lose to the right cut. It is a two-convolution network of 80,417 parameters
(about the cost of the packaged classifier per image). It does not depend on the classifier,
so it is trained once (`tools/make_rejector.py`, minutes), shipped as
`pretrained/rejector.safetensors`, and copied with its threshold into every checkpoint at the
end of training: no recipe's training changes (the seed's stays the notebook's, bit for bit).
The threshold is set on the 5,000 training digits every recipe holds out, which the detector
never trains on, at FALSE_REJECTION_RATE; `--reject-threshold` replaces it, `--no-reject`
turns the check off.
"""

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitlab.augment import AugmentConfig, random_affine
from digitlab.data import to_float
from digitlab.errors import CheckpointError

PACKAGED = Path(__file__).parent / "pretrained" / "rejector.safetensors"
REJECTOR_PREFIX = "rejector."  # its tensors' names in model.safetensors
NOT_A_DIGIT = "not a digit"
FALSE_REJECTION_RATE = 0.004  # of held-out training digits, where the threshold is set
# What the detector trains on (a run with --subset gets proportionally fewer of each).
# One whole digit:
TRAIN_DIGITS = 20_000  # MNIST training digits, a random sample of the run's
REBOXED_DIGITS = 4_000  # of those, also passed through `ink_to_mnist` like a photo's ink
STUBBED_DIGITS = 3_000  # digits with a thin stub of a touching neighbour, as a good cut leaves
FONT_DIGITS = 3_000
# Not one whole digit:
NONDIGITS = 32_000  # doodles and letters
DIGIT_PAIRS = 9_000  # two digits close, touching or overlapping, or a digit and part of one
DIGIT_SLICES = 5_000  # the left or right part of a digit
# How fast `digitness` falls from 1 to 0 around the threshold, in score (logit) units. Set by
# reading 60 numbers per kind (tests/number_images.py, seed 7, not the benchmark's): 0.5 read
# close numbers 90% right, 1.0 88%, 2.0 worse still; spaced and touching the same.
DIGITNESS_SCALE = 0.5
# The score that answers "not a digit" adds the classifier's own doubt, -log of its top
# calibrated probability, times this weight to the detector's score: a mark the detector lets
# through but no digit fits (a scribble, a cursive letter) is caught by the classifier's
# doubt. Chosen with the packaged model on 600 generated non-digits of tests/non_digits.py's
# seed 7 (the tests', not the benchmark's): at the same held-out false-rejection rate, weight
# 0 rejected 89.2%, 2 89.8%, 4 91.2%, 6 91.8%, while wild photo digits rejected went from
# 0.4% to 0.5%. The threshold for it is set per run (`run_rejection`); without held-out
# digits the detector answers alone (weight 0, its own threshold).
DOUBT_WEIGHT = 4.0
EPOCHS = 8
BATCH_SIZE = 256
LR = 3e-3
AUGMENT = AugmentConfig(rotation=15.0, scale=0.15, translate=0.08, shear=10.0, elastic=1.0)
METHOD = (
    "separate CNN (rejector.* tensors) judging 'exactly one whole digit', trained on MNIST "
    "training digits against generated doodles and letters, two digits side by side and "
    "slices of one; a higher score is less like one digit"
)


class Rejector(nn.Module):
    """(N, 1, 28, 28) in [0, 1] → (N,) score: how much it is NOT one digit (a logit)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (N, 16, 14, 14)
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 32, 7, 7)
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 7 * 7, 48), nn.ReLU(), nn.Linear(48, 1)
        )  # fmt: skip

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixels)).squeeze(1)


def fit_rejector(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    held_out_images: torch.Tensor,
    *,
    seed: int,
    fonts: Sequence[str | Path] = (),
) -> tuple[Rejector, dict[str, Any]]:
    """Train the detector on `train_images` (uint8 digits, their labels) and generated
    non-digits; set its threshold on `held_out_images`. Returns it and its metadata."""
    images, targets = training_set(train_images, train_labels, seed=seed, fonts=fonts)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG as it was
        torch.manual_seed(seed)
        rejector = Rejector()
    _train(rejector, images, targets, generator)
    scores = rejection_scores(rejector, to_float(held_out_images))
    threshold = float(torch.quantile(scores, 1 - FALSE_REJECTION_RATE))
    return rejector.eval(), {
        "threshold": threshold,
        "false_rejection_rate": FALSE_REJECTION_RATE,
        "held_out_digits": len(held_out_images),
        "method": METHOD,
        "training_images": {
            "digits": int((targets == 0).sum()),
            "not_one_digit": int((targets == 1).sum()),
        },
    }


def training_set(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    *,
    seed: int,
    fonts: Sequence[str | Path] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """The detector's images (N, 1, 28, 28) and targets (N,): 0 for one whole digit, 1 for
    anything else. Drawn from `seed` alone."""
    from digitlab.synth.nondigits import (
        digit_pairs,
        digit_slices,
        digits_with_stub,
        font_digits,
        generate_nondigits,
    )

    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    pick = torch.randperm(len(train_images), generator=generator)[:TRAIN_DIGITS]
    # Small runs (--subset) get a proportionally small set.
    share = len(pick) / TRAIN_DIGITS

    def scaled(count: int) -> int:
        return max(1, round(count * share))

    digits = to_float(train_images[pick])
    plain = digits[:, 0].numpy()
    labels = train_labels[pick].numpy()
    positives = [
        plain,
        _rebox(plain[: scaled(REBOXED_DIGITS)]),
        digits_with_stub(plain, scaled(STUBBED_DIGITS), rng),
        font_digits(scaled(FONT_DIGITS), rng, fonts),
    ]
    negatives = [
        generate_nondigits(scaled(NONDIGITS), rng, fonts),
        digit_pairs(plain, scaled(DIGIT_PAIRS), rng),
        digit_slices(plain, labels, scaled(DIGIT_SLICES), rng),
    ]
    good, bad = (
        torch.from_numpy(np.concatenate(part)).unsqueeze(1) for part in (positives, negatives)
    )
    return torch.cat([good, bad]), torch.cat([torch.zeros(len(good)), torch.ones(len(bad))])


def _train(
    rejector: Rejector, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
) -> None:
    optimizer = torch.optim.Adam(rejector.parameters(), lr=LR)
    steps = EPOCHS * math.ceil(len(images) / BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=steps)
    # Non-digits are fewer than digits: weigh them up so both count the same.
    weight = float((targets == 0).sum() / (targets == 1).sum().clamp(min=1))
    rejector.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            x = _vary_strokes(random_affine(images[batch], AUGMENT, generator), generator)
            loss = F.binary_cross_entropy_with_logits(
                rejector(x), targets[batch], pos_weight=torch.tensor(weight)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    rejector.eval()


def _vary_strokes(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Thicker (dilated), thinner (eroded), hard-edged (canvas-like) or blurred (out of focus,
    strokes brought back to full strength as `preprocess` does) strokes, a fifth each, so that
    stroke width and softness say nothing about one digit or not."""
    choice = torch.randint(0, 5, (len(x), 1, 1, 1), generator=generator)
    thicker = F.max_pool2d(x, 3, stride=1, padding=1)
    thinner = -F.max_pool2d(-x, 2, stride=1, padding=1)[..., :28, :28]
    hard = (x > 0.4).float()
    blurred = F.conv2d(x, _BLUR_KERNEL, padding=_BLUR_KERNEL.shape[-1] // 2)
    blurred = blurred / blurred.amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)
    varied = torch.stack([x, thicker, thinner, hard, blurred])  # (5, N, 1, 28, 28)
    return varied.gather(0, choice.expand_as(x).unsqueeze(0)).squeeze(0)


def _gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    line = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = line[:, None] * line[None, :]
    return (kernel / kernel.sum()).view(1, 1, 2 * radius + 1, 2 * radius + 1)


_BLUR_KERNEL = _gaussian_kernel(sigma=1.0, radius=2)  # about the blur of the `blur` read kind


def _rebox(digits: np.ndarray) -> np.ndarray:
    from digitlab.preprocess import ink_to_mnist

    return np.stack([ink_to_mnist(d) if d.max() > 0 else d for d in digits])


@torch.inference_mode()
def rejection_scores(
    rejector: nn.Module, pixels: torch.Tensor, batch_size: int = 2000
) -> torch.Tensor:
    """Scores (N,) of float MNIST-format pixels (N, 1, 28, 28); above the threshold = reject."""
    rejector.eval()
    return (
        torch.cat(
            [
                rejector(pixels[i : i + batch_size]).float().cpu()
                for i in range(0, len(pixels), batch_size)
            ]
        )
        if len(pixels)
        else torch.zeros(0)
    )


def with_doubt(
    detector_scores: torch.Tensor, probabilities: torch.Tensor, doubt_weight: float
) -> torch.Tensor:
    """The "not a digit" score: the detector's plus `doubt_weight` × the classifier's doubt,
    -log of its top probability (probabilities (N, 10), calibrated)."""
    if doubt_weight == 0.0:
        return detector_scores
    doubt = -probabilities.max(dim=1).values.clamp_min(1e-12).log()
    return detector_scores + doubt_weight * doubt.to(detector_scores)


def run_rejection(
    rejector: nn.Module,
    detector_metadata: dict[str, Any],
    held_out_images: torch.Tensor,
    held_out_probabilities: torch.Tensor,
) -> dict[str, Any]:
    """A run's "not a digit" metadata: the detector's, with the threshold of the score
    `with_doubt` (DOUBT_WEIGHT) set on the run's held-out training digits (uint8) and its
    classifier's calibrated probabilities on them, at FALSE_REJECTION_RATE. The detector's own
    threshold is kept as `detector_threshold`: `digitlab read` weighs its cuts by it."""
    scores = with_doubt(
        rejection_scores(rejector, to_float(held_out_images)), held_out_probabilities, DOUBT_WEIGHT
    )
    return detector_metadata | {
        "threshold": float(torch.quantile(scores, 1 - FALSE_REJECTION_RATE)),
        "method": f"{detector_metadata['method']}; the answer's score adds {DOUBT_WEIGHT:g} × "
        "the classifier's doubt (-log of its top calibrated probability)",
        "doubt_weight": DOUBT_WEIGHT,
        "detector_threshold": detector_metadata["threshold"],
        "held_out_digits": len(held_out_images),
        "threshold_set_on": "this run's held-out training digits, with its classifier's doubt",
    }


def doubt_weight_of(metadata: dict[str, Any]) -> float:
    """The weight of the classifier's doubt in the stored threshold's score (0: none)."""
    return float((metadata.get("rejection") or {}).get("doubt_weight") or 0.0)


def detector_threshold_of(metadata: dict[str, Any]) -> float | None:
    """The threshold of the detector's score alone (older checkpoints: the only one)."""
    rejection = metadata.get("rejection") or {}
    found = rejection.get("detector_threshold", rejection.get("threshold"))
    return float(found) if found is not None else None


def digitness(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Scores → how much each image looks like exactly one whole digit, 0-1: a half at the
    threshold, falling off over DIGITNESS_SCALE score units either side."""
    return torch.sigmoid((threshold - scores) / DIGITNESS_SCALE)


def read_rejector(checkpoint: Path) -> Rejector | None:
    """The detector stored in a checkpoint, or None if it has none."""
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as f:
        own = {
            name[len(REJECTOR_PREFIX) :]: f.get_tensor(name)
            for name in f.keys()  # noqa: SIM118 (not a dict)
            if name.startswith(REJECTOR_PREFIX)
        }
    if not own:
        return None
    rejector = Rejector()
    try:
        rejector.load_state_dict(own)
    except RuntimeError as err:
        raise CheckpointError(f"{checkpoint} has a damaged not-a-digit detector: {err}") from err
    return rejector.eval()


def save_packaged(rejector: Rejector, metadata: dict[str, Any], path: Path = PACKAGED) -> None:
    from safetensors.torch import save_file

    from digitlab.checkpoint import METADATA_KEY, atomic_path

    with atomic_path(path) as tmp:
        save_file(rejector.state_dict(), str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})


def load_packaged(path: Path = PACKAGED) -> tuple[Rejector, dict[str, Any]] | None:
    """The detector shipped with digitlab and its metadata (threshold, how it was made)."""
    from safetensors import safe_open

    from digitlab.checkpoint import METADATA_KEY

    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        metadata = json.loads((f.metadata() or {})[METADATA_KEY])
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (not a dict)
    rejector = Rejector()
    rejector.load_state_dict(tensors)
    return rejector.eval(), metadata


def rejector_tensors(rejector: Rejector) -> dict[str, torch.Tensor]:
    return {REJECTOR_PREFIX + k: v for k, v in rejector.state_dict().items()}


def embed_rejector(checkpoint: Path, rejector: Rejector, metadata: dict[str, Any]) -> None:
    """Put `rejector` and its metadata (threshold, method) into an existing checkpoint in place
    of the detector it has, as training does; the classifier stays exactly as it was."""
    from digitlab.checkpoint import embed_tensors

    embed_tensors(checkpoint, REJECTOR_PREFIX, rejector.state_dict(), "rejection", metadata)


def threshold_of(metadata: dict[str, Any]) -> float | None:
    found = (metadata.get("rejection") or {}).get("threshold")
    return float(found) if found is not None else None


def missing_rejection(metadata: dict[str, Any]) -> str | None:
    """Why a checkpoint cannot say "not a digit" (None when it can)."""
    if threshold_of(metadata) is not None:
        return None
    rejection = metadata.get("rejection")
    if rejection:
        return str(rejection["reason"])
    return OLD_CHECKPOINT


OLD_CHECKPOINT = (
    "no 'not a digit' detector: this checkpoint was written before digitlab had one; "
    "retrain it to get one"
)
REPORT_NONDIGITS = 1_000  # generated non-digits scored for a run's report
REPORT_SEED = 9_999  # their seed: not one a run trains its detector with (runs use 0-41)
TPR_FOR_FPR = 0.95  # "FPR at 95% TPR": non-digits let through when 95% of digits are kept


def rejection_summary(
    digit_scores: torch.Tensor, nondigit_scores: torch.Tensor, threshold: float | None
) -> dict[str, Any]:
    """How well scores separate digits from non-digits, and what `threshold` rejects.

    AUROC: the chance a random non-digit scores above a random digit. FPR at 95% TPR: the
    share of non-digits accepted at the score that accepts 95% of the digits.
    """
    from torchmetrics.functional.classification import binary_auroc

    scores = torch.cat([digit_scores, nondigit_scores]).float()
    targets = torch.cat([torch.zeros(len(digit_scores)), torch.ones(len(nondigit_scores))]).long()
    keep_95 = float(torch.quantile(digit_scores.float(), TPR_FOR_FPR))
    summary: dict[str, Any] = {
        "auroc": float(binary_auroc(scores, targets)),
        "fpr_at_95_tpr": float((nondigit_scores <= keep_95).float().mean()),
        "threshold": threshold,
        "digits": len(digit_scores),
        "nondigits": len(nondigit_scores),
    }
    if threshold is not None:
        summary["digits_rejected"] = float((digit_scores > threshold).float().mean())
        summary["nondigits_rejected"] = float((nondigit_scores > threshold).float().mean())
    return summary


def rejection_report(
    checkpoint: Path,
    metadata: dict[str, Any],
    test_images: torch.Tensor,
    test_probabilities: torch.Tensor,
    classify: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, Any] | None:
    """The "not a digit" score's figures on MNIST test digits (uint8, with the classifier's
    calibrated probabilities of them) and REPORT_NONDIGITS generated non-digits (from the
    training generator, with a seed no run trains on), which `classify` turns into calibrated
    probabilities (N, 10); None without a detector."""
    from digitlab.synth.nondigits import generate_nondigits

    rejector = read_rejector(checkpoint)
    if rejector is None:
        return None
    nondigits = torch.from_numpy(
        generate_nondigits(REPORT_NONDIGITS, np.random.default_rng(REPORT_SEED))
    ).unsqueeze(1)
    weight = doubt_weight_of(metadata)
    digit_scores = with_doubt(
        rejection_scores(rejector, to_float(test_images)), test_probabilities, weight
    )
    nondigit_scores = with_doubt(rejection_scores(rejector, nondigits), classify(nondigits), weight)
    return rejection_summary(digit_scores, nondigit_scores, threshold_of(metadata)) | {
        "nondigit_source": "generated doodles and letters (digitlab.synth.nondigits, seed 9999)"
    }
