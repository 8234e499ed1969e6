"""Worker processes: work on files in parallel, results handed on in order; and the worker loop
of `digitlab serve`.

    stream(paths, work, finish, workers=2)   # finish(work(chunk)) per chunk, in input order

`work` turns a chunk of files into items in `workers` processes; `finish` turns a batch of
items into results here, in this process (a model's batched forward pass). At most
`IN_FLIGHT_PER_WORKER` chunks per worker are waiting at any time and every result is handed on
as soon as its batch is finished, so memory does not grow with the number of files. The
streams built on it sit beside their models: `predict.predict_stream` (the workers open and
clean each image into a 28×28 view, the parent classifies) and `read.read_stream` (the workers
open each picture and find its lines, the parent reads them). Neither needs a model in the
workers.

Workers start from a fork server where the platform has one (Linux, macOS: a clean process
that imported torch once, not a copy of a parent whose threads are running), else by spawning
a fresh interpreter (Windows). `digitlab serve`'s workers (`clean_forever`, driven by
digitlab.serve.cleaning) need the fork server; serve uses threads where there is none.

Writing these streams as JSON lines, resumably and sharded under torchrun: `digitlab.jsonl`.
"""

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext, SpawnContext

CHUNK = 64  # files per task sent to a worker: large enough to hide the hand-off cost
IN_FLIGHT_PER_WORKER = 2  # chunks queued per worker: keeps workers busy, memory bounded
BATCH = 256  # files per `finish` call in the parent (for predict, images per forward pass)
# How much `digitlab serve`'s cleaning workers give way to the server process. Measured with
# bench/serve_load.py --payload png, 32 clients, idle 2-core machine, same hour: niceness 0
# 396-442 req/s, p99 189-214 ms; 10: 458 req/s, p99 139 ms; 19: 454 req/s, p99 134 ms.
SERVE_WORKER_NICENESS = 10
# What the fork server imports once, before any thread starts, so that each worker starts in
# milliseconds rather than spending a second of CPU importing torch and numpy.
PRELOAD = ["__main__", "digitlab.workers", "digitlab.predict", "digitlab.read"]

Item = TypeVar("Item")  # what a worker makes of one file
Result = TypeVar("Result")  # what the parent makes of an item
# A job of `clean_forever`: image bytes in, an answer that pickles out (or a DigitlabError).
Job = Callable[[bytes], object]


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


def chunked(items: Iterable[Path], size: int) -> Iterator[list[Path]]:
    """Lists of `size` paths (the last may be shorter), taken lazily from any iterable."""
    chunk: list[Path] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` processes sharing the cores with each other and this one."""
    return ProcessPoolExecutor(workers, worker_context(), initializer=_one_thread_each)


def has_fork_server() -> bool:
    """Whether this platform starts processes from a fork server (not Windows)."""
    return "forkserver" in multiprocessing.get_all_start_methods()


def worker_context() -> "ForkServerContext | SpawnContext":
    """How worker processes start: from a fork server, a clean process, not a copy of the
    parent's model and threads (fork after torch has started threads can hang); where there
    is none, as fresh interpreters (each imports torch itself: seconds, once per worker)."""
    if not has_fork_server():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The fork server imports what the workers need once (no threads started yet, so forking
    # it stays safe): each worker then starts in milliseconds.
    context.set_forkserver_preload(PRELOAD)
    return context


def clean_forever(connection: "Connection", jobs: Sequence[Job]) -> None:
    """A worker process of `digitlab serve` (digitlab.serve.cleaning): messages in, answers
    out, one at a time, until the server closes its end. A message is one byte, the index of
    its job in `jobs`, then an image's bytes; the answer is what the job returns, or the
    DigitlabError it raised. (Kept here, away from FastAPI, so that workers start light.)"""
    import gc

    from digitlab.errors import DigitlabError

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
            message = connection.recv_bytes()
        except EOFError:  # the server has closed its end
            return
        try:
            answer = jobs[message[0]](message[1:])
        except DigitlabError as error:
            answer = error
        connection.send(answer)


def _one_thread_each() -> None:
    """Workers share the cores with each other and the parent: one thread apiece."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
