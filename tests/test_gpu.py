"""The CUDA path: bf16 autocast, channels-last, data on the GPU. Skipped where there is no GPU."""

import pytest
import torch

from digitlab.checkpoint import load_model
from digitlab.config import make_config
from digitlab.runs import RunPaths
from digitlab.training import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.slow
def test_fast_recipe_trains_on_the_gpu_and_loads_on_the_cpu(mnist, tmp_path):
    result = train(make_config("fast", device="cuda", epochs=1), mnist, tmp_path)
    assert result.test_accuracy > 0.97
    parameter = next(result.model.parameters())
    assert parameter.is_cuda
    conv = next(m for m in result.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    model, metadata = load_model(RunPaths(tmp_path).model, "cpu")
    assert metadata["config"]["device"] == "cuda"
    assert not next(model.parameters()).is_cuda


@pytest.mark.slow
def test_training_runs_the_network_in_bfloat16(mnist, tmp_path):
    seen: list[torch.dtype] = []
    config = make_config("fast", device="cuda", epochs=1, subset=2048)
    original = torch.nn.Conv2d.forward

    def record(self, x):
        out = original(self, x)
        seen.append(out.dtype)
        return out

    torch.nn.Conv2d.forward = record  # type: ignore[method-assign]
    try:
        train(config, mnist, tmp_path)
    finally:
        torch.nn.Conv2d.forward = original  # type: ignore[method-assign]
    assert torch.bfloat16 in seen  # training steps
    assert torch.float32 in seen  # evaluation stays in fp32
