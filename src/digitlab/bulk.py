"""Reading large folders: work on files in parallel processes, results streamed in order.

    results = predict_stream(predictor, paths, workers=2)   # an iterator, in input order
    readings = read_stream(predictor, paths, workers=2)     # whole numbers, the same way
    for result in results:
        out.write(json.dumps(result.to_dict()) + "\n")

Both are one mechanism, `stream(paths, work, finish)`: `work` turns a chunk of files into
items (in `workers` processes), `finish` turns a batch of items into results (here, in this
process: the model's batched forward pass). At most `IN_FLIGHT_PER_WORKER` chunks per worker
are waiting at any time and every result is handed on as soon as its batch is finished, so
memory does not grow with the number of files.

- `predict`: decoding and cleaning an image (OpenCV, scipy) costs far more than the network's
  forward pass, so the workers preprocess and the parent predicts.
- `read`: cutting a number into digits costs most (segmentation, and the model scoring the
  candidate cuts: about 40% each, opening and cleaning the image the rest), and the cuts depend
  on the scores, so each worker loads a CPU copy of the model to score with; the parent reads
  the digits cut out. (Workers that only clean the images leave ~80% of the work here.)

The worker side of `digitlab serve` lives here too (`clean_forever`, see digitlab.serve.cleaning),
so that its workers, like these, start without importing FastAPI.

Writing these streams as JSON lines, resumably and sharded under torchrun: `digitlab.jsonl`.
"""

import functools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from digitlab.errors import ConfigError, DigitlabError
from digitlab.predict import FileResult, Predictor, chunked

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext

    from digitlab.read import FoundDigits, Reading

CHUNK = 64  # files per task sent to a worker: large enough to hide the hand-off cost
IN_FLIGHT_PER_WORKER = 2  # chunks queued per worker: keeps workers busy, memory bounded
BATCH = 256  # files per `finish` call in the parent (for predict, images per forward pass)
# How much `digitlab serve`'s cleaning workers give way to the server process. Measured with
# bench/serve_load.py --payload png, 32 clients, idle 2-core machine, same hour: niceness 0
# 396-442 req/s, p99 189-214 ms; 10: 458 req/s, p99 139 ms; 19: 454 req/s, p99 134 ms.
SERVE_WORKER_NICENESS = 10

Item = TypeVar("Item")  # what a worker makes of one file
Result = TypeVar("Result")  # what the parent makes of an item


def stream(
    paths: Iterable[Path],
    work: Callable[[Sequence[Path]], list[Item]],
    finish: Callable[[list[Item]], list[Result]],
    *,
    workers: int = 1,
    batch_size: int = BATCH,
) -> Iterator[Result]:
    """`finish(work(chunk))` for chunks of `paths`, one result per file in input order.

    `work` runs in `workers` processes when that is more than 1, so it must pickle: a
    module-level function or a `functools.partial` of one. `finish` runs here on batches of at
    least `batch_size` items (the last may be smaller) and returns one result per item."""
    # With workers, `finish` runs on one torch thread: the workers keep every core busy, and
    # more threads would only add OpenMP threads spinning against them (measured with 2
    # workers: this process's CPU per image fell from 0.85 ms to 0.15 ms).
    threads = 1 if workers > 1 else None
    pending: list[Item] = []
    for chunk in worked_chunks(paths, work, workers):
        pending += chunk
        if len(pending) >= batch_size:
            yield from _finish_on(threads, finish, pending)
            pending = []
    if pending:
        yield from _finish_on(threads, finish, pending)


def _finish_on(
    threads: int | None, finish: Callable[[list[Item]], list[Result]], items: list[Item]
) -> list[Result]:
    """`finish(items)` on `threads` torch threads (None: as they are), then as they were."""
    if threads is None:
        return finish(items)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return finish(items)
    finally:
        torch.set_num_threads(previous)


