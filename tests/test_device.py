"""Device choice: CPU without CUDA, one GPU per torchrun rank with it (CUDA faked here)."""

import pytest
import torch

from digitlab.device import select_device
from digitlab.errors import ConfigError


def test_auto_is_the_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")


def test_asking_for_cuda_without_it_says_what_to_do(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="--device cpu"):
        select_device("cuda")


RANKS = [(None, 4, 0), ("3", 4, 3), ("5", 4, 1)]  # (LOCAL_RANK, GPUs, the GPU taken)


@pytest.mark.parametrize(("local_rank", "gpus", "expected"), RANKS)
def test_each_torchrun_rank_takes_its_own_gpu(monkeypatch, local_rank, gpus, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert select_device("auto") == torch.device("cuda", expected)
    assert select_device("cuda") == torch.device("cuda", expected)
    assert select_device("cuda:2") == torch.device("cuda", 2)  # a numbered GPU is kept


def test_unknown_device_names_are_refused():
    with pytest.raises(ConfigError, match="unknown device"):
        select_device("tpu")
