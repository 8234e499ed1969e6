"""Where tensors live: CUDA when present, else the CPU."""

import torch

from digitlab.errors import ConfigError


def select_device(name: str = "auto") -> torch.device:
    """`auto` → the first GPU if CUDA is available, else the CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from err
