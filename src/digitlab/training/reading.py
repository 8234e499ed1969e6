"""The number reader's side of training: generated batches, the CTC loss, whole-string scores.

A reader (`models.task_of(name) == "numbers"`) trains on numbers generated on the fly
(`synth.reader_data`): sample k of a run is drawn from (seed, k) alone, so the data needs no
state to resume, every rank of a torchrun job draws its share of each global batch, and any
number of loader processes make the same stream. An epoch is `config.epoch_size` samples.

Each epoch is scored on
- validation: VAL_SAMPLES generated line images made of the held-out training digits (never
  trained on), the string right or not, and their CTC loss;
- test: TEST_PICTURES pictures of MNIST **test** digits and held-out fonts
  (`synth.pictures`), read end to end as `digitlab read` reads them; the whole text right or not.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from digitlab import distributed
from digitlab.reader import FRAME_WIDTH, batch_lines, greedy_decode
from digitlab.synth.reader_data import ReaderSource, sample
from digitlab.training.loop import Scores
from digitlab.training.setup import mixed_precision

if TYPE_CHECKING:
    from digitlab.config import TrainConfig
    from digitlab.data import MNIST

VAL_SAMPLES = 1000
VAL_SEED = 1_000_003  # not a training seed: runs use small seeds
TEST_KINDS = ("spaced", "close", "touching", "fonts", "long", "two_lines", "comb", "none")
TEST_PER_KIND = 40
TEST_SEED = 7  # the tests' pictures; the benchmark's are seed 2026


@dataclass(frozen=True)
class LineBatch:
    """This process's share of one global batch of line images."""

    images: torch.Tensor  # (n, 1, 32, W)
    widths: torch.Tensor  # (n,) each image's padded width
    texts: list[str]
    size: int  # samples in the global batch
    rows: slice  # which of them these are


class GeneratedLines(IterableDataset):
    """Global batches `first_step`, `first_step + 1`, ... of a run's stream, this rank's rows of
    each. Loader worker w of n makes steps first_step + w, + w + n, ...; a DataLoader takes
    them from its workers in turn, so they arrive in order."""

    def __init__(
        self, source: ReaderSource, seed: int, batch_size: int, first_step: int, rows: slice
    ) -> None:
        self.source, self.seed, self.batch_size = source, seed, batch_size
        self.first_step, self.rows = first_step, rows

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        step = self.first_step + worker
        while True:
            first = step * self.batch_size
            made = [
                sample(self.source, self.seed, first + k)
                for k in range(self.rows.start, self.rows.stop)
            ]
            images, widths = batch_lines([torch.from_numpy(image) for image, _ in made])
            yield images, widths, [text for _, text in made]
            step += workers


def line_batches(
    source: ReaderSource,
    *,
    seed: int,
    batch_size: int,
    first_step: int,
    rows: slice,
    loaders: int,
) -> Iterator[LineBatch]:
    """The stream from global step `first_step` on (endless; the caller stops it), made by
    `loaders` worker processes (0: in this one)."""
    dataset = GeneratedLines(source, seed, batch_size, first_step, rows)
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=loaders,
        prefetch_factor=4 if loaders else None,
        persistent_workers=False,
    )
    for images, widths, texts in loader:
        yield LineBatch(images, widths, texts, batch_size, rows)


