"""`digitlab read` end to end: real MNIST test digits written as numbers, read by a real lenet."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitlab.cli import EXIT_ERROR, EXIT_USAGE, main
from digitlab.data import MNIST
from digitlab.plots import BOX_COLOR
from digitlab.synth.clean_numbers import first_of_each, number_picture, slot

NUMBERS = ("2026", "714", "97")


@pytest.fixture(scope="module")
def numbers(mnist: MNIST, tmp_path_factory) -> dict[str, Path]:
    """Each of NUMBERS as a PNG of MNIST test digits, in a folder of its own."""
    folder = tmp_path_factory.mktemp("numbers")
    labels = mnist.test_labels.numpy()
    paths = {}
    for text in NUMBERS:
        digits = [mnist.test_images[i].numpy() for i in first_of_each(labels, text)]
        paths[text] = folder / f"number-{text}.png"
        Image.fromarray(number_picture(digits)).save(paths[text])
    return paths


def read(capsys, *argv) -> tuple[int, str, str]:
    code = main(["read", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_gives_text_boxes_and_confidence(trained_run, numbers, capsys) -> None:
    folder = numbers["2026"].parent
    code, out, err = read(capsys, folder, "--checkpoint", trained_run, "--json")
    assert code == 0 and err == ""
    readings = json.loads(out)  # the folder: every PNG in it, sorted
    assert [r["path"] for r in readings] == [str(p) for p in sorted(numbers.values())]
    for reading in readings:
        text = Path(reading["path"]).stem.removeprefix("number-")
        assert reading["text"] == text
        assert reading["reason"] is None and reading["error"] is None
        probabilities = [d["probability"] for d in reading["digits"]]
        assert [str(d["digit"]) for d in reading["digits"]] == list(text)
        # The whole string is no surer than its least sure digit.
        assert 0 < reading["confidence"] <= min(probabilities) + 1e-9
        for index, digit in enumerate(reading["digits"]):
            x, y, w, h = digit["box"]
            first, last = slot(index)
            assert first <= x and x + w - 1 <= last  # each box around its own digit
            assert y >= 0 and 0 < h <= 28 * 3


def test_table_has_a_row_per_file(trained_run, numbers, capsys) -> None:
    code, out, _ = read(capsys, numbers["2026"], numbers["97"], "--checkpoint", trained_run)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["file", "text", "confidence", "digits"]
    assert [row.split()[:2] for row in rows] == [
        [str(numbers["2026"]), "2026"],
        [str(numbers["97"]), "97"],
    ]
    # Each digit with its probability: "2 99.9%, 0 99.8%, ..."
    assert [part.split()[0] for part in rows[0].split("  ")[-1].split(", ")] == list("2026")


def test_csv_has_a_row_per_file(trained_run, numbers, capsys) -> None:
    code, out, _ = read(capsys, numbers["714"], "--checkpoint", trained_run, "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1
    row = rows[0]
    assert row["path"] == str(numbers["714"]) and row["text"] == "714"
    assert [item.split(":")[0] for item in row["digits"].split()] == ["7", "1", "4"]
    assert len(row["boxes"].split(";")) == 3
    assert 0 < float(row["confidence"]) <= 1
    assert row["reason"] == "" and row["error"] == ""


def test_show_draws_the_boxes(trained_run, numbers, tmp_path, capsys) -> None:
    shown = tmp_path / "shown"
    code, _, _ = read(capsys, numbers["97"], "--checkpoint", trained_run, "--show", shown)
    assert code == 0
    (written,) = shown.iterdir()
    assert written.name == "0000-number-97.png"
    pixels = np.asarray(Image.open(written).convert("RGB")).reshape(-1, 3).astype(int)
    red = np.array([int(BOX_COLOR[i : i + 2], 16) for i in (1, 3, 5)])
    # The boxes' colour is nowhere in a grey picture of digits: it was drawn.
    assert (np.abs(pixels - red).sum(axis=1) < 30).sum() > 100


def test_blank_image_has_no_text_and_says_why(trained_run, tmp_path, capsys) -> None:
    Image.new("L", (300, 100), 255).save(tmp_path / "blank.png")
    code, out, _ = read(capsys, tmp_path / "blank.png", "--checkpoint", trained_run, "--json")
    assert code == 0
    (reading,) = json.loads(out)
    assert reading["text"] is None and reading["digits"] == [] and reading["confidence"] is None
    assert "blank" in reading["reason"]
    code, out, _ = read(capsys, tmp_path / "blank.png", "--checkpoint", trained_run)
    assert "blank" in out.splitlines()[1]


def test_unreadable_files_are_reported_and_exit_1(trained_run, numbers, tmp_path, capsys) -> None:
    (tmp_path / "notes.png").write_text("not a picture")
    missing, junk = tmp_path / "missing.png", tmp_path / "notes.png"
    code, out, err = read(
        capsys, numbers["97"], missing, junk, "--checkpoint", trained_run, "--json"
    )
    assert code == EXIT_ERROR
    readings = json.loads(out)  # the readable file is still read
    assert readings[0]["text"] == "97"
    assert "no such file" in readings[1]["error"] and "not an image" in readings[2]["error"]
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("digitlab: skipped ") for line in lines)
    assert "Traceback" not in err


def test_empty_folder_is_one_line(trained_run, tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code, out, err = read(capsys, tmp_path / "empty", "--checkpoint", trained_run)
    assert code == EXIT_ERROR and out == ""
    assert err.splitlines() == [f"digitlab: no image files in {tmp_path / 'empty'}"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["x.png", "--json", "--csv"], "argument --csv: not allowed with argument --json"),
        ([], "the following arguments are required: PATH"),
        (["x.png", "--runtime", "tpu"], "argument --runtime: invalid choice"),
    ],
    ids=["json-and-csv", "no-paths", "unknown-runtime"],
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
    for option in ("--checkpoint", "--json", "--csv", "--show", "--device", "--runtime"):
        assert option in out
    assert "left to right" in out
