"""The model registry and the networks in it.

`create_model(name, **kwargs)` builds a registered network; `list_models()` names them all.
Every model maps a float batch `(N, 1, 28, 28)` in [0, 1] to `(N, 10)` log-probabilities, so a
loss (`cross_entropy` on log-probabilities equals `nll_loss`) and `softmax` work the same on all.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from digitlab.errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a model factory under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: object) -> nn.Module:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return _REGISTRY[name](**kwargs)


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
        self.fc3 = nn.Linear(84, 10)

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
