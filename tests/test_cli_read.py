"""`digitlab read` end to end: real MNIST test digits written as numbers (one line, or a page
of two lines), read by the packaged model's reader or a reader run."""

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab.checkpoint import add_metadata
from digitlab.cli import EXIT_ERROR, EXIT_USAGE, main
from digitlab.data import MNIST
from digitlab.plots import BOX_COLOR
from digitlab.pretrained import PACKAGED_MODEL
from digitlab.synth.clean_numbers import first_of_each, number_picture, page_picture, slot

NUMBERS = ("2026", "714", "97")
PAGE = "714 97\n2026"  # the page: two numbers on the top line, one below


def digits_of(mnist: MNIST, text: str) -> list[np.ndarray]:
    return [mnist.test_images[i].numpy() for i in first_of_each(mnist.test_labels.numpy(), text)]


@pytest.fixture(scope="module")
def numbers(mnist: MNIST, tmp_path_factory) -> dict[str, Path]:
    """Each of NUMBERS as a PNG of MNIST test digits, in a folder of its own, and the page."""
    folder = tmp_path_factory.mktemp("numbers")
    paths = {}
    for text in NUMBERS:
        paths[text] = folder / f"number-{text}.png"
        Image.fromarray(number_picture(digits_of(mnist, text))).save(paths[text])
    lines = [[digits_of(mnist, number) for number in line.split()] for line in PAGE.split("\n")]
    paths[PAGE] = folder / "page.png"
    Image.fromarray(page_picture(lines)).save(paths[PAGE])
    return paths


@pytest.fixture(autouse=True)
def no_runs_here(tmp_path, monkeypatch) -> None:
    """Run in an empty folder: no ./runs to pick a default checkpoint from."""
    monkeypatch.chdir(tmp_path)