def worked_chunks(
    paths: Iterable[Path], work: Callable[[Sequence[Path]], list[Item]], workers: int = 1
) -> Iterator[list[Item]]:
    """`work` done on chunks of `paths`, chunk by chunk in input order."""
    chunks = chunked(paths, CHUNK)
    if workers <= 1:
        yield from map(work, chunks)
        return
    with worker_pool(workers) as pool:
        queued: deque[Future[list[Item]]] = deque()
        for chunk in chunks:
            queued.append(pool.submit(work, chunk))
            if len(queued) >= workers * IN_FLIGHT_PER_WORKER:
                yield queued.popleft().result()
        while queued:
            yield queued.popleft().result()


# ------------------------------------------------------------------------------------ predict


def predict_stream(
    predictor: Predictor,
    paths: Iterable[Path],
    *,
    workers: int = 1,
    batch_size: int = BATCH,
    keep_views: bool = False,
) -> Iterator[FileResult]:
    """Preprocess and predict `paths`, yielding one result per file in input order.

    `workers` = 1 preprocesses in this process; more starts that many worker processes.
    Unreadable files become results with `error` set. The 28×28 views the model saw are
    dropped once predicted unless `keep_views`."""
    finish = functools.partial(_predict, predictor, keep_views=keep_views)
    return stream(paths, preprocess_chunk, finish, workers=workers, batch_size=batch_size)


@dataclass(frozen=True)
class _CleanedFile:
    """One file as `preprocess_path` left it. The view is an array: a tensor would cross the
    process boundary as shared memory of its own, its file descriptor handed over through a
    socket (measured: 0.24 ms of the reading process's CPU per image, against 0.014 ms for
    an array, and about a millisecond of waiting)."""

    path: Path
    view: np.ndarray | None = None  # (1, 28, 28) float32
    reason: str | None = None  # read, but no digit in it, and why
    error: str | None = None  # the file could not be read

    def result(self) -> FileResult:
        view = torch.from_numpy(self.view) if self.view is not None else None
        return FileResult(self.path, view=view, reason=self.reason, error=self.error)


def preprocess_chunk(paths: Sequence[Path]) -> list[_CleanedFile]:
    """Open and preprocess each file (in a worker process or here)."""
    cleaned = []
    for path in paths:
        try:
            view, reason = preprocess_to_array(path)
        except DigitlabError as err:
            cleaned.append(_CleanedFile(path, error=str(err)))
            continue
        cleaned.append(_CleanedFile(path, view, reason))
    return cleaned


def preprocess_to_array(source: Path | bytes) -> tuple[np.ndarray | None, str | None]:
    """`preprocess_path` with the (1, 28, 28) view as an array, to hand from a worker process
    to its parent (see `_CleanedFile`), or the reason there is no digit."""
    from digitlab.preprocess import preprocess_path

    preprocessed = preprocess_path(source)
    view = preprocessed.pixels.numpy() if preprocessed.pixels is not None else None
    return view, preprocessed.reason


def _predict(
    predictor: Predictor, cleaned: list[_CleanedFile], keep_views: bool
) -> list[FileResult]:
    results = [c.result() for c in cleaned]
    views = [r.view for r in results if r.view is not None]
    if not views:
        return results
    predictions = iter(predictor.predict_tensor(torch.stack(views)))
    return [
        replace(r, prediction=next(predictions), view=r.view if keep_views else None)
        if r.view is not None
        else r
        for r in results
    ]


# --------------------------------------------------------------------------------------- read


def read_stream(
    predictor: Predictor,
    paths: Iterable[Path],
    *,
    workers: int = 1,
    batch_size: int = BATCH,
) -> Iterator["Reading"]:
    """Read the number in each of `paths`, yielding one `Reading` per file in input order.

    `workers` = 1 does everything in this process; more starts that many worker processes,
    each of which loads its own CPU copy of `predictor`'s checkpoint (one thread) to score the
    candidate cuts. Unreadable files become readings with `error` set."""
    scorer: Predictor | WorkerModel = predictor
    if workers > 1:
        if predictor.checkpoint is None:
            raise ConfigError(
                "reading with workers needs a Predictor.from_checkpoint (each worker loads it)"
            )
        scorer = WorkerModel(predictor.checkpoint, predictor.runtime)
    work = functools.partial(find_digits_chunk, scorer)
    finish = functools.partial(_read_found, predictor)
    return stream(paths, work, finish, workers=workers, batch_size=batch_size)


