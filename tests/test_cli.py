"""The `digitlab` command end to end: real MNIST, real runs, and every user error as one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from digitlab.cli import main
from digitlab.runs import RunPaths

QUICK_TRAIN = ["--subset", "3000", "--epochs", "1", "--batch-size", "100", "--threads", "2"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, mnist_dir) -> tuple[Path, dict]:
    """One short real training run shared by the tests that need a checkpoint."""
    run_dir = tmp_path_factory.mktemp("runs") / "quick"
    argv = ["train", *QUICK_TRAIN, "--out", str(run_dir), "--json", "--data-dir", str(mnist_dir)]
    assert main(argv) == 0
    return run_dir, json.loads(RunPaths(run_dir).metrics.read_text())


@pytest.mark.slow
def test_train_json_and_run_folder(tmp_path, mnist_dir, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(
        capsys, "train", *QUICK_TRAIN, "--out", run_dir, "--json", "--data-dir", mnist_dir
    )
    assert code == 0
    summary = json.loads(out)  # one JSON object and nothing else on stdout
    assert {"test_accuracy", "test_loss", "epochs", "wall_seconds", "run_dir"} <= summary.keys()
    assert 0.5 < summary["test_accuracy"] < 1 and summary["epochs"] == 1
    assert summary["run_dir"] == str(run_dir)
    paths = RunPaths(run_dir)
    for path in (paths.model, paths.config, paths.history, paths.metrics, paths.report):
        assert path.is_file(), path
    assert {p.name for p in paths.plots.iterdir()} >= {"loss.png", "accuracy.png"}
    assert json.loads(paths.metrics.read_text())["accuracy"] == summary["test_accuracy"]


@pytest.mark.slow
def test_train_prints_a_table_row_per_epoch(tmp_path, mnist_dir, capsys):
    argv = ["train", *QUICK_TRAIN, "--epochs", "2", "--out", tmp_path, "--data-dir", mnist_dir]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("epoch"))
    rows = [line.split() for line in lines[header + 1 : header + 3]]
    assert [row[0] for row in rows] == ["1", "2"]
    # It ends (and so does `make run`) with where the report is and three commands to try.
    assert lines[-5].endswith(f"report: {tmp_path / 'report.md'}")
    assert lines[-4] == "next, try:"
    tried = [line.split("#")[0].split() for line in lines[-3:]]
    assert [command[:2] for command in tried] == [["digitlab", "predict"]] * 2 + [
        ["digitlab", "serve"]
    ]
    # --out outside ./runs: the commands must name the run, or they would use another model.
    assert all(command[-2:] == ["--checkpoint", str(tmp_path)] for command in tried)


@pytest.mark.slow
def test_train_members_makes_an_ensemble_that_evaluates_and_predicts(tmp_path, mnist_dir, capsys):
    run_dir = tmp_path / "ensemble"
    argv = [*QUICK_TRAIN, "--members", "2", "--validation", "500", "--data-dir", mnist_dir]
    code, out, _ = run_cli(capsys, "train", *argv, "--out", run_dir)
    assert code == 0
    assert "training 2 × lenet" in out and "member 2 of 2" in out
    assert "val acc" in out.splitlines()[1]
    assert "2 models averaged" in out.splitlines()[-5]  # the summary, before "next, try:"
    report = RunPaths(run_dir).report.read_text()
    assert "## Ensemble members" in report
    member_history = json.loads(RunPaths(run_dir / "member-2").history.read_text())
    seconds = sum(epoch["seconds"] for epoch in member_history)
    accuracy = member_history[-1]["test_accuracy"] * 100
    val_accuracy = member_history[-1]["val_accuracy"] * 100
    # member 2 has seed 1; its row shows its last epoch and its whole training time
    assert f"| 2 | 1 | {accuracy:.2f} | {val_accuracy:.2f} | {seconds:.1f} |" in report

    code, out, _ = run_cli(capsys, "evaluate", run_dir, "--json", "--data-dir", mnist_dir)
    assert code == 0
    assert (
        json.loads(out)["accuracy"] == json.loads(RunPaths(run_dir).metrics.read_text())["accuracy"]
    )
    argv = ["predict", "--checkpoint", run_dir, "--index", "100", "--json", "--data-dir"]
    code, out, _ = run_cli(capsys, *argv, mnist_dir)
    assert code == 0 and json.loads(out)["label"] == 6


@pytest.mark.slow
def test_evaluate_json(quick_run, mnist_dir, capsys):
    run_dir, metrics = quick_run
    code, out, _ = run_cli(capsys, "evaluate", run_dir, "--json", "--data-dir", mnist_dir)
    assert code == 0
    result = json.loads(out)
    assert {"accuracy", "loss", "confusion_matrix", "per_class", "misclassified"} <= result.keys()
    assert result["accuracy"] == metrics["accuracy"]
    assert len(result["misclassified"]) == round((1 - result["accuracy"]) * 10000)
    code, out, _ = run_cli(capsys, "evaluate", RunPaths(run_dir).model, "--data-dir", mnist_dir)
    assert code == 0 and f"{metrics['accuracy']:.2%}" in out


@pytest.mark.slow
def test_predict_index(quick_run, mnist_dir, tmp_path, capsys):
    run_dir, _ = quick_run
    png = tmp_path / "digit.png"
    argv = ["predict", "--checkpoint", run_dir, "--index", "100", "--data-dir", mnist_dir]
    code, out, _ = run_cli(capsys, *argv, "--json", "--save", png)
    assert code == 0
    prediction = json.loads(out)
    assert prediction["label"] == 6 and prediction["digit"] == 6
    assert len(prediction["top3"]) == 3 and prediction["top3"][0]["digit"] == 6
    assert png.stat().st_size > 0
    code, out, _ = run_cli(capsys, *argv)
    assert "predicted 6" in out and "top 3: 6" in out
    assert len([line for line in out.splitlines() if len(line) == 56]) == 28  # the drawn digit


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "resnet9000"], "unknown model 'resnet9000'; choose one of: "),
        (["train", "--recipe", "nope"], "invalid choice: 'nope'"),
        (["train", "--epochs", "0"], "argument --epochs: must be a whole number of at least 1"),
        (["train", "--lr", "abc"], "argument --lr: invalid positive number value: 'abc'"),
        (["train", "--label-smoothing", "1.5"], "label smoothing must be in [0, 1)"),
        (["train", "--validation", "60000"], "0 <= validation < 60,000"),
        (["train", "--subset", "100", "--validation", "100"], "0 <= validation < 100"),
        (["train", "--members", "0"], "argument --members: must be a whole number of at least 1"),
        (["predict", "--index", "100", "--checkpoint", "/nonexistent"], "does not exist"),
        (["evaluate", "/nonexistent/run"], "does not exist"),
        (["data", "verify", "--data-dir", "/nonexistent/mnist"], "missing"),
    ],
)
def test_user_errors_are_one_line_without_traceback(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv) if argv[0] != "train" else _train_error(capsys, argv)
    assert code != 0
    assert message in (err + out)
    assert "Traceback" not in err
    if argv[0] != "data":
        assert len(err.strip().splitlines()) == 1, err


def _train_error(capsys, argv):
    try:
        return run_cli(capsys, *argv)
    except SystemExit as exit_:  # argparse exits for malformed flags
        out, err = capsys.readouterr()
        return exit_.code, out, err


def test_missing_data_says_where_and_how(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DIGITLAB_DATA", str(tmp_path / "empty"))
    code, _, err = run_cli(capsys, "evaluate", tmp_path)
    assert code == 1
    code, _, err = run_cli(capsys, "predict", "--index", "1", "--checkpoint", tmp_path)
    assert code == 1 and "not a run folder" in err


@pytest.mark.slow
def test_predict_out_of_range_index(quick_run, mnist_dir, capsys):
    run_dir, _ = quick_run
    argv = ["predict", "--checkpoint", run_dir, "--index", "10000", "--data-dir", mnist_dir]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1 and "between 0 and 9999" in err


@pytest.mark.slow
def test_tampered_checkpoint_is_one_line(quick_run, tmp_path, mnist_dir, capsys):
    run_dir, _ = quick_run
    tampered = tmp_path / "model.safetensors"
    tampered.write_bytes(RunPaths(run_dir).model.read_bytes()[:5000])
    code, _, err = run_cli(capsys, "evaluate", tampered, "--data-dir", mnist_dir)
    assert code == 1 and "not a valid digitlab checkpoint" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_resume_rejects_other_flags(quick_run, capsys):
    run_dir, _ = quick_run
    code, _, err = run_cli(capsys, "train", "--resume", run_dir, "--epochs", "3")
    assert code == 1 and "drop the other flags" in err


def test_console_script_and_module_entry_points():
    for command in (["digitlab"], [sys.executable, "-m", "digitlab"]):
        if command == ["digitlab"]:
            command = [str(Path(sys.executable).with_name("digitlab"))]
        result = subprocess.run([*command, "recipes"], capture_output=True, text=True, check=True)
        assert "seed" in result.stdout and "default" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "digitlab", "train", "--epochs", "-3"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_export_then_predict_with_onnx_runtime(quick_run, mnist_dir, tmp_path, capsys):
    import onnx

    run_dir, _ = quick_run
    out = tmp_path / "exported" / "model.onnx"
    code, stdout, _ = run_cli(capsys, "export", run_dir, "--format", "onnx", "--out", out)
    assert code == 0 and str(out) in stdout
    onnx.checker.check_model(onnx.load(out))
    argv = ["predict", "--checkpoint", run_dir, "--index", "100", "--json", "--data-dir", mnist_dir]
    torch_answer = json.loads(run_cli(capsys, *argv)[1])
    onnx_answer = json.loads(run_cli(capsys, *argv, "--runtime", "onnx")[1])
    assert onnx_answer["digit"] == torch_answer["digit"] == 6
    assert abs(onnx_answer["probability"] - torch_answer["probability"]) < 1e-4


@pytest.mark.slow
def test_export_errors_are_one_line(quick_run, capsys):
    run_dir, _ = quick_run
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(run_dir), "--format", "tflite", "--out", "x"])
    assert exit_.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    code, _, err = run_cli(capsys, "export", "/nonexistent", "--format", "onnx", "--out", "x.onnx")
    assert code == 1 and len(err.strip().splitlines()) == 1


def test_models_and_recipes_list_the_registry(capsys):
    from digitlab.config import RECIPES
    from digitlab.models import count_parameters, create_model, list_models

    code, out, _ = run_cli(capsys, "models")
    lines = out.splitlines()
    assert code == 0 and [line.split()[0] for line in lines] == list_models()
    for name, line in zip(list_models(), lines, strict=True):
        assert f"{count_parameters(create_model(name)):,} parameters" in line
    code, out, _ = run_cli(capsys, "recipes")
    assert [line.split()[0] for line in out.splitlines()] == list(RECIPES)


def test_next_commands_after_training_into_runs_need_no_checkpoint(tmp_path, monkeypatch):
    from digitlab.checkpoint import save_model
    from digitlab.cli.commands.train import next_commands
    from digitlab.models import create_model

    monkeypatch.chdir(tmp_path)
    run_dir = Path("runs") / "default-20261129-101500"
    save_model(RunPaths(run_dir).model, create_model("lenet"), {"model": "lenet"})
    commands = next_commands(run_dir).splitlines()[1:]
    assert len(commands) == 3 and not any("--checkpoint" in line for line in commands)