def ctc_loss_sum(log_probs: torch.Tensor, widths: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """The summed negative log-likelihood of the true strings: log_probs (N, T, 11)."""
    targets = torch.tensor([int(c) + 1 for text in texts for c in text], dtype=torch.long)
    lengths = torch.tensor([len(text) for text in texts], dtype=torch.long)
    return F.ctc_loss(
        log_probs.transpose(0, 1).float(),
        targets,
        (widths // FRAME_WIDTH).to(torch.long),
        lengths,
        reduction="sum",
        zero_infinity=True,  # a string longer than its frames (never made here) adds nothing
    )


def strings_right(log_probs: torch.Tensor, texts: list[str]) -> int:
    """How many of the greedy decodings equal their true string."""
    decoded = ["".join(str(d.digit) for d in greedy_decode(lp)) for lp in log_probs.detach()]
    return sum(a == b for a, b in zip(decoded, texts, strict=True))


@dataclass(frozen=True)
class LineSet:
    """Fixed line images with their true strings (validation)."""

    images: list[np.ndarray]
    texts: list[str]

    @classmethod
    def generated(cls, source: ReaderSource, count: int, seed: int) -> "LineSet":
        made = [sample(source, seed, index) for index in range(count)]
        return cls([image for image, _ in made], [text for _, text in made])


@torch.inference_mode()
def score_lines(
    model: nn.Module, lines: LineSet, device: torch.device, batch_size: int = 256
) -> tuple[float, float]:
    """Mean CTC loss per line and the share of strings read right."""
    model.eval()
    loss, right = 0.0, 0
    for start in range(0, len(lines.texts), batch_size):
        chunk = slice(start, start + batch_size)
        images, widths = batch_lines([torch.from_numpy(i) for i in lines.images[chunk]])
        log_probs = model(images.to(device), widths.to(device)).float().cpu()
        loss += float(ctc_loss_sum(log_probs, widths, lines.texts[chunk]))
        right += strings_right(log_probs, lines.texts[chunk])
    count = max(1, len(lines.texts))
    return loss / count, right / count


class TestPictures:
    """TEST_PER_KIND pictures of each of TEST_KINDS from MNIST test digits and held-out fonts,
    their lines found once; each epoch only the reader runs on them."""

    def __init__(self, test_images: torch.Tensor, test_labels: torch.Tensor) -> None:
        from digitlab.read import FoundLines, find_lines
        from digitlab.synth.pictures import make_pictures

        self.found: list[Any] = []
        self.texts: list[str] = []
        lines: list[np.ndarray] = []
        line_texts: list[str] = []
        for kind in TEST_KINDS:
            for picture, text in make_pictures(
                test_images, test_labels, kind, TEST_PER_KIND, TEST_SEED
            ):
                found = find_lines(picture)
                self.found.append(found)
                self.texts.append(text)
                if text.isdigit() and isinstance(found, FoundLines) and len(found.numbers) == 1:
                    lines.append(found.numbers[0].pixels)
                    line_texts.append(text)
        self.lines = LineSet(lines, line_texts)

    def scores(self, model: nn.Module, device: torch.device) -> tuple[float, float]:
        """The CTC loss of the pictures holding one number, and the share of all pictures
        whose whole text `model` reads right, as `digitlab read` would (no temperature or
        threshold yet: those are fitted after training)."""
        from digitlab.read import NumberReader

        loss, _ = score_lines(model, self.lines, device)
        readings = NumberReader(model, device=device).read_found(self.found)
        right = sum((r.text or "") == t for r, t in zip(readings, self.texts, strict=True))
        model.train()
        return loss, right / max(1, len(self.texts))


# Refuse a number ("not a number") below the confidence that this share of the held-out
# numbers falls under: the budget is 1% of real numbers refused; half of it is spent
# here, the rest left for pictures harder than the generated ones.
FALSE_REFUSAL_RATE = 0.005


@torch.inference_mode()
def line_log_probs(model: nn.Module, lines: LineSet, device: torch.device) -> list[torch.Tensor]:
    """Each line image's (T, 11) log-probabilities, alone in its batch (as `read` decodes)."""
    from digitlab.read import NumberReader  # its batching by width is what reading does

    model.eval()
    reader = NumberReader(model, device=device)
    return reader.log_probs(lines.images)


def calibrate_reader(model: nn.Module, lines: LineSet, device: torch.device) -> dict[str, float]:
    """The temperature that makes the confidence of each answer honest on held-out numbers, the
    refusal threshold, and the expected calibration error before and after (whole strings:
    confidence of the decoded string against its being right).

    The temperature minimises the log-loss of "the decoded string is right" at the confidence
    `read` reports. (The CTC likelihood of the true strings does not work here: it is dominated
    by the few numbers the reader cannot align at all, and a short run's fit flattened every
    confidence towards 0.)"""
    from digitlab.calibrate import minimise_temperature
    from digitlab.reader import scale_log_probs, string_log_probability
    from digitlab.reading_report import string_ece

    log_probs = line_log_probs(model, lines, device)
    # Greedy decoding takes each frame's best class, which no temperature changes.
    decoded = [[d.digit for d in greedy_decode(lp)] for lp in log_probs]
    right = torch.tensor(
        ["".join(map(str, d)) == t for d, t in zip(decoded, lines.texts, strict=True)],
        dtype=torch.float64,
    )
    # One padded batch: a CTC call per temperature tried, not one per number.
    padded = torch.nn.utils.rnn.pad_sequence(list(log_probs), batch_first=True)
    frames = torch.tensor([len(lp) for lp in log_probs], dtype=torch.long)

    def confidences(temperature: float) -> torch.Tensor:
        scaled = scale_log_probs(padded, temperature)
        return string_log_probability(scaled, decoded, frames).double().exp()

    def log_loss(temperature: float) -> float:
        p = confidences(temperature).clamp(1e-9, 1 - 1e-9)
        return -float((right * p.log() + (1 - right) * (1 - p).log()).mean())

    temperature = minimise_temperature(log_loss)
    before, after = confidences(1.0).tolist(), confidences(temperature).tolist()
    numbers = [i for i, text in enumerate(lines.texts) if text]
    threshold = float(np.quantile([after[i] for i in numbers], FALSE_REFUSAL_RATE))
    return {
        "temperature": temperature,
        "threshold": threshold,
        "false_refusal_rate": FALSE_REFUSAL_RATE,
        "ece_uncalibrated": string_ece(list(zip(before, right.bool().tolist(), strict=True))),
        "ece": string_ece(list(zip(after, right.bool().tolist(), strict=True))),
        "fitted_on": len(lines.texts),
    }


CALIBRATION_SAMPLES = 2000
CALIBRATION_SEED = 1_000_033


def reader_calibration(
    config: "TrainConfig", mnist: "MNIST", model: nn.Module, device: torch.device
) -> dict[str, Any]:
    """A finished reader's metadata entry "reader": the temperature and the "not a number"
    threshold fitted on numbers made of the run's held-out training digits, or why none."""
    from digitlab.synth.reader_data import reader_sources

    entry: dict[str, Any] = {"model": config.model}
    if not config.validation:
        return entry | {
            "temperature": None,
            "threshold": None,
            "reason": "nothing was held out of training to calibrate on; train with "
            "--validation 5000",
        }
    _, held_out = reader_sources(
        mnist.train_images[: config.subset], mnist.train_labels[: config.subset], config.validation
    )
    lines = LineSet.generated(held_out, CALIBRATION_SAMPLES, CALIBRATION_SEED)
    return entry | calibrate_reader(model, lines, device)


class ReaderTask:
    """A number reader's run: batches from the generated stream, CTC, whole-string scores."""

    clip_norm = 5.0  # CTC's gradient spikes on a few hard samples early on

    def __init__(
        self,
        config: "TrainConfig",
        mnist: "MNIST",
        device: torch.device,
        session: distributed.Session,
    ) -> None:
        from digitlab.synth.reader_data import reader_sources

        self.config, self.mnist, self.device, self.session = config, mnist, device, session
        self.source, held_out = reader_sources(
            mnist.train_images[: config.subset], mnist.train_labels[: config.subset],
            config.validation,
        )  # fmt: skip
        self.steps_per_epoch = math.ceil(config.epoch_size / config.batch_size)
        self.epoch = 0
        self.val = LineSet.generated(held_out, VAL_SAMPLES, VAL_SEED) if config.validation else None
        self.tests: TestPictures | None = None  # made when first needed (rank 0 only)

    def begin_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def end_epoch(self) -> None:
        pass

    def batches(self, start_step: int) -> Iterator[LineBatch]:
        first = self.epoch * self.steps_per_epoch + start_step  # global step: the stream's place
        rows = distributed.share_of_batch(self.config.batch_size, self.session)
        return line_batches(
            self.source, seed=self.config.seed, batch_size=self.config.batch_size,
            first_step=first, rows=rows, loaders=loader_processes(self.config, self.session),
        )  # fmt: skip

    def losses(
        self, model: nn.Module, batch: LineBatch, distributed: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the loss to minimise: the global batch's mean per-number NLL, this process's
        summed NLL, its strings read right)."""
        images, widths = batch.images.to(self.device), batch.widths.to(self.device)
        with mixed_precision(self.device):
            log_probs = model(images, widths)
        log_probs = log_probs.float().cpu()  # CTC and decoding on the CPU (small, sequential)
        loss_sum = ctc_loss_sum(log_probs, batch.widths, batch.texts)
        correct = torch.tensor(strings_right(log_probs, batch.texts))
        scale = (self.session.world_size if distributed else 1) / batch.size
        return loss_sum * scale, loss_sum, correct

    def evaluate(self, model: nn.Module) -> Scores:
        if self.tests is None:
            self.tests = TestPictures(self.mnist.test_images, self.mnist.test_labels)
        test_loss, test_accuracy = self.tests.scores(model, self.device)
        if self.val is None:
            return Scores(test_loss, test_accuracy)
        val_loss, val_accuracy = score_lines(model, self.val, self.device)
        return Scores(test_loss, test_accuracy, val_loss, val_accuracy)

    def state_dict(self) -> dict[str, Any]:
        return {}  # sample k is drawn from (seed, k) alone: the place in the run is enough

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def loader_processes(config: "TrainConfig", session: distributed.Session) -> int:
    """Processes generating numbers: the config's, or every core this rank has beyond the
    one training (at least one, so that generating never waits on training)."""
    if config.loaders is not None:
        return config.loaders
    return max(1, distributed.threads_per_rank(session) - 1)
