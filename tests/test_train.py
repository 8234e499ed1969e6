"""Training: reproducibility, bitwise resume after Ctrl-C, the seed recipe, failure modes."""

import os
import signal
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from notebook import ConvolutionalNetwork
from torch import nn

from digitlab.calibrate import fit_temperature
from digitlab.checkpoint import load_model, load_training_state, read_model_file
from digitlab.config import RECIPES, make_config
from digitlab.data import split_validation
from digitlab.errors import CheckpointError
from digitlab.evaluation import loss_and_accuracy, predict_log_probs
from digitlab.runs import RunPaths
from digitlab.training import NonFiniteLossError, TrainingInterrupted, load_run_config, train
from digitlab.training.ensemble import member_config
from digitlab.training.loop import Training

# Small enough to train in about a second, large enough to span several batches per epoch.
QUICK = {"subset": 1200, "batch_size": 100, "epochs": 2, "threads": 2}


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def without_times(history: list) -> list[dict]:
    return [{k: v for k, v in asdict(h).items() if k != "seconds"} for h in history]


@pytest.mark.slow
def test_same_seed_gives_identical_weights(mnist, tmp_path):
    config = make_config("default", **QUICK)
    first = train(config, mnist, tmp_path / "a")
    second = train(config, mnist, tmp_path / "b")
    assert_same_weights(weights(first.model), weights(second.model))
    other = train(make_config("default", **QUICK | {"seed": 1}), mnist, tmp_path / "c")
    assert not torch.equal(other.model.fc1.weight, first.model.fc1.weight)


@pytest.mark.slow
def test_augmentation_and_ema_change_the_result_deterministically(mnist, tmp_path):
    plain = train(make_config("default", **QUICK | {"model": "bncnn"}), mnist, tmp_path / "p")
    runs = [train(make_config("default", **QUICK | AUGMENTED), mnist, tmp_path / n) for n in "ab"]
    assert_same_weights(weights(runs[0].model), weights(runs[1].model))
    assert not torch.equal(runs[0].model.fc.weight, plain.model.fc.weight)
    saved, _ = read_model_file(RunPaths(tmp_path / "a").model)
    assert_same_weights(saved, weights(runs[0].model))  # the EMA weights are what is saved
    assert "n_averaged" not in saved


@pytest.mark.slow
def test_history_measures_the_whole_epoch(mnist, tmp_path):
    result = train(make_config("default", **QUICK), mnist, tmp_path)
    assert [h.epoch for h in result.history] == [1, 2]
    first, second = result.history
    # The notebook's training accuracy was always 0 and its loss a single batch.
    assert 0.1 < first.train_accuracy < second.train_accuracy <= 1
    assert first.train_loss > second.train_loss > 0
    assert 0.1 < first.test_accuracy < second.test_accuracy <= 1


def interrupt_at(epoch: int, step: int):
    """An on_step callback that sends this process a real SIGINT (Ctrl-C) at (epoch, step)."""

    def on_step(progress):
        if (progress.epoch, progress.step) == (epoch, step):
            os.kill(os.getpid(), signal.SIGINT)

    return on_step


AUGMENTED = {"model": "bncnn", "rotation": 10.0, "scale": 0.1, "translate": 0.1, "ema": 0.99}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("recipe", "changes"), [("default", {}), ("seed", {}), ("default", AUGMENTED)]
)
def test_interrupted_then_resumed_run_ends_bitwise_identical(mnist, tmp_path, recipe, changes):
    config = make_config(recipe, **QUICK | changes)
    uninterrupted = train(config, mnist, tmp_path / "whole")

    run_dir = tmp_path / "interrupted"
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(config, mnist, run_dir, on_step=interrupt_at(epoch=2, step=5))
    assert read_model_file(RunPaths(run_dir).model)[1]["complete"] is False
    assert load_run_config(run_dir) == config

    resumed = train(config, mnist, run_dir, resume=True)
    assert_same_weights(weights(uninterrupted.model), weights(resumed.model))
    assert without_times(resumed.history) == without_times(uninterrupted.history)
    saved, metadata = read_model_file(RunPaths(run_dir).model)
    assert_same_weights(saved, weights(uninterrupted.model))
    assert metadata["complete"] is True


@pytest.mark.slow
def test_the_state_is_saved_inside_epochs_every_checkpoint_every_minutes(mnist, tmp_path):
    def states_seen(run_dir: Path, every: float) -> list[tuple[int, int] | None]:
        """What the state on disk says (epoch, steps done) as each step is reported."""
        seen: list[tuple[int, int] | None] = []

        def on_step(progress):  # after step k is taken, before it may be saved
            state = RunPaths(run_dir).train_state
            saved = load_training_state(state)["progress"] if state.is_file() else None
            seen.append(saved and (saved["epoch"] + 1, saved["step"]))

        config = make_config("default", **QUICK | {"validation": 200, "checkpoint_every": every})
        train(config, mnist, run_dir, on_step=on_step)  # 2 epochs of 10 steps
        return seen

    every_step = states_seen(tmp_path / "often", every=1e-6)  # minutes: a few microseconds
    # Step k of epoch 1 finds the state of step k - 1; the epoch's end saves step 10 as (2, 0).
    assert every_step[:10] == [None] + [(1, k) for k in range(1, 10)]
    assert every_step[10:] == [(2, 0)] + [(2, k) for k in range(1, 10)]
    rarely = states_seen(tmp_path / "rarely", every=5.0)
    assert rarely == [None] * 10 + [(2, 0)] * 10  # epochs of a second: saved at their ends


