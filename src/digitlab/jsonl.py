"""Streamed, resumable JSONL output: one line per file, written as soon as the file is read.

    from digitlab.predict import predict_stream
    failed = write_jsonl(paths, functools.partial(predict_stream, predictor),
                         out=Path("out.jsonl"), skip_done=Path("out.jsonl"), workers=2)

A run that was killed can be started again with `skip_done` pointing at its output: the files
it holds are skipped (`done_paths`), a last line cut short is dropped (`drop_partial_last_line`)
and the new lines are appended. Under torchrun each rank reads its shard of the files
(`distributed.shard`) into a part file of its own (`part_path`), and rank 0 joins the parts in
rank order (`merge_parts`).
"""

import json
import os
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol, TextIO

from digitlab.errors import ConfigError

TAIL_BLOCK = 4096  # bytes read at a time when looking back for the last newline


class FileOutcome(Protocol):
    """What a stream yields per file: `digitlab.predict.FileResult` or `digitlab.read.Reading`."""

    error: str | None

    def to_dict(self) -> dict[str, Any]: ...


def write_jsonl(
    paths: list[Path],
    stream: Callable[..., Iterable[FileOutcome]],
    *,
    out: Path | TextIO,
    skip_done: Path | None = None,
    workers: int = 1,
) -> int:
    """Write one JSON line per file of `paths` to `out` and return how many could not be read
    (summed over every rank under torchrun).

    `stream(paths, workers=N)` yields one result per path, in order (`predict.predict_stream`
    with the predictor bound, or `read.read_stream` with the reader). `out` is a file, or an
    open text stream such as `sys.stdout`; under torchrun it must be a file (rank 0 joins the
    ranks' parts into it). `skip_done` leaves out the files an earlier output holds; when it is
    `out`, the new lines are appended to it."""
    from digitlab import distributed

    if skip_done is not None:
        done = done_paths(skip_done)
        paths = [path for path in paths if str(path) not in done]
    append = (
        skip_done is not None and isinstance(out, Path) and skip_done.resolve() == out.resolve()
    )
    with distributed.launched("cpu") as session:
        if session.is_distributed and not isinstance(out, Path):
            raise ConfigError(
                "under torchrun, JSONL output needs a file (--out FILE): rank 0 joins the parts"
            )
        failed = 0
        with _opened(out, session.rank if session.is_distributed else None, append) as lines:
            for result in stream(distributed.shard(paths, session), workers=workers):
                lines.write(jsonl_line(result))
                failed += result.error is not None
        if session.is_distributed and isinstance(out, Path):
            import torch

            failed = int(distributed.all_reduce_sum(torch.tensor([failed])).item())  # and wait
            if session.is_main:
                merge_parts(out, session.world_size, append=append)
            distributed.barrier()  # no rank exits (which ends the others) before the join
    return failed


def _opened(out: Path | TextIO, rank: int | None, append: bool) -> AbstractContextManager[TextIO]:
    """Where the lines go: the stream `out` (left open), `out` itself (appended to when
    `append`, after dropping a last line cut short), or rank `rank`'s part of it."""
    if not isinstance(out, Path):
        return nullcontext(out)
    if rank is not None:  # rank 0 joins the parts into `out` (and appends there) at the end
        return part_path(out, rank).open("w")
    if append:
        drop_partial_last_line(out)
        return out.open("a")
    return out.open("w")


def jsonl_line(result: FileOutcome) -> str:
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
