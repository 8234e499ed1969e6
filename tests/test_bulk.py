"""Reading large folders: parallel workers, streamed JSONL, --skip-done, shards under torchrun."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from digitlab.checkpoint import save_model
from digitlab.cli import main
from digitlab.config import make_config
from digitlab.models import create_model
from digitlab.predict import Predictor, predict_stream
from digitlab.synth.photos import make_wild_set

FILES = 150  # more than two chunks of 64, so both workers get work and order matters


@pytest.fixture(scope="module")
def folder(tmp_path_factory, mnist) -> Path:
    """Photo-like PNGs of real test digits, plus one file that is not an image."""
    root = tmp_path_factory.mktemp("wild")
    for index, (image, label) in enumerate(
        make_wild_set(mnist.test_images, mnist.test_labels, FILES, seed=3)
    ):
        image.save(root / f"{index:04d}-{label}.png")
    (root / "0075-broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A lenet with fixed random weights: these tests compare readings, not accuracy."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    config = make_config("default")
    save_model(
        path, create_model("lenet"), {"model": "lenet", "members": 1, "config": config.to_dict()}
    )
    return path


def paths_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


@pytest.mark.slow  # 150 files, twice, one of them through two worker processes
def test_two_workers_give_the_answers_of_one_in_the_same_order(folder, checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    alone = [r.to_dict() for r in predict_stream(predictor, paths_in(folder), workers=1)]
    parallel = [r.to_dict() for r in predict_stream(predictor, paths_in(folder), workers=2)]
    assert parallel == alone
    assert [r["path"] for r in alone] == [str(p) for p in paths_in(folder)]
    assert sum(r["error"] is not None for r in alone) == 1  # the broken file, reported
    assert sum(r["digit"] is not None for r in alone) > FILES * 0.9


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow  # 150 files through two worker processes; tests/test_jsonl.py is the quick check
def test_jsonl_streams_one_line_per_file_and_skip_done_appends_the_rest(
    folder, checkpoint, tmp_path, capsys
):
    files = [str(p) for p in paths_in(folder)]
    out = tmp_path / "out.jsonl"
    first = ["predict", *files[:40], "--checkpoint", str(checkpoint), "--jsonl", "--out", str(out)]
    assert main(first) == 0
    earlier = out.read_text()
    with out.open("a") as cut_short:  # a run killed while writing its last line
        cut_short.write('{"path": "' + files[40])

    again = ["predict", str(folder), "--checkpoint", str(checkpoint), "--jsonl", "--workers", "2"]
    assert main([*again, "--out", str(out), "--skip-done", str(out)]) == 1  # the broken file
    assert out.read_text().startswith(earlier)
    rows = read_jsonl(out)  # the line cut short is gone: every line parses
    assert sorted(r["path"] for r in rows) == sorted(files)  # each file exactly once
    capsys.readouterr()

    assert main([*again, "--skip-done", str(out)]) == 0  # nothing left: no lines on stdout
    assert capsys.readouterr().out == ""
    assert main(["predict", *files[:3], "--checkpoint", str(checkpoint), "--jsonl"]) == 0
    streamed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in streamed] == files[:3]


def test_bulk_flags_need_jsonl(checkpoint, tmp_path, capsys):
    argv = ["predict", str(tmp_path), "--checkpoint", str(checkpoint), "--out", "x.jsonl"]
    assert main(argv) == 1
    assert "--jsonl" in capsys.readouterr().err


@pytest.mark.slow  # torchrun
def test_torchrun_shards_the_files_and_rank_0_joins_them(folder, checkpoint, tmp_path):
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "digitlab", "predict", str(folder), "--checkpoint", str(checkpoint)]
    command += ["--device", "cpu", "--jsonl", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode != 0  # the broken file is an error on the rank that read it
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    alone = {r.to_dict()["path"]: r.to_dict() for r in predict_stream(predictor, paths_in(folder))}
    rows = read_jsonl(out)
    assert len(rows) == len(alone) and {r["path"]: r for r in rows} == alone
    assert not list(tmp_path.glob("*.part-*"))
