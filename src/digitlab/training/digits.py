"""A digit classifier's side of training: MNIST's images in batches, the cross-entropy, scores.

Each epoch walks the training images in an order drawn from its own generator (or in file
order, as the seed notebook did), with random affine augmentation drawn from another; both
generators are saved with the run, so a resumed run draws what the uninterrupted one would.
Under torchrun every rank walks the same global order and takes its share of each batch.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from digitlab import distributed
from digitlab.augment import AugmentConfig, random_affine
from digitlab.config import TrainConfig
from digitlab.data import MNIST, iterate_batches, split_validation, to_float
from digitlab.evaluation import loss_and_accuracy, predict_log_probs
from digitlab.training.loop import Scores
from digitlab.training.setup import mixed_precision


@dataclass(frozen=True)
class DigitBatch:
    """This process's images of one global batch."""

    images: torch.Tensor  # (n, 1, 28, 28) float
    labels: torch.Tensor  # (n,)
    size: int  # images in the global batch (n when training alone)
    rows: slice  # which rows of the global batch these are


class DigitTask:
    clip_norm = None

    def __init__(
        self,
        config: TrainConfig,
        mnist: MNIST,
        device: torch.device,
        session: distributed.Session,
    ) -> None:
        self.config, self.mnist, self.device, self.session = config, mnist, device, session
        (train_images, train_labels), (self.val_images, self.val_labels) = split_validation(
            mnist.train_images[: config.subset],
            mnist.train_labels[: config.subset],
            config.validation,
        )
        self.train_images, self.train_labels = train_images.to(device), train_labels.to(device)
        self.steps_per_epoch = math.ceil(len(train_images) / config.batch_size)  # last may be short
        self.order_rng = torch.Generator().manual_seed(config.seed)  # each epoch's order
        self.order_state = self.order_rng.get_state()  # before this epoch's draw
        self.augment = _augment_config(config)
        self.augment_rng = torch.Generator().manual_seed(config.seed + 1)
        self.order = torch.arange(0)

    def begin_epoch(self, epoch: int) -> None:
        self.order_state = self.order_rng.get_state()
        n = len(self.train_images)
        shuffled = torch.randperm(n, generator=self.order_rng) if self.config.shuffle else None
        self.order = (shuffled if shuffled is not None else torch.arange(n)).to(self.device)

    def end_epoch(self) -> None:
        self.order_state = self.order_rng.get_state()  # the next epoch draws from here

    def batches(self, start_step: int) -> Iterator[DigitBatch]:
        """The epoch's batches from `start_step` on. Alone, whole batches (as
        `iterate_batches`); under DDP, this rank's share of each global batch."""
        if not self.session.is_distributed:
            for x, y in iterate_batches(
                self.train_images,
                self.train_labels,
                self.config.batch_size,
                order=self.order,
                start_batch=start_step,
                device=self.device,
            ):
                yield DigitBatch(x, y, size=len(y), rows=slice(None))
            return
        for global_batch in self.order.split(self.config.batch_size)[start_step:]:
            rows = distributed.share_of_batch(len(global_batch), self.session)
            index = global_batch[rows]
            # Convert only this rank's share to float: the uint8 images stay where they are.
            x, y = to_float(self.train_images[index]), self.train_labels[index]
            yield DigitBatch(x, y, size=len(global_batch), rows=rows)

    def losses(
        self, model: nn.Module, batch: DigitBatch, distributed: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the loss to minimise, this process's summed loss, its right answers)."""
        x, y = batch.images, batch.labels
        if self.augment is not None:
            x = random_affine(
                x, self.augment, self.augment_rng, rows=batch.rows, batch_size=batch.size
            )
        with mixed_precision(self.device):
            log_probs = model(x)
        log_probs = log_probs.float()
        correct = (log_probs.argmax(1) == y).sum()
        smoothing = self.config.label_smoothing
        if not distributed:
            loss = F.cross_entropy(log_probs, y, label_smoothing=smoothing)
            return loss, loss.detach() * len(y), correct
        loss_sum = F.cross_entropy(log_probs, y, label_smoothing=smoothing, reduction="sum")
        # DDP averages gradients over the ranks; scaling each rank's sum by world_size / batch
        # size makes that average the gradient of the global batch's mean loss, however
        # unevenly the batch was split.
        return loss_sum * (self.session.world_size / batch.size), loss_sum, correct

    def evaluate(self, model: nn.Module) -> Scores:
        test = self._log_probs(model, self.mnist.test_images)
        test_loss, test_accuracy = loss_and_accuracy(test, self.mnist.test_labels)
        if not len(self.val_labels):
            return Scores(test_loss, test_accuracy, test_log_probs=test)
        val = self._log_probs(model, self.val_images)
        val_loss, val_accuracy = loss_and_accuracy(val, self.val_labels)
        return Scores(test_loss, test_accuracy, val_loss, val_accuracy, test, val)

    def _log_probs(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return predict_log_probs(
            model, images, batch_size=self.config.eval_batch_size, device=self.device
        )

    def state_dict(self) -> dict[str, Any]:
        return {"order_rng": self.order_state, "augment_rng": self.augment_rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order_rng.set_state(state["order_rng"])
        self.order_state = state["order_rng"]
        self.augment_rng.set_state(state["augment_rng"])


def _augment_config(config: TrainConfig) -> AugmentConfig | None:
    if not (config.rotation or config.scale or config.translate):
        return None
    return AugmentConfig(rotation=config.rotation, scale=config.scale, translate=config.translate)
