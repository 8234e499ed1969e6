"""The model registry: every model's contract, lenet's fidelity to the notebook, and that each
family actually learns MNIST."""

import pytest
import torch
import torch.nn.functional as F
from notebook import ConvolutionalNetwork
from torch import nn

from digitlab import models
from digitlab.data import MNIST, to_float
from digitlab.errors import ConfigError
from digitlab.models import count_parameters, create_model, list_models

# Documented parameter counts; a new model must be added here and state its count in its docstring.
PARAMETERS = {
    "lenet": 60_074,
    "bncnn": 26_914,
    "bncnn_wide": 57_754,
    "simplecnn3": 1_124_180,
    "simplecnn5": 1_128_180,
    "simplecnn7": 2_291_972,
    "vggbn": 283_242,
}
FAST_MODELS = ["lenet", "bncnn", "bncnn_wide", "vggbn"]
HEAVY_MODELS = ["simplecnn3", "simplecnn5", "simplecnn7"]


def test_every_model_has_a_documented_parameter_count() -> None:
    assert sorted(PARAMETERS) == list_models("digits")


@pytest.mark.parametrize("name", list_models("digits"))
def test_parameter_count_matches_docstring(name: str) -> None:
    count = count_parameters(create_model(name))
    assert count == PARAMETERS[name]
    # The factory's docstring, or its class's, states the count.
    docs = f"{getattr(models, name).__doc__} {type(create_model(name)).__doc__}"
    assert f"{count:,} parameters" in docs


@pytest.mark.parametrize("name", list_models("digits"))
def test_outputs_are_log_probabilities(name: str) -> None:
    torch.manual_seed(0)
    out = create_model(name)(torch.rand(4, 1, 28, 28))  # train mode: BatchNorm uses batch stats
    assert out.shape == (4, 10)
    assert out.dtype == torch.float32
    assert (out <= 0).all()
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(4))


@pytest.mark.parametrize("name", list_models("digits"))
def test_batch_of_one_in_eval_mode(name: str) -> None:
    model = create_model(name).eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        single = model(x[:1])
        batch = model(x)
    assert single.shape == (1, 10)
    # In eval mode a sample's output does not depend on the rest of its batch.
    torch.testing.assert_close(single, batch[:1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list_models("digits"))
def test_creation_is_deterministic_for_a_seed(name: str) -> None:
    def weights(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return create_model(name).state_dict()

    first, again, other = weights(3), weights(3), weights(4)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list_models("digits"))
def test_cuda_matches_cpu(name: str) -> None:
    model = create_model(name).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        got = model.cuda()(x.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-3, atol=1e-3)


def test_unknown_model_lists_the_names() -> None:
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'") as excinfo:
        create_model("resnet9000")
    for name in list_models("digits"):
        assert name in str(excinfo.value)


def test_lenet_draws_the_notebooks_initial_weights() -> None:
    torch.manual_seed(41)
    notebook = ConvolutionalNetwork()
    torch.manual_seed(41)
    lenet = create_model("lenet")

    expected, got = notebook.state_dict(), lenet.state_dict()
    assert list(got) == list(expected)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key

    x = torch.rand(7, 1, 28, 28)
    torch.testing.assert_close(lenet(x), notebook(x), rtol=0, atol=0)
    assert count_parameters(lenet) == 60_074


def _train(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batches: torch.Tensor, lr: float
) -> list[float]:
    """Adam over `batches` (steps, batch_size) of indices; returns each step's loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for index in batches:
        loss = F.nll_loss(model(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("name", FAST_MODELS)
def test_fast_models_learn_mnist(name: str, mnist: MNIST) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    batches = torch.randint(len(mnist.train_labels), (150, 128))
    _train(model, to_float(mnist.train_images), mnist.train_labels, batches, lr=3e-3)
    model.eval()
    with torch.no_grad():
        predicted = model(to_float(mnist.test_images[:1000])).argmax(dim=1)
    accuracy = (predicted == mnist.test_labels[:1000]).float().mean().item()
    assert accuracy > 0.90, f"{name}: {accuracy:.3f} after 150 steps"


@pytest.mark.slow
@pytest.mark.parametrize("name", HEAVY_MODELS)
def test_heavy_models_fit_one_batch(name: str, mnist: MNIST) -> None:
    # A full step costs ~1 GFLOP per image on these nets, so only overfit a small batch.
    torch.manual_seed(0)
    model = create_model(name)
    same_batch = torch.arange(16).repeat(8, 1)  # 8 steps on the first 16 training images
    losses = _train(
        model, to_float(mnist.train_images[:16]), mnist.train_labels[:16], same_batch, lr=1e-3
    )
    assert losses[-1] < 0.5 * losses[0], losses
