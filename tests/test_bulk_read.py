"""`digitlab read` over large folders: parallel workers, streamed JSONL, --skip-done."""

import json
import pickle
from pathlib import Path

import pytest
from compare import same
from PIL import Image

from digitlab import workers
from digitlab.cli import EXIT_ERROR, EXIT_USAGE, main
from digitlab.data import MNIST
from digitlab.pretrained import PACKAGED_MODEL
from digitlab.read import FoundLines, NumberReader, find_lines_chunk, read_stream
from digitlab.synth.clean_numbers import number_picture

NUMBERS = 13  # with chunks of 4 files (see `small_chunks`): four chunks for two workers
DIGITS_PER_NUMBER = 3


@pytest.fixture(scope="module")
def folder(mnist: MNIST, tmp_path_factory) -> Path:
    """Pictures of 3-digit numbers made of consecutive MNIST test digits, a blank page and one
    file that is not an image; each number's name ends with its true text."""
    root = tmp_path_factory.mktemp("numbers")
    for index in range(NUMBERS):
        first = index * DIGITS_PER_NUMBER
        chosen = range(first, first + DIGITS_PER_NUMBER)
        text = "".join(str(int(mnist.test_labels[i])) for i in chosen)
        digits = [mnist.test_images[i].numpy() for i in chosen]
        Image.fromarray(number_picture(digits)).save(root / f"{index:02d}-{text}.png")
    Image.new("L", (200, 80), 255).save(root / "05-blank.png")
    (root / "07-broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch) -> None:
    """Chunks of 4 files (the parent cuts them), so a few files keep two workers busy and
    their answers must come back in order."""
    monkeypatch.setattr(workers, "CHUNK", 4)


@pytest.fixture(scope="module")
def reader() -> NumberReader:
    return NumberReader.from_checkpoint(PACKAGED_MODEL, "cpu")


def paths_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


@pytest.mark.slow  # starts two worker processes
def test_two_workers_read_what_one_reads_in_the_same_order(folder, reader):
    paths = paths_in(folder)
    alone = [r.to_dict() for r in read_stream(reader, paths, workers=1, batch_size=6)]
    parallel = [r.to_dict() for r in read_stream(reader, paths, workers=2, batch_size=6)]
    assert same(parallel, alone)
    assert [r["path"] for r in alone] == [str(p) for p in paths]
    by_name = {Path(r["path"]).stem: r for r in alone}
    assert "not an image" in by_name["07-broken"]["error"]
    assert by_name["05-blank"]["text"] is None and "blank" in by_name["05-blank"]["reason"]
    numbers = [r for r in alone if r["error"] is None and r["reason"] is None]
    # A real reader reads them (a 1 spaced this widely may stand apart: "04 1" for 041).
    right = sum(r["text"].replace(" ", "") == Path(r["path"]).stem.split("-")[1] for r in numbers)
    assert len(numbers) == NUMBERS and right >= NUMBERS - 2


def test_the_workers_find_lines_without_a_model(folder):
    """What a worker does (`find_lines_chunk` takes no model) and hands back through a pipe:
    each file's line images, or why it has none, or its error."""
    found = {f.path.stem: f for f in find_lines_chunk(paths_in(folder))}
    assert isinstance(found["05-blank"].found, str) and found["05-blank"].error is None
    assert found["05-blank"].found.startswith("no number found")
    assert found["07-broken"].found is None and "not an image" in found["07-broken"].error
    numbers = [f.found for f in found.values() if isinstance(f.found, FoundLines)]
    assert len(numbers) == NUMBERS and all(lines.numbers for lines in numbers)
    copied = pickle.loads(pickle.dumps(numbers[0]))
    assert (copied.numbers[0].pixels == numbers[0].numbers[0].pixels).all()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow  # starts two worker processes
def test_jsonl_streams_readings_and_skip_done_appends_the_rest(folder, reader, tmp_path, capsys):
    files = [str(p) for p in paths_in(folder)]
    out = tmp_path / "out.jsonl"
    first = ["read", *files[:5], "--checkpoint", str(PACKAGED_MODEL), "--jsonl", "--out", str(out)]
    assert main(first) == 0
    earlier = out.read_text()
    with out.open("a") as cut_short:  # a run killed while writing its last line
        cut_short.write('{"path": "' + files[5])

    again = ["read", str(folder), "--checkpoint", str(PACKAGED_MODEL), "--jsonl", "--workers", "2"]
    assert main([*again, "--out", str(out), "--skip-done", str(out)]) == EXIT_ERROR  # broken
    assert out.read_text().startswith(earlier)
    rows = read_jsonl(out)  # the line cut short is gone: every line parses
    assert [r["path"] for r in rows] == files  # each file once, in order (first 5, the rest)
    alone = [r.to_dict() for r in read_stream(reader, paths_in(folder))]
    assert same(rows, alone)
    capsys.readouterr()

    assert main([*again, "--skip-done", str(out)]) == 0  # nothing left: no lines on stdout
    assert capsys.readouterr().out == ""
    assert main(["read", *files[:2], "--checkpoint", str(PACKAGED_MODEL), "--jsonl"]) == 0
    streamed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert same(streamed, alone[:2])


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--out", "x.jsonl"], "--jsonl"),
        (["--skip-done", "x.jsonl"], "--jsonl"),
        (["--jsonl", "--json"], "drop --json"),
        (["--jsonl", "--show", "shown"], "drop --json"),
    ],
)
def test_bulk_flag_conflicts_are_one_line_errors(folder, flags, says, capsys):
    assert main(["read", str(folder), "--checkpoint", str(PACKAGED_MODEL), *flags]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert says in err and len(err.splitlines()) == 1


def test_workers_must_be_at_least_one(folder, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["read", str(folder), "--workers", "0"])
    assert exit_.value.code == EXIT_USAGE
    assert "at least 1" in capsys.readouterr().err


@pytest.mark.slow  # two freshly spawned interpreters import torch
def test_without_a_fork_server_the_workers_are_spawned(folder, reader, monkeypatch):
    """Where there is no fork server (Windows), --workers spawns its workers: same answers."""
    monkeypatch.setattr(workers, "has_fork_server", lambda: False)
    assert workers.worker_context().get_start_method() == "spawn"
    paths = paths_in(folder)[:6]
    alone = [r.to_dict() for r in read_stream(reader, paths)]
    spawned = [r.to_dict() for r in read_stream(reader, paths, workers=2)]
    assert same(spawned, alone)
