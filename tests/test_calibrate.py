"""Calibrated probabilities: the temperature fit, its place in the checkpoint, and its scores."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from digitlab.calibrate import (
    OLD_CHECKPOINT,
    calibration_scores,
    evaluate_checkpoint,
    fit_temperature,
    scale_log_probs,
)
from digitlab.checkpoint import load_model, read_model_file, save_model
from digitlab.cli import main
from digitlab.config import HELD_OUT, make_config
from digitlab.data import split_validation, to_float
from digitlab.evaluation import predict_log_probs
from digitlab.predict import Predictor
from digitlab.runs import RunPaths
from digitlab.training import train

ECE_TARGET = 0.01  # issue 9: test-set ECE <= 1% after calibration


def test_fit_temperature_recovers_a_known_temperature():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20_000, 10, generator=generator) * 2
    labels = torch.multinomial(logits.softmax(1), 1, generator=generator).squeeze(1)
    overconfident = F.log_softmax(logits * 2.5, dim=1)  # as if divided by T = 0.4
    assert fit_temperature(overconfident, labels) == pytest.approx(2.5, rel=0.05)


def test_scaling_keeps_the_predicted_digit():
    log_probs = F.log_softmax(torch.randn(500, 10, generator=torch.Generator().manual_seed(1)), 1)
    for temperature in (0.3, 1.7, 4.0):
        scaled = scale_log_probs(log_probs, temperature)
        assert torch.equal(scaled.argmax(1), log_probs.argmax(1))
        assert torch.allclose(scaled.exp().sum(1), torch.ones(500), atol=1e-5)


def test_temperature_fitted_on_half_the_held_out_images_lowers_nll_on_the_other_half(
    trained_run: Path, mnist
):
    model, _ = load_model(RunPaths(trained_run).model)
    _, (held_out, labels) = split_validation(mnist.train_images, mnist.train_labels, HELD_OUT)
    log_probs = predict_log_probs(model, held_out)
    half = len(labels) // 2
    temperature = fit_temperature(log_probs[:half], labels[:half])
    scores = calibration_scores(log_probs[half:], labels[half:], temperature)
    assert temperature != pytest.approx(1.0, abs=0.01)
    assert scores.nll < scores.nll_uncalibrated  # what the temperature minimises
    # lenet is nearly calibrated already, so on 2,500 images ECE moves within its noise (measured
    # 0.53% → 0.67% here, while NLL fell): it must stay under the target, not necessarily fall.
    assert scores.ece <= ECE_TARGET


def test_training_stores_the_temperature_and_predictor_applies_it(trained_run: Path, mnist):
    _, metadata = read_model_file(RunPaths(trained_run).model)
    calibration = metadata["calibration"]
    assert calibration["images"] == HELD_OUT
    assert calibration["nll"] <= calibration["nll_uncalibrated"]
    temperature = calibration["temperature"]
    predictor = Predictor.from_checkpoint(RunPaths(trained_run).model, "cpu", reject=False)
    assert predictor.temperature == temperature and predictor.missing == []
    pixels = to_float(mnist.test_images[:50])
    raw, _ = load_model(RunPaths(trained_run).model)
    with torch.inference_mode():
        expected = F.softmax(raw(pixels) / temperature, dim=1)
    got = torch.tensor([p.probabilities for p in predictor.predict_tensor(pixels)])
    assert torch.allclose(got, expected, atol=1e-5)


def test_test_set_ece_meets_the_target_and_accuracy_is_unchanged(trained_run: Path, mnist):
    evaluation, _, _ = evaluate_checkpoint(RunPaths(trained_run).model, mnist)
    calibration = evaluation.calibration
    assert calibration is not None
    print(
        f"default: ECE {calibration['ece_uncalibrated']:.2%} → {calibration['ece']:.2%}, "
        f"NLL {calibration['nll_uncalibrated']:.4f} → {calibration['nll']:.4f}"
    )
    assert calibration["ece"] <= ECE_TARGET
    assert calibration["ece"] <= calibration["ece_uncalibrated"]
    raw, _ = load_model(RunPaths(trained_run).model)
    predicted = predict_log_probs(raw, mnist.test_images).argmax(1)
    assert round(evaluation.accuracy * len(predicted)) == int(
        (predicted == mnist.test_labels).sum()
    )
    assert torch.equal(evaluation.predictions, predicted)


def test_evaluate_json_has_the_calibration_object(trained_run: Path, capsys):
    checkpoint = RunPaths(trained_run).model
    assert main(["evaluate", str(checkpoint), "--json"]) == 0
    calibration = json.loads(capsys.readouterr().out)["calibration"]
    for key in ("temperature", "ece", "ece_uncalibrated", "nll", "nll_uncalibrated"):
        assert isinstance(calibration[key], float), key
    assert 0 <= calibration["ece"] <= 1


@pytest.mark.slow
def test_seed_recipe_says_why_it_has_no_temperature(mnist, tmp_path: Path):
    config = make_config("seed", subset=300, epochs=1)
    assert config.validation == 0  # the notebook trains on every image
    train(config, mnist, tmp_path)
    _, metadata = read_model_file(RunPaths(tmp_path).model)
    assert metadata["calibration"]["temperature"] is None
    assert "--validation" in metadata["calibration"]["reason"]
    predictor = Predictor.from_checkpoint(RunPaths(tmp_path).model, "cpu")
    assert predictor.temperature is None
    assert any("--validation" in reason for reason in predictor.missing)


def old_checkpoint(trained_run: Path, folder: Path) -> Path:
    """The trained model saved as digitlab wrote checkpoints before issue 9."""
    model, metadata = load_model(RunPaths(trained_run).model)
    for key in ("calibration", "rejection"):
        metadata.pop(key)
    path = folder / "model.safetensors"
    save_model(path, model, metadata)
    return path


def test_old_checkpoint_loads_and_says_what_it_lacks(trained_run: Path, tmp_path: Path, capsys):
    path = old_checkpoint(trained_run, tmp_path)
    predictor = Predictor.from_checkpoint(path, "cpu")
    assert predictor.temperature is None and predictor.reject_threshold is None
    assert OLD_CHECKPOINT in predictor.missing[0]
    assert "not a digit" in predictor.missing[1]
    assert main(["predict", "--index", "0", "--checkpoint", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["digit"] == 7
    notes = captured.err.strip().splitlines()
    assert len(notes) == 2 and all(line.startswith("digitlab: note: ") for line in notes)
    assert main(["evaluate", str(path), "--json"]) == 0
    calibration = json.loads(capsys.readouterr().out)["calibration"]
    assert calibration["temperature"] is None and calibration["missing"] == OLD_CHECKPOINT