def read(capsys, *argv) -> tuple[int, str, str]:
    code = main(["read", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_gives_text_numbers_boxes_and_confidence(numbers, capsys) -> None:
    folder = numbers["2026"].parent
    code, out, err = read(capsys, folder, "--checkpoint", PACKAGED_MODEL, "--json")
    assert code == 0 and err == ""
    readings = json.loads(out)  # the folder: every PNG in it, sorted
    assert [r["path"] for r in readings] == [str(p) for p in sorted(numbers.values())]
    for reading in readings:
        assert reading["reason"] is None and reading["error"] is None
        if reading["path"] == str(numbers[PAGE]):
            assert reading["text"] == PAGE
            assert [n["text"] for n in reading["numbers"]] == ["714", "97", "2026"]
            continue
        text = Path(reading["path"]).stem.removeprefix("number-")
        (number,) = reading["numbers"]
        assert reading["text"] == number["text"] == text
        assert number["digits"] == reading["digits"]
        assert [str(d["digit"]) for d in reading["digits"]] == list(text)
        assert reading["confidence"] == pytest.approx(number["confidence"])
        assert 0 < reading["confidence"] <= 1
        for index, digit in enumerate(reading["digits"]):
            x, y, w, h = digit["box"]
            first, last = slot(index)
            assert first <= x and x + w - 1 <= last  # each box around its own digit
            assert y >= 0 and 0 < h <= 28 * 3 and 0 < digit["probability"] <= 1


def test_table_shows_each_files_text_on_one_row(numbers, capsys) -> None:
    argv = [numbers["2026"], numbers[PAGE], "--checkpoint", PACKAGED_MODEL]
    code, out, _ = read(capsys, *argv)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["file", "text", "confidence", "digits"]
    assert len(rows) == 2
    assert rows[0].split()[:2] == [str(numbers["2026"]), "2026"]
    path, text, confidence, digits = re.split(r"\s{2,}", rows[1].strip())
    assert (path, text) == (str(numbers[PAGE]), "714 97 / 2026")  # lines joined by " / "
    assert 0 < float(confidence.removesuffix("%")) <= 100
    # Each digit with its probability, number by number: "7 99.9%, 1 99.8%, 4 99% | 9 ..."
    assert [[d.split()[0] for d in n.split(", ")] for n in digits.split(" | ")] == [
        list("714"), list("97"), list("2026")
    ]  # fmt: skip


def test_csv_has_a_row_per_file_with_lines_joined(numbers, capsys) -> None:
    argv = [numbers["714"], numbers[PAGE], "--checkpoint", PACKAGED_MODEL, "--csv"]
    code, out, _ = read(capsys, *argv)
    assert code == 0 and len(out.splitlines()) == 3  # the header and one line per file
    single, page = csv.DictReader(io.StringIO(out))
    assert single["path"] == str(numbers["714"]) and single["text"] == "714"
    assert [item.split(":")[0] for item in single["digits"].split()] == ["7", "1", "4"]
    assert len(single["boxes"].split(";")) == 3 and len(single["number_boxes"].split(";")) == 1
    assert 0 < float(single["confidence"]) <= 1 and single["numbers"].startswith("714:")
    assert single["reason"] == "" and single["error"] == ""
    assert page["text"] == "714 97 / 2026"
    assert [n.split(":")[0] for n in page["numbers"].split()] == ["714", "97", "2026"]
    assert len(page["number_boxes"].split(";")) == 3 and len(page["boxes"].split(";")) == 9


def test_show_draws_the_boxes(numbers, tmp_path, capsys) -> None:
    shown = tmp_path / "shown"
    code, _, _ = read(capsys, numbers["97"], "--checkpoint", PACKAGED_MODEL, "--show", shown)
    assert code == 0
    (written,) = shown.iterdir()
    assert written.name == "0000-number-97.png"
    pixels = np.asarray(Image.open(written).convert("RGB")).reshape(-1, 3).astype(int)
    red = np.array([int(BOX_COLOR[i : i + 2], 16) for i in (1, 3, 5)])
    # The boxes' colour is nowhere in a grey picture of digits: it was drawn.
    assert (np.abs(pixels - red).sum(axis=1) < 30).sum() > 100


def test_blank_image_has_no_text_and_says_why(tmp_path, capsys) -> None:
    Image.new("L", (300, 100), 255).save(tmp_path / "blank.png")
    code, out, _ = read(capsys, tmp_path / "blank.png", "--checkpoint", PACKAGED_MODEL, "--json")
    assert code == 0
    (reading,) = json.loads(out)
    assert reading["text"] is None and reading["numbers"] == [] and reading["digits"] == []
    assert reading["confidence"] is None and "blank" in reading["reason"]
    code, out, _ = read(capsys, tmp_path / "blank.png", "--checkpoint", PACKAGED_MODEL)
    assert "blank" in out.splitlines()[1]


def test_unreadable_files_are_reported_and_exit_1(numbers, tmp_path, capsys) -> None:
    (tmp_path / "notes.png").write_text("not a picture")
    missing, junk = tmp_path / "missing.png", tmp_path / "notes.png"
    argv = [numbers["97"], missing, junk, "--checkpoint", PACKAGED_MODEL, "--json"]
    code, out, err = read(capsys, *argv)
    assert code == EXIT_ERROR
    readings = json.loads(out)  # the readable file is still read
    assert readings[0]["text"] == "97"
    assert "no such file" in readings[1]["error"] and "not an image" in readings[2]["error"]
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("digitlab: skipped ") for line in lines)
    assert "Traceback" not in err


def test_empty_folder_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code, out, err = read(capsys, tmp_path / "empty", "--checkpoint", PACKAGED_MODEL)
    assert code == EXIT_ERROR and out == ""
    assert err.splitlines() == [f"digitlab: no image files in {tmp_path / 'empty'}"]


def test_the_default_is_the_newest_reader_run_else_the_packaged_reader(
    numbers, reader_run, untrained_run, capsys
) -> None:
    code, out, err = read(capsys, numbers["97"], "--json")
    assert code == 0 and json.loads(out)[0]["text"] == "97"
    assert err.startswith("digitlab: using the packaged model's number reader (crnn")
    assert err.count("\n") == 1
    shutil.copytree(untrained_run, Path("runs/lenet"))  # a classifier's run is no reader
    code, _, err = read(capsys, numbers["97"])
    assert code == 0 and "packaged model's number reader" in err
    shutil.copytree(reader_run, Path("runs/reader"))
    code, out, err = read(capsys, numbers["97"], "--json")
    assert code == 0 and json.loads(out)[0]["text"] == "97"
    assert err == (
        f"digitlab: using the newest reader run, {Path('runs/reader')} "
        "(--checkpoint RUN_DIR to choose another)\n"
    )


def test_a_reader_run_reads_as_its_own_checkpoint(numbers, reader_run, capsys) -> None:
    code, out, err = read(capsys, numbers["2026"], "--checkpoint", reader_run, "--json")
    assert code == 0 and err == "" and json.loads(out)[0]["text"] == "2026"


def test_an_unfinished_reader_run_reads_with_a_note(numbers, reader_run, tmp_path, capsys):
    """A reader run stopped before its calibration still reads, and says what it lacks."""
    unfinished = tmp_path / "unfinished"
    shutil.copytree(reader_run, unfinished)
    add_metadata(unfinished / "model.safetensors", {"reader": {"model": "crnn"}})
    code, out, err = read(capsys, numbers["2026"], "--checkpoint", unfinished, "--json")
    assert code == 0 and json.loads(out)[0]["text"] == "2026"
    (line,) = err.splitlines()
    assert line.startswith("digitlab: note: this reader is not calibrated")
    assert "digitlab train --resume" in line


def test_a_classifier_without_a_reader_is_one_line(numbers, untrained_run, capsys) -> None:
    code, out, err = read(capsys, numbers["97"], "--checkpoint", untrained_run)
    assert code == EXIT_ERROR and out == ""
    (line,) = err.splitlines()
    assert "carries no number reader" in line and "digitlab train --recipe reader" in line
    assert "drop --checkpoint" in line


def test_predict_with_a_reader_run_is_one_line(numbers, reader_run, capsys) -> None:
    assert main(["predict", str(numbers["97"]), "--checkpoint", str(reader_run)]) == EXIT_ERROR
    out, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert out == "" and "is a number reader" in line and "not a digit classifier" in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["x.png", "--json", "--csv"], "argument --csv: not allowed with argument --json"),
        ([], "the following arguments are required: PATH"),
        (["x.png", "--runtime", "onnx"], "unrecognized arguments: --runtime onnx"),
    ],
    ids=["json-and-csv", "no-paths", "no-runtime"],
)
def test_bad_flags_are_one_line(capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["read", *argv])
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err


def test_help_names_every_option(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["read", "--help"])
    out = capsys.readouterr().out
    for option in ("--checkpoint", "--json", "--csv", "--show", "--device", "--workers"):
        assert option in out
    words = " ".join(out.split())  # argparse wraps the help
    assert "--recipe reader" in words and "lines joined by ' / '" in words
