"""Reading large folders: image decoding in parallel processes, streamed JSONL, resumable runs.

    results = predict_stream(predictor, paths, workers=2)   # an iterator, in input order
    for result in results:
        out.write(jsonl_line(result))

Decoding and cleaning an image (OpenCV, scipy) costs far more than the network's forward pass,
so `workers` processes preprocess chunks of files while the parent runs the model on whole
batches. At most `IN_FLIGHT_PER_WORKER` chunks per worker are waiting at any time and every
result is handed on as soon as its batch is predicted, so memory does not grow with the number
of files. `done_paths` reads an earlier JSONL output so that a rerun skips what it has; under
torchrun each rank reads its shard of the files (`distributed.shard`) into a part file of its
own, and rank 0 joins the parts with `merge_parts`.
"""

import json
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from digitlab.errors import DigitlabError
from digitlab.predict import FileResult, Predictor

CHUNK = 64  # files per task sent to a worker: large enough to hide the hand-off cost
IN_FLIGHT_PER_WORKER = 2  # chunks queued per worker: keeps workers busy, memory bounded
BATCH = 256  # images per forward pass in the parent
TAIL_BLOCK = 4096  # bytes read at a time when looking back for the last newline


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
    pending: list[FileResult] = []
    for chunk in preprocess_chunks(paths, workers):
        pending += chunk
        if len(pending) >= batch_size:
            yield from _predict(predictor, pending, keep_views)
            pending = []
    yield from _predict(predictor, pending, keep_views)


def preprocess_chunks(paths: Iterable[Path], workers: int = 1) -> Iterator[list[FileResult]]:
    """The preprocessed files, chunk by chunk in input order (no prediction yet)."""
    chunks = _chunks(paths, CHUNK)
    if workers <= 1:
        yield from map(read_chunk, chunks)
        return
    # forkserver: workers start from a clean process, not a copy of the parent's model and
    # threads (fork after torch has started threads can hang).
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(workers, context, initializer=_one_thread_each) as pool:
        queued: deque[Future[list[FileResult]]] = deque()
        for chunk in chunks:
            queued.append(pool.submit(read_chunk, chunk))
            if len(queued) >= workers * IN_FLIGHT_PER_WORKER:
                yield queued.popleft().result()
        while queued:
            yield queued.popleft().result()


def read_chunk(paths: Sequence[Path]) -> list[FileResult]:
    """Open and preprocess each file (in a worker process or here)."""
    from digitlab.preprocess import preprocess_path

    results = []
    for path in paths:
        try:
            preprocessed = preprocess_path(path)
        except DigitlabError as err:
            results.append(FileResult(path, error=str(err)))
            continue
        results.append(FileResult(path, view=preprocessed.pixels, reason=preprocessed.reason))
    return results


def jsonl_line(result: FileResult) -> str:
    """One result as one line of JSON (with its newline)."""
    return json.dumps(result.to_dict()) + "\n"


def done_paths(jsonl: Path) -> set[str]:
    """The paths an earlier JSONL output already holds. A last line cut short (the earlier run
    was killed while writing it) does not count, so that file is read again."""
    if not jsonl.is_file():
        return set()
    done = set()
    with jsonl.open() as lines:
        for line in lines:
            try:
                done.add(json.loads(line)["path"])
            except (ValueError, KeyError, TypeError):
                continue
    return done


def drop_partial_last_line(jsonl: Path) -> None:
    """Cut a last line that lacks its newline (an earlier run killed while writing it), so
    lines appended after it stay lines of their own. Reads only the file's tail."""
    if not jsonl.is_file():
        return
    with jsonl.open("rb+") as file:
        size = file.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - TAIL_BLOCK)
            file.seek(start)
            block = file.read(end - start)
            newline = block.rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end != size:
            file.truncate(end)


def part_path(out: Path, rank: int) -> Path:
    """Where rank `rank` writes its share of `out` under torchrun."""
    return out.with_name(f"{out.name}.part-{rank}")


def merge_parts(out: Path, world_size: int, *, append: bool) -> int:
    """Join the ranks' part files into `out` (rank 0's lines first), delete them, and return
    the number of lines joined. Lines are copied, never all held in memory."""
    count = 0
    if append:
        drop_partial_last_line(out)
    with out.open("a" if append else "w") as merged:
        for rank in range(world_size):
            part = part_path(out, rank)
            with part.open() as lines:
                for line in lines:
                    merged.write(line)
                    count += 1
            part.unlink()
    return count


def _predict(predictor: Predictor, results: list[FileResult], keep_views: bool) -> list[FileResult]:
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


def _chunks(paths: Iterable[Path], size: int) -> Iterator[list[Path]]:
    chunk: list[Path] = []
    for path in paths:
        chunk.append(path)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _one_thread_each() -> None:
    """Workers share the cores with each other and the parent: one thread apiece."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
