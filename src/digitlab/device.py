"""Where tensors live: CUDA when present, else the CPU."""

import os

import torch

from digitlab.errors import ConfigError


def select_device(name: str = "auto") -> torch.device:
    """`auto` → a GPU if CUDA is available, else the CPU; otherwise the named device.

    An unnumbered GPU (`auto`, `cuda`) is this process's own under torchrun, GPU `LOCAL_RANK`
    (modulo the GPUs present), so that N ranks on one machine do not all crowd onto GPU 0."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    if name == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from err
