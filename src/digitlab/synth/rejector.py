"""Training the "not a digit" detector (`digitlab.reject.Rejector`): its training set, its
loop and writing it into files. Only `tools/make_rejector.py`, `scripts/make_pretrained.py` and
the tests import this; serving, predicting and reading use `digitlab.reject` alone.

The detector is trained on

- one whole digit: MNIST training digits (plain, re-boxed the way a photo's ink is, with a
  thin stub of a touching neighbour as a good cut leaves one, and with thicker, thinner or
  hard-edged canvas-like strokes) and digits drawn from fonts;
- anything else: generated doodles and letters, and — made from those training digits — two
  digits close, touching or overlapping (or one and part of the next) and slices of one
  (`digitlab.synth.nondigits`).

Its threshold is set on the 5,000 training digits every recipe holds out, which it never
trains on, at `reject.REJECTION.false_rejection_rate`.
"""

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from digitlab.augment import AugmentConfig, random_affine
from digitlab.data import to_float
from digitlab.reject import (
    PACKAGED,
    REJECTION,
    REJECTOR_PREFIX,
    Rejector,
    rejection_scores,
)

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
EPOCHS = 8
BATCH_SIZE = 256
LR = 3e-3
AUGMENT = AugmentConfig(rotation=15.0, scale=0.15, translate=0.08, shear=10.0, elastic=1.0)
METHOD = (
    "separate CNN (rejector.* tensors) judging 'exactly one whole digit', trained on MNIST "
    "training digits against generated doodles and letters, two digits side by side and "
    "slices of one; a higher score is less like one digit"
)


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
    threshold = float(torch.quantile(scores, 1 - REJECTION.false_rejection_rate))
    return rejector.eval(), {
        "threshold": threshold,
        "false_rejection_rate": REJECTION.false_rejection_rate,
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


def save_packaged(rejector: Rejector, metadata: dict[str, Any], path: Path = PACKAGED) -> None:
    """Write the detector to `path` (the packaged `pretrained/rejector.safetensors`)."""
    import json

    from safetensors.torch import save_file

    from digitlab.checkpoint import METADATA_KEY, atomic_path

    with atomic_path(path) as tmp:
        save_file(rejector.state_dict(), str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})


def embed_rejector(checkpoint: Path, rejector: Rejector, metadata: dict[str, Any]) -> None:
    """Put `rejector` and its metadata (threshold, method) into an existing checkpoint in place
    of the detector it has, as training does; the classifier stays exactly as it was."""
    from digitlab.checkpoint import embed_tensors

    embed_tensors(checkpoint, REJECTOR_PREFIX, rejector.state_dict(), "rejection", metadata)