@pytest.mark.slow
def test_seed_recipe_reproduces_the_notebook_loop(mnist, tmp_path):
    """The notebook's training loop (DataLoader of ToTensor images, batch 10, no shuffle)
    and the `seed` recipe take exactly the same optimizer steps.

    Floating-point sums depend on how work is split across threads, so both run on one
    thread, which is what `train` uses for batches this small.
    """
    images = mnist.train_images[:500]
    labels = mnist.train_labels[:500]
    dataset = torch.utils.data.TensorDataset(images.unsqueeze(1).float().div(255), labels)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(41)
        model = ConvolutionalNetwork()
        criterion = nn.CrossEntropyLoss()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
        for X_train, y_train in torch.utils.data.DataLoader(dataset, batch_size=10, shuffle=False):
            y_pred = model(X_train)
            loss = criterion(y_pred, y_train)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)

    result = train(make_config("seed", subset=500, epochs=1), mnist, tmp_path)
    assert_same_weights(weights(model), weights(result.model))
    assert torch.get_num_threads() == threads  # train restores the thread count


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(mnist, tmp_path):
    def poison(stats):  # after epoch 1 is saved, make the next forward pass produce NaN
        with torch.no_grad():
            result_model.fc3.bias.fill_(float("nan"))

    config = make_config("default", **QUICK)
    result_model = None

    original_start = Training.start

    def start(*args, **kwargs):
        nonlocal result_model
        run = original_start(*args, **kwargs)
        result_model = run.model
        return run

    Training.start = start  # type: ignore[method-assign]
    try:
        with pytest.raises(NonFiniteLossError, match="epoch 2, step 1.*last good checkpoint"):
            train(config, mnist, tmp_path, on_epoch=poison)
    finally:
        Training.start = original_start  # type: ignore[method-assign]
    tensors, metadata = read_model_file(RunPaths(tmp_path).model)
    assert metadata["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.slow
def test_resume_refuses_a_malicious_pickle(mnist, tmp_path):
    config = make_config("default", **QUICK | {"epochs": 1})
    train(config, mnist, tmp_path)
    marker = tmp_path / "code-was-executed"
    torch.save({"model": _Exploit(marker)}, RunPaths(tmp_path).train_state)
    with pytest.raises(CheckpointError, match="refusing to load"):
        train(config, mnist, tmp_path, resume=True)
    assert not marker.exists()


@pytest.mark.slow
def test_checkpoints_are_written_atomically(mnist, tmp_path):
    train(make_config("default", **QUICK | {"epochs": 1}), mnist, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["config.json", "history.json", "model.safetensors", "train_state.pt"]


@pytest.mark.slow
def test_validation_images_are_held_out_and_scored_every_epoch(mnist, tmp_path):
    config = make_config("default", **QUICK | {"validation": 200})
    result = train(config, mnist, tmp_path)
    (train_images, _), (val_images, val_labels) = split_validation(
        mnist.train_images[:1200], mnist.train_labels[:1200], 200
    )
    assert len(train_images) == 1000  # 10 steps of 100 per epoch, none on held-out images
    for stats in result.history:
        assert stats.val_loss is not None and 0.1 < stats.val_accuracy <= 1
    model, metadata = load_model(RunPaths(tmp_path).model)
    expected = loss_and_accuracy(predict_log_probs(model, val_images), val_labels)
    assert (result.history[-1].val_loss, result.history[-1].val_accuracy) == pytest.approx(expected)
    assert metadata["metrics"]["val_accuracy"] == result.history[-1].val_accuracy


@pytest.mark.slow
def test_training_on_fewer_images_counts_only_those(mnist, tmp_path):
    steps = []
    config = make_config("default", **QUICK | {"epochs": 1, "validation": 700})
    train(config, mnist, tmp_path, on_step=steps.append)
    assert [s.step for s in steps] == [1, 2, 3, 4, 5]  # 500 images left, batches of 100
    assert steps[-1].steps == 5


def test_ensemble_recipe_is_five_best_models_with_consecutive_seeds():
    ensemble = RECIPES["ensemble"]
    assert ensemble.members == 5
    for index in range(1, 6):
        member = member_config(ensemble, index)
        assert replace(member, recipe="best") == replace(RECIPES["best"], seed=index - 1)


@pytest.mark.slow
def test_best_recipe_learns_from_a_few_thousand_digits(mnist, tmp_path):
    # One epoch on 6,000 images (47 steps): augmentation, label smoothing and vggbn together.
    result = train(make_config("best", epochs=1, subset=6000), mnist, tmp_path)
    assert result.history[-1].test_accuracy > 0.9, result.history


@pytest.mark.slow
def test_the_final_evaluation_is_what_calibration_and_the_report_reuse(mnist, tmp_path):
    """The last epoch's log-probabilities (test set, held-out images) are those of the saved
    model, so calibrating and reporting with them equals doing it on a fresh evaluation."""
    config = make_config("default", **QUICK | {"validation": 200})
    result = train(config, mnist, tmp_path)
    model, metadata = load_model(RunPaths(tmp_path).model)
    assert result.test_log_probs is not None
    # `default` trains channels-last; the loaded model computes in the default layout.
    fresh = predict_log_probs(model, mnist.test_images)
    assert torch.allclose(result.test_log_probs, fresh, atol=1e-5)
    _, (held_out, labels) = split_validation(
        mnist.train_images[:1200], mnist.train_labels[:1200], 200
    )
    refitted = fit_temperature(predict_log_probs(model, held_out), labels)
    assert metadata["calibration"]["temperature"] == pytest.approx(refitted, rel=1e-4)
