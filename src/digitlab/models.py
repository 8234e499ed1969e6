"""The model registry and the networks in it.

`create_model(name, **kwargs)` builds a registered network; `list_models()` names them all,
`list_models("digits")` the digit classifiers and `list_models("numbers")` the number readers.
Every classifier maps a float batch `(N, 1, 28, 28)` in [0, 1] to `(N, 10)` log-probabilities,
so a loss (`cross_entropy` on log-probabilities equals `nll_loss`) and `softmax` work the same
on all. A reader maps line images `(N, 1, 32, W)` to CTC frames (see `digitlab.reader`).
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from digitlab.errors import ConfigError
from digitlab.mnist_format import IMAGE_SIZE, NUM_CLASSES

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
TASKS = ("digits", "numbers")  # what a model does: classify one digit, or read a number
_TASK: dict[str, str] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None, *, task: str = "digits"
) -> Callable[..., Any]:
    """Decorator: register a model factory under its function name (`@register_model`, or
    `@register_model(task="numbers")` for a number reader)."""

    def register(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[factory.__name__] = factory
        _TASK[factory.__name__] = task
        return factory

    return register(fn) if fn is not None else register


def list_models(task: str | None = None) -> list[str]:
    """The names in the model registry (those of one task if given), for `create_model` and
    `digitlab train --model`."""
    return sorted(name for name in _REGISTRY if task is None or _TASK[name] == task)


def task_of(name: str) -> str:
    """What a model does: "digits" for a classifier, "numbers" for a number reader."""
    _factory(name)  # a clear error for an unknown name
    return _TASK[name]


def create_model(name: str, **kwargs: object) -> nn.Module:
    return _factory(name)(**kwargs)


def describe_model(name: str) -> str:
    """The first line of the model's factory docstring: its layers in brief."""
    return (_factory(name).__doc__ or "").strip().splitlines()[0]


def _factory(name: str) -> Callable[..., nn.Module]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return _REGISTRY[name]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class ConvolutionalNetwork(nn.Module):
    """The seed notebook's CNN, layer for layer (60,074 parameters).

    Layers are created in the notebook's order, so `torch.manual_seed(41)` followed by
    `create_model("lenet")` draws exactly the notebook's initial weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, 1)
        self.conv2 = nn.Conv2d(6, 16, 3, 1)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)  # 16 channels × 5×5 after two conv+pool stages
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)  # (N, 6, 13, 13)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)  # (N, 16, 5, 5)
        x = x.flatten(1)  # (N, 400)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return F.log_softmax(self.fc3(x), dim=1)


@register_model
def lenet() -> nn.Module:
    """The seed notebook's network: conv 1→6 k3, pool, conv 6→16 k3, pool, fc 400→120→84→10."""
    return ConvolutionalNetwork()


# Mean and standard deviation of the MNIST training pixels in [0, 1]; models normalise inside
# `forward` so that exports and predictors feed raw [0, 1] images.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def _channels_last(model: nn.Module) -> nn.Module:
    """Store conv weights channels-last (NHWC), the layout oneDNN's fast CPU kernels use.

    Measured on 2 CPU cores, it makes bncnn's training steps 1.5-3× faster and the simplecnn
    models' ~7% faster; inputs may stay in the usual layout. `.to(device)`, `load_state_dict`
    and `deepcopy` keep the layout.
    """
    # torch's type stubs omit Module.to's `memory_format` keyword, which it accepts at run time.
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


class BatchNormCNN(nn.Module):
    """A compact BatchNorm CNN for CPU-fast training (26,914 parameters with the defaults).

    Three unpadded conv → BN → ReLU stages and one linear layer. Pooling comes straight after the
    first two convolutions, before BatchNorm and ReLU: on a 2-core CPU the elementwise passes
    (BN, ReLU and their backward) cost more than the convolutions, and pooling first gives them
    4× fewer values. Max-pooling commutes with ReLU and with BatchNorm's per-channel affine map
    (when its scale is positive), so the reordering changes little but the cost. The first stage
    is narrow for the same reason: its full-resolution passes cost the most per channel, and 8
    channels train 1.3× faster than 16 while still reaching ~99.2% in two epochs.
    """

    def __init__(self, widths: tuple[int, int, int] = (8, 32, 64)) -> None:
        super().__init__()
        c1, c2, c3 = widths
        # Convolutions feed BatchNorm, whose shift makes a conv bias redundant.
        self.conv1 = nn.Conv2d(1, c1, 5, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, c3, 3, bias=False)
        self.bn3 = nn.BatchNorm2d(c3)
        self.fc = nn.Linear(c3 * 3 * 3, NUM_CLASSES)  # c3 channels × 3×3 after the third conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - MNIST_MEAN) / MNIST_STD
        x = F.relu(self.bn1(F.max_pool2d(self.conv1(x), 2)))  # (N, 8, 12, 12)
        x = F.relu(self.bn2(F.max_pool2d(self.conv2(x), 2)))  # (N, 32, 5, 5)
        x = F.relu(self.bn3(self.conv3(x)))  # (N, 64, 3, 3)
        return F.log_softmax(self.fc(x.flatten(1)), dim=1)


@register_model
def bncnn() -> nn.Module:
    """Fast-recipe CNN: conv 1→8 k5, pool, conv 8→32 k3, pool, conv 32→64 k3, fc 576→10.

    26,914 parameters.
    """
    return _channels_last(BatchNormCNN())


