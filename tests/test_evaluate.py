"""Evaluation metrics on known predictions, and on a real model."""

import pytest
import torch

from digitlab.config import TrainConfig
from digitlab.evaluation import (
    EVAL_BATCH_SIZE,
    Evaluation,
    confusion_matrix,
    evaluate,
    loss_and_accuracy,
    predict_log_probs,
)
from digitlab.models import create_model


def make_evaluation(labels: list[int], predictions: list[int]) -> Evaluation:
    y, p = torch.tensor(labels), torch.tensor(predictions)
    return Evaluation(
        accuracy=float((y == p).float().mean()),
        loss=0.0,
        confusion_matrix=confusion_matrix(y, p),
        predictions=p,
        confidences=torch.ones(len(p)),
        labels=y,
    )


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    matrix = confusion_matrix(torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 2, 0]))
    assert matrix.shape == (10, 10)
    assert matrix[0, 0] == 1 and matrix[0, 1] == 1 and matrix[2, 0] == 1 and matrix[2, 2] == 2
    assert matrix.sum() == 6


def test_per_class_precision_recall_f1():
    result = make_evaluation([0, 0, 1, 1], [0, 1, 1, 1])
    digit0, digit1 = result.per_class()[:2]
    assert digit0 == pytest.approx(
        {"digit": 0, "precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert digit1["precision"] == pytest.approx(2 / 3) and digit1["recall"] == 1.0
    assert result.per_class()[5] == {
        "digit": 5,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }
    assert result.misclassified == [1]


def test_loss_and_accuracy_match_their_definitions():
    log_probs = torch.log_softmax(torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), dim=1)
    labels = torch.tensor([0, 1, 1])
    loss, accuracy = loss_and_accuracy(log_probs, labels)
    assert accuracy == pytest.approx(2 / 3)
    assert loss == pytest.approx(-(log_probs[0, 0] + log_probs[1, 1] + log_probs[2, 1]).item() / 3)


def test_training_evaluates_in_the_batches_evaluation_defaults_to():
    # config writes the number out rather than import torch-laden evaluation: keep them equal.
    assert TrainConfig().eval_batch_size == EVAL_BATCH_SIZE


def test_the_evaluation_batch_does_not_change_the_log_probabilities(mnist):
    torch.manual_seed(0)
    model = create_model("lenet").eval()
    images = mnist.test_images[:1000]
    reference = predict_log_probs(model, images, batch_size=1000)  # the old default
    # Bit for bit here; kernels chosen by batch shape may round differently elsewhere.
    for batch_size in (EVAL_BATCH_SIZE, 100):
        torch.testing.assert_close(
            predict_log_probs(model, images, batch_size=batch_size), reference, rtol=0, atol=1e-6
        )


def test_evaluate_on_real_test_set(mnist):
    torch.manual_seed(0)
    model = create_model("lenet")  # untrained: about chance, but every number must add up
    images, labels = mnist.test_images[:2000], mnist.test_labels[:2000]
    result = evaluate(model, images, labels, batch_size=300)
    assert result.confusion_matrix.sum() == 2000
    assert result.confusion_matrix.sum(1).tolist() == torch.bincount(labels, minlength=10).tolist()
    assert result.accuracy == pytest.approx(result.confusion_matrix.diag().sum().item() / 2000)
    assert len(result.misclassified) == 2000 - result.confusion_matrix.diag().sum()
    assert all(result.predictions[i] != labels[i] for i in result.misclassified)
    keys = {"accuracy", "loss", "per_class", "confusion_matrix", "misclassified"}
    assert keys <= result.to_dict().keys()