@dataclass(frozen=True)
class WorkerModel:
    """A checkpoint each worker process loads once, on the CPU, when it first needs it."""

    checkpoint: Path
    runtime: str

    def load(self) -> Predictor:
        return _load_once(self.checkpoint, self.runtime)


@functools.cache
def _load_once(checkpoint: Path, runtime: str) -> Predictor:
    return Predictor.from_checkpoint(checkpoint, "cpu", runtime=runtime)


@dataclass(frozen=True)
class _FoundFile:
    """One file's digits as `find_digits` cut them out, as arrays (a tensor would cross the
    process boundary as shared memory of its own, costly for thousands of small ones)."""

    path: Path
    views: list[np.ndarray]  # (1, 28, 28) each
    boxes: list[tuple[int, int, int, int]]
    reason: str | None = None  # no digits, and why
    error: str | None = None  # the file could not be read

    def found(self) -> "FoundDigits | str":
        """What `find_digits` gave for this (readable) file."""
        if self.reason is not None:
            return self.reason
        return [(torch.from_numpy(v), box) for v, box in zip(self.views, self.boxes, strict=True)]


def find_digits_chunk(scorer: Predictor | WorkerModel, paths: Sequence[Path]) -> list[_FoundFile]:
    """Open each file and cut its number into digits (in a worker process or here)."""
    from digitlab.images import open_image
    from digitlab.read import find_digits

    predictor = scorer.load() if isinstance(scorer, WorkerModel) else scorer
    found = []
    for path in paths:
        try:
            digits = find_digits(predictor, open_image(path))
        except DigitlabError as err:
            found.append(_FoundFile(path, [], [], error=str(err)))
            continue
        if isinstance(digits, str):
            found.append(_FoundFile(path, [], [], reason=digits))
            continue
        views = [view.numpy() for view, _ in digits]
        found.append(_FoundFile(path, views, [box for _, box in digits]))
    return found


def _read_found(predictor: Predictor, found: list[_FoundFile]) -> list["Reading"]:
    """Read the digits of a batch of files in one forward pass."""
    from digitlab.read import Reading, read_found

    read = iter(read_found(predictor, [f.found() for f in found if f.error is None]))
    return [
        Reading(f.path, None, [], None, error=f.error)
        if f.error is not None
        else replace(next(read), path=f.path)
        for f in found
    ]


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` processes sharing the cores with each other and this one."""
    return ProcessPoolExecutor(workers, worker_context(), initializer=_one_thread_each)


def worker_context() -> "ForkServerContext":
    """How worker processes start (here and in `digitlab serve`): from a fork server, a clean
    process, not a copy of the parent's model and threads (fork after torch has started
    threads can hang)."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    # The fork server imports what the workers need once (no threads started yet, so forking
    # it stays safe): each worker then starts in milliseconds, rather than spending a second
    # or more of CPU importing torch and numpy while the others work.
    context.set_forkserver_preload(["__main__", "digitlab.bulk", "digitlab.preprocess"])
    return context


def clean_forever(connection: "Connection") -> None:
    """A worker process of `digitlab serve` (digitlab.serve.cleaning): image bytes in,
    `preprocess_to_array`'s answer or ImageError out, one image at a time, until the server
    closes its end. (Kept here, away from FastAPI, so that workers start light.)"""
    import gc

    import digitlab.preprocess  # noqa: F401  (imported now, so that the freeze covers it)

    _one_thread_each()
    if hasattr(os, "nice"):  # not on Windows
        # The event loop must answer as soon as a view is ready: with the cores busy, the
        # workers yield to the server process rather than making its answers wait.
        os.nice(SERVE_WORKER_NICENESS)
    # As in the server process (serve/app.py): the ~200k objects torch and numpy leave behind
    # are frozen, so that full collections don't scan them again, pausing an answer.
    gc.collect()
    gc.freeze()
    while True:
        try:
            data = connection.recv_bytes()
        except EOFError:  # the server has closed its end
            return
        try:
            answer: tuple[np.ndarray | None, str | None] | DigitlabError = preprocess_to_array(data)
        except DigitlabError as error:
            answer = error
        connection.send(answer)


def _one_thread_each() -> None:
    """Workers share the cores with each other and the parent: one thread apiece."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
