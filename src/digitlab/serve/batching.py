"""Concurrent requests share one forward pass: `BatchingPredictor` for /predict's digits,
`BatchingReader` for the line images /read found.

A forward pass of one digit is mostly fixed overhead: on one CPU thread a batch of 32 costs
about 14× a single digit, not 32× (lenet: 1.7 ms against 0.12 ms; the larger CNNs alike).
Requests that reach the event loop together (one wake-up of the loop brings several under
load) each queue their input; the first one schedules a flush with `call_soon`, which runs
after every request already in the loop's ready queue has queued its own. Nothing waits on a
timer, so a lone request is not delayed.

The forward pass runs on the event loop's thread rather than a worker thread: for these small
networks a hop to a thread costs about as much as the pass itself, and torch's thread count
(set in the app's lifespan) applies per OS thread. The slow part of reading a picture, finding
its lines, happens before, off the loop (digitlab.serve.cleaning).
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import torch

from digitlab.predict import Prediction, Predictor
from digitlab.read import FoundLines, NumberReader, Reading

In = TypeVar("In")
Out = TypeVar("Out")


class _Batcher(Generic[In, Out]):
    """Awaitable answers to single inputs, computed together by `run` on the loop's thread."""

    def __init__(self, run: Callable[[list[In]], Sequence[Out]]) -> None:
        self._run = run
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []

    async def _submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            answers = self._run([item for item, _ in batch])
        except Exception as error:  # every request of the batch fails alike, none hangs
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():  # its client may have gone and cancelled the request
                future.set_result(answer)


class BatchingPredictor(_Batcher[torch.Tensor, Prediction]):
    """Awaitable single-digit predictions, run in batches on the event loop's thread."""

    def __init__(self, predictor: Predictor) -> None:
        # `predictor.predict_tensor` is looked up at each flush (tests replace it).
        super().__init__(lambda views: predictor.predict_tensor(torch.stack(views)))
        self.predictor = predictor

    async def predict(self, pixels: torch.Tensor) -> Prediction:
        """Predict one digit, (1, 28, 28) float in [0, 1] white on black."""
        return await self._submit(pixels)


class BatchingReader(_Batcher[FoundLines | str, Reading]):
    """Awaitable readings of one picture's lines (`read.find_lines`'s answer), the line images
    of concurrent requests read together on the event loop's thread."""

    def __init__(self, reader: NumberReader) -> None:
        super().__init__(lambda found: reader.read_found(found))
        self.reader = reader

    async def read(self, found: FoundLines | str) -> Reading:
        return await self._submit(found)
