"""Ensembles: averaging, members trained like single runs, the saved ensemble, resuming."""

import os
import signal
from pathlib import Path

import pytest
import torch

from digitlab.checkpoint import load_model, read_model_file
from digitlab.config import make_config
from digitlab.data import to_float
from digitlab.errors import CheckpointError
from digitlab.evaluation import loss_and_accuracy, predict_log_probs
from digitlab.export import PARITY_TOLERANCE, OnnxModel, compare_outputs, onnx_bytes
from digitlab.models import Ensemble, create_model
from digitlab.runs import RunPaths
from digitlab.training import TrainingInterrupted, train
from digitlab.training.ensemble import member_config, members_of_rank

# Two lenets, one short epoch each: 12 steps of 100 images per member.
QUICK = {
    "subset": 1200,
    "batch_size": 100,
    "epochs": 1,
    "threads": 2,
    "members": 2,
    "validation": 0,
}
STEPS_PER_MEMBER = 12


def saved_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_model_file(RunPaths(run_dir).model)[0]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def test_ensemble_outputs_the_log_of_the_mean_probability():
    torch.manual_seed(0)
    members = [create_model("lenet").eval() for _ in range(3)]
    images = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        output = Ensemble(members)(images)
        mean_probability = torch.stack([m(images).exp() for m in members]).mean(0)
    torch.testing.assert_close(output, mean_probability.log())
    torch.testing.assert_close(output.exp().sum(1), torch.ones(5))


@pytest.mark.slow
def test_members_are_single_runs_with_their_own_seeds(mnist, tmp_path):
    config = make_config("default", **QUICK)
    result = train(config, mnist, tmp_path / "ensemble")

    assert member_config(config, 2).seed == config.seed + 1
    alone = train(member_config(config, 2), mnist, tmp_path / "alone")
    assert_same_weights(
        saved_weights(RunPaths(tmp_path / "ensemble").member(2).root),
        {k: v for k, v in alone.model.state_dict().items()},
    )
    first, second = (saved_weights(RunPaths(tmp_path / "ensemble").member(i).root) for i in (1, 2))
    assert not torch.equal(first["fc3.weight"], second["fc3.weight"])

    ensemble, metadata = load_model(RunPaths(tmp_path / "ensemble").model)
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 2
    assert metadata["members"] == 2 and metadata["complete"] is True
    members = [load_model(RunPaths(tmp_path / "ensemble").member(i).model)[0] for i in (1, 2)]
    images = mnist.test_images
    expected = torch.stack([predict_log_probs(m, images) for m in members]).exp().mean(0).log()
    torch.testing.assert_close(predict_log_probs(ensemble, images), expected)
    assert result.test_accuracy == loss_and_accuracy(expected, mnist.test_labels)[1]
    member_accuracies = [
        loss_and_accuracy(predict_log_probs(m, images), mnist.test_labels)[1] for m in members
    ]
    assert result.test_accuracy > min(member_accuracies)


def interrupt_at_call(number: int):
    """An on_step callback that sends a real SIGINT (Ctrl-C) at its `number`-th call."""
    calls = 0

    def on_step(progress):
        nonlocal calls
        calls += 1
        if calls == number:
            os.kill(os.getpid(), signal.SIGINT)

    return on_step


@pytest.mark.slow
def test_interrupted_ensemble_resumes_without_retraining_finished_members(mnist, tmp_path):
    config = make_config("default", **QUICK)
    whole = train(config, mnist, tmp_path / "whole")

    run_dir = tmp_path / "interrupted"
    with pytest.raises(TrainingInterrupted, match=f"member 2 of 2.*--resume {run_dir}"):
        train(config, mnist, run_dir, on_step=interrupt_at_call(STEPS_PER_MEMBER + 5))
    assert not RunPaths(run_dir).model.exists()  # no ensemble until every member is done
    first_member = RunPaths(run_dir).member(1).model
    finished_at = first_member.stat().st_mtime_ns

    started = []
    resumed = train(config, mnist, run_dir, resume=True, on_member=lambda i, n: started.append(i))
    assert started == [2]
    assert first_member.stat().st_mtime_ns == finished_at
    assert_same_weights(saved_weights(run_dir), saved_weights(tmp_path / "whole"))
    assert resumed.test_accuracy == whole.test_accuracy


def test_members_are_dealt_round_robin_to_processes():
    assert members_of_rank(5, 0, 2) == [1, 3, 5]
    assert members_of_rank(5, 1, 2) == [2, 4]
    assert members_of_rank(2, 2, 3) == []  # more processes than members: some train none
    dealt = sorted(m for rank in range(3) for m in members_of_rank(7, rank, 3))
    assert dealt == list(range(1, 8))


def test_ensemble_exports_to_onnx_with_parity(mnist):
    torch.manual_seed(0)
    ensemble = Ensemble([create_model("bncnn") for _ in range(2)]).eval()
    images = to_float(mnist.test_images[:1000])
    with torch.inference_mode():
        reference = ensemble(images)
    with torch.inference_mode():
        exported = OnnxModel(onnx_bytes(ensemble), threads=2)(images)
    parity = compare_outputs(reference, exported)
    assert parity.max_abs_diff <= PARITY_TOLERANCE and parity.argmax_agreement == 1.0


@pytest.mark.slow
def test_a_new_ensemble_in_an_old_folder_is_refused_and_mixes_nothing(mnist, tmp_path):
    train(make_config("default", **QUICK), mnist, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match="already holds a training run.*--resume"):
        train(make_config("default", **QUICK | {"seed": 5}), mnist, tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
