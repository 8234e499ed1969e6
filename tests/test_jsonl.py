"""digitlab.jsonl: one JSON line per file, resumable after a kill, parts joined in rank order.

The streams here are stand-ins that answer from the file name; tests/test_bulk.py and
tests/test_bulk_read.py run the real ones through `digitlab predict|read --jsonl`, also under
torchrun.
"""

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitlab.jsonl import done_paths, drop_partial_last_line, merge_parts, part_path, write_jsonl


@dataclass(frozen=True)
class Outcome:
    path: Path
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "error": self.error}


class Stream:
    """Reads "broken*" files as errors and remembers what it was asked to read."""

    def __init__(self) -> None:
        self.asked: list[Path] = []
        self.workers: int | None = None

    def __call__(self, paths: list[Path], *, workers: int) -> list[Outcome]:
        self.asked += paths
        self.workers = workers
        return [Outcome(p, "unreadable" if p.name.startswith("broken") else None) for p in paths]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_line_per_file_in_order_and_the_failures_counted():
    paths = [Path("a.png"), Path("broken.png"), Path("c.png")]
    out, stream = io.StringIO(), Stream()
    assert write_jsonl(paths, stream, out=out, workers=3) == 1
    assert stream.asked == paths and stream.workers == 3
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"path": "a.png", "error": None},
        {"path": "broken.png", "error": "unreadable"},
        {"path": "c.png", "error": None},
    ]
    assert not out.closed  # a stream given (stdout) is left open


def test_a_rerun_skips_what_is_done_and_appends_after_a_line_cut_short(tmp_path):
    out = tmp_path / "out.jsonl"
    paths = [Path(f"{name}.png") for name in "abcd"]
    assert write_jsonl(paths[:2], Stream(), out=out) == 0
    with out.open("a") as killed:  # a run killed while writing its third line
        killed.write('{"path": "c.p')
    stream = Stream()
    assert write_jsonl(paths, stream, out=out, skip_done=out, workers=2) == 0
    assert stream.asked == paths[2:] and stream.workers == 2
    assert [row["path"] for row in read_jsonl(out)] == ["a.png", "b.png", "c.png", "d.png"]


def test_skip_done_elsewhere_writes_a_new_file(tmp_path):
    done, out = tmp_path / "done.jsonl", tmp_path / "out.jsonl"
    done.write_text('{"path": "a.png"}\n')
    out.write_text("old\n")
    write_jsonl([Path("a.png"), Path("b.png")], Stream(), out=out, skip_done=done)
    assert read_jsonl(out) == [{"path": "b.png", "error": None}]


def test_a_line_cut_short_is_not_done_and_is_dropped_before_appending(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"path": "a.png", "digit": 1}\n{"path": "b.png", "di')
    assert done_paths(out) == {"a.png"}
    drop_partial_last_line(out)
    assert out.read_text() == '{"path": "a.png", "digit": 1}\n'
    drop_partial_last_line(out)  # a whole last line stays
    assert out.read_text() == '{"path": "a.png", "digit": 1}\n'
    assert done_paths(tmp_path / "missing.jsonl") == set()


def test_parts_are_joined_in_rank_order(tmp_path):
    out = tmp_path / "out.jsonl"
    for rank in range(3):
        part_path(out, rank).write_text(f'{{"path": "{rank}a"}}\n{{"path": "{rank}b"}}\n')
    assert merge_parts(out, 3, append=False) == 6
    assert [r["path"] for r in read_jsonl(out)] == ["0a", "0b", "1a", "1b", "2a", "2b"]
    assert not list(tmp_path.glob("*.part-*"))
