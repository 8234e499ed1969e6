"""`BatchingPredictor`: the digits of concurrent requests share one forward pass.

A forward pass of one digit is mostly fixed overhead: on one CPU thread a batch of 32 costs
about 14× a single digit, not 32× (lenet: 1.7 ms against 0.12 ms; the larger CNNs alike).
Requests that reach the event loop together (one wake-up of the loop brings several under
load) each queue their digit; the first one schedules a flush with `call_soon`, which runs
after every request already in the loop's ready queue has queued its own. Nothing waits on a
timer, so a lone request is not delayed.

The forward pass runs on the event loop's thread rather than a worker thread: for these small
networks a hop to a thread costs about as much as the pass itself, and torch's thread count
(set in the app's lifespan) applies per OS thread.
"""

import asyncio

import torch

from digitlab.data import NUM_CLASSES
from digitlab.predict import Prediction, Predictor


class BatchingPredictor:
    """Awaitable single-digit predictions, run in batches on the event loop's thread."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self._pending: list[tuple[torch.Tensor, asyncio.Future[Prediction]]] = []

    async def predict(self, pixels: torch.Tensor) -> Prediction:
        """Predict one digit, (1, 28, 28) float in [0, 1] white on black."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        self._pending.append((pixels, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    async def predict_many(self, pixels: torch.Tensor) -> list[Prediction]:
        """Predict (N, 1, 28, 28) digits, in the same batches as everyone else's."""
        return list(await asyncio.gather(*(self.predict(p) for p in pixels)))

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            predictions = self.predictor.predict_tensor(torch.stack([p for p, _ in batch]))
        except Exception as error:  # every request of the batch fails alike, none hangs
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), prediction in zip(batch, predictions, strict=True):
            if not future.done():  # its client may have gone and cancelled the request
                future.set_result(prediction)


class ThreadBridgePredictor(Predictor):
    """A `Predictor` for library code running in a worker thread (`read_image`): each of its
    forward passes is handed to the event loop's `BatchingPredictor`, so that it shares a
    batch with the digits of concurrent requests and runs on the loop's single torch thread
    rather than competing for the cores from every worker thread. It answers "not a digit" and
    weighs a number's cuts exactly as the loop's predictor does (the detector, its thresholds
    and the classifier's doubt are the same objects)."""

    def __init__(self, batcher: BatchingPredictor) -> None:
        inner = batcher.predictor
        super().__init__(
            inner.model, inner.metadata, inner.device, rejector=inner.rejector,
            reject_threshold=inner.reject_threshold, cut_threshold=inner.cut_threshold,
            doubt_weight=inner.doubt_weight,
        )  # fmt: skip
        self.batcher = batcher

    def predict_tensor(self, pixels: torch.Tensor) -> list[Prediction]:
        """The predictions, "not a digit" included, computed on the event loop."""
        from anyio.from_thread import run

        return run(self.batcher.predict_many, pixels) if len(pixels) else []

    def predict_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 10) probabilities, computed on the event loop."""
        if len(pixels) == 0:
            return torch.zeros(0, NUM_CLASSES)
        return torch.tensor([p.probabilities for p in self.predict_tensor(pixels)])