@register_model
def bncnn_wide() -> nn.Module:
    """bncnn with wider stages: conv 1→16 k5, pool, conv 16→48 k3, pool, conv 48→96 k3, fc 864→10.

    57,754 parameters; about 2.6 times bncnn's arithmetic per image.
    """
    return _channels_last(BatchNormCNN((16, 48, 96)))


def _conv_bn_relu(c_in: int, c_out: int, kernel_size: int, padding: int = 0) -> nn.Sequential:
    # Bias-free: BatchNorm's shift right after makes a conv bias redundant.
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class VGGBatchNormCNN(nn.Module):
    """A VGG-style BatchNorm CNN sized for a CPU: most of its convolutions run at 12×12.

    One 5×5 conv at full resolution (cheap with few channels), pool to 12×12, two padded 3×3
    convs, pool to 6×6, then two unpadded 3×3 convs down to 2×2 and one linear layer. Inputs
    are raw [0, 1] pixels: the first conv is unpadded and feeds BatchNorm, which absorbs any
    normalisation of the input.
    """

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            _conv_bn_relu(1, c1, 5),  # (N, c1, 24, 24)
            nn.MaxPool2d(2),  # 12×12
            _conv_bn_relu(c1, c2, 3, padding=1),
            _conv_bn_relu(c2, c2, 3, padding=1),
            nn.MaxPool2d(2),  # 6×6
            _conv_bn_relu(c2, c3, 3),  # 4×4
            _conv_bn_relu(c3, c3, 3),  # (N, c3, 2, 2)
        )
        self.fc = nn.Linear(c3 * 2 * 2, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.fc(self.features(x).flatten(1)), dim=1)


@register_model
def vggbn() -> nn.Module:
    """Best-recipe CNN: conv 1→32 k5, pool, 2× conv 64 k3, pool, 2× conv 128 k3, fc 512→10.

    283,242 parameters.
    """
    return _channels_last(VGGBatchNormCNN())


class SimpleCNN(nn.Module):
    """The "simple CNN" of An et al. (2020), "An Ensemble of Simple Convolutional Neural
    Network Models for MNIST Digit Recognition" (arXiv:2008.10400).

    A stack of unpadded k×k conv → BN → ReLU layers with no pooling, shrinking 28×28 by k-1 per
    layer, then one bias-free linear layer followed by BatchNorm1d. The paper trains each with
    Adam (lr 1e-3, ×0.98 per epoch), batch 120, random rotation ±20° and translation ±20%, and an
    EMA (0.999) of the weights; single models reach ~99.8% and an ensemble ~99.9%.

    One deliberate difference: the paper flattens the last feature map channels-last; flattening
    channels-first only permutes the linear layer's inputs, so it is the same family of models.
    """

    def __init__(self, kernel_size: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        widths = (1, *channels)
        # Bias-free convolutions: each feeds BatchNorm, whose shift makes the bias redundant.
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size, bias=False)
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in channels)
        side = IMAGE_SIZE - len(channels) * (kernel_size - 1)  # each unpadded conv trims k-1
        if side < 1:
            raise ConfigError(f"{len(channels)} convs of size {kernel_size} do not fit the image")
        self.fc = nn.Linear(channels[-1] * side * side, NUM_CLASSES, bias=False)
        self.fc_bn = nn.BatchNorm1d(NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) * 2.0  # the paper's input scaling, [0, 1] → [-1, 1]
        for conv, bn in zip(self.convs, self.bns, strict=True):
            x = F.relu(bn(conv(x)))  # e.g. (N, 32, 26, 26) after the first 3×3 conv
        return F.log_softmax(self.fc_bn(self.fc(x.flatten(1))), dim=1)


@register_model
def simplecnn3() -> nn.Module:
    """An et al.'s M3: ten 3×3 convs, 32→176 channels in steps of 16, 176×8×8 → fc 10.

    1,124,180 parameters.
    """
    return _channels_last(SimpleCNN(3, (32, 48, 64, 80, 96, 112, 128, 144, 160, 176)))


@register_model
def simplecnn5() -> nn.Module:
    """An et al.'s M5: five 5×5 convs, 32→160 channels in steps of 32, 160×8×8 → fc 10.

    1,128,180 parameters.
    """
    return _channels_last(SimpleCNN(5, (32, 64, 96, 128, 160)))


@register_model
def simplecnn7() -> nn.Module:
    """An et al.'s M7: four 7×7 convs, 48→192 channels in steps of 48, 192×4×4 → fc 10.

    2,291,972 parameters.
    """
    return _channels_last(SimpleCNN(7, (48, 96, 144, 192)))


class Ensemble(nn.Module):
    """Several trained networks that vote by averaging their probabilities.

    The output is the log of the mean probability, so an ensemble is a model like any other:
    it evaluates, predicts, serves and exports the same way. Checkpoints name it by its
    members' model and their number (see `build_model`).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = torch.stack([member(x) for member in self.members])  # (K, N, 10)
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


def model_label(name: str, members: int = 1) -> str:
    """How a model is named to people: "vggbn", or "5 × vggbn" for an ensemble of five."""
    return f"{members} × {name}" if members > 1 else name


def build_model(name: str, members: int = 1) -> nn.Module:
    """One registered network, or an `Ensemble` of `members` of them (fresh weights)."""
    if members == 1:
        return create_model(name)
    return Ensemble([create_model(name) for _ in range(members)])


@register_model(task="numbers")
def crnn() -> nn.Module:
    """Number reader: conv 1→32→64→96→128 to a frame per 4 columns, BiGRU 96, CTC 10+blank.

    466,475 parameters (1.9 MB of float32).
    """
    from digitlab.reader import CRNN

    return CRNN()
