"""Batched affine augmentation: contract, determinism, and that each transform does what it says."""

import pytest
import torch

from digitlab.augment import (
    AugmentConfig,
    affine_matrices,
    elastic_offsets,
    random_affine,
    warp,
)
from digitlab.data import MNIST, to_float
from digitlab.errors import ConfigError

NO_AUGMENTATION = AugmentConfig(rotation=0, scale=0, translate=0, shear=0, elastic=0)
STRONG = AugmentConfig(rotation=20, scale=0.15, translate=0.2, shear=10, elastic=1.5)


@pytest.fixture(scope="module")
def digits(mnist: MNIST) -> torch.Tensor:
    return to_float(mnist.train_images[:64])  # (64, 1, 28, 28)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _centre_of_mass(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) → (N, 2) ink-weighted mean (x, y) pixel position."""
    _, _, height, width = images.shape
    ink = images.sum(dim=(1, 2, 3))
    x = (images.sum(dim=(1, 2)) * torch.arange(width)).sum(dim=1) / ink
    y = (images.sum(dim=(1, 3)) * torch.arange(height)).sum(dim=1) / ink
    return torch.stack([x, y], dim=1)


@pytest.mark.parametrize("config", [AugmentConfig(), STRONG], ids=["default", "strong"])
def test_shape_dtype_device_and_range_are_kept(digits: torch.Tensor, config: AugmentConfig) -> None:
    out = random_affine(digits, config, _generator(0))
    assert out.shape == digits.shape
    assert out.dtype == digits.dtype
    assert out.device == digits.device
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, digits)


def test_same_seed_same_output_different_seed_different(digits: torch.Tensor) -> None:
    first = random_affine(digits, STRONG, _generator(7))
    again = random_affine(digits, STRONG, _generator(7))
    other = random_affine(digits, STRONG, _generator(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_each_sample_gets_its_own_transform(digits: torch.Tensor) -> None:
    same = digits[:1].expand(8, -1, -1, -1).contiguous()
    out = random_affine(same, AugmentConfig(), _generator(0))
    assert len({tuple(row.tolist()) for row in out.flatten(1)}) == 8


def test_zero_ranges_are_the_identity(digits: torch.Tensor) -> None:
    out = random_affine(digits, NO_AUGMENTATION, _generator(0))
    torch.testing.assert_close(out, digits, rtol=0, atol=1e-5)


def test_translation_moves_the_centre_of_mass(digits: torch.Tensor) -> None:
    n = len(digits)
    shift_x, shift_y = torch.full((n,), 0.1), torch.full((n,), -0.05)
    theta = affine_matrices(torch.zeros(n), torch.ones(n), shift_x, shift_y, torch.zeros(n))
    moved = _centre_of_mass(warp(digits, theta)) - _centre_of_mass(digits)
    # 0.1 and -0.05 of 28 pixels: right by 2.8, up by 1.4. A few digits lose a little ink over
    # the border, which pulls their centre back slightly.
    expected = torch.tensor([2.8, -1.4])
    torch.testing.assert_close(moved.median(dim=0).values, expected, atol=0.02, rtol=0)
    assert (moved - expected).abs().max() < 0.3


def test_random_translation_stays_within_its_range(digits: torch.Tensor) -> None:
    config = AugmentConfig(rotation=0, scale=0, translate=0.1)
    moved = _centre_of_mass(random_affine(digits, config, _generator(1))) - _centre_of_mass(digits)
    assert moved.abs().max() <= 0.1 * 28 + 0.05
    assert moved.abs().max() > 0.05 * 28  # 64 draws in ±2.8 px: some land far from zero


def test_rotation_preserves_ink_and_centre(digits: torch.Tensor) -> None:
    n = len(digits)
    theta = affine_matrices(
        torch.full((n,), 25.0), torch.ones(n), torch.zeros(n), torch.zeros(n), torch.zeros(n)
    )
    rotated = warp(digits, theta)
    ink_ratio = rotated.sum(dim=(1, 2, 3)) / digits.sum(dim=(1, 2, 3))
    assert ((ink_ratio > 0.97) & (ink_ratio < 1.03)).all(), ink_ratio
    assert not torch.allclose(rotated, digits, atol=0.1)
    # MNIST centres each digit's mass in the image, so rotating about the centre keeps it there.
    distance = (_centre_of_mass(rotated) - _centre_of_mass(digits)).norm(dim=1)
    assert distance.max() < 1.0


def test_zoom_scales_the_spread_of_ink(digits: torch.Tensor) -> None:
    n = len(digits)
    theta = affine_matrices(
        torch.zeros(n), torch.full((n,), 0.8), torch.zeros(n), torch.zeros(n), torch.zeros(n)
    )
    # Zooming out by 0.8 shrinks the area by 0.64, and the total ink with it.
    ink_ratio = warp(digits, theta).sum() / digits.sum()
    assert 0.6 < ink_ratio.item() < 0.68


def test_elastic_alone_moves_every_image_but_keeps_ink_on_average(digits: torch.Tensor) -> None:
    config = AugmentConfig(rotation=0, scale=0, translate=0, elastic=1.5)
    out = random_affine(digits, config, _generator(0))
    assert (out - digits).abs().amax(dim=(1, 2, 3)).min() > 0.1
    # Local stretching changes single images' ink, but the field has no net zoom.
    ink_ratio = out.sum() / digits.sum()
    assert 0.9 < ink_ratio.item() < 1.1


def test_elastic_field_is_smooth_with_the_requested_size() -> None:
    pixels = elastic_offsets(256, (28, 28), 2.0, _generator(0)) * 14  # grid units → pixels
    rms = pixels.pow(2).mean().sqrt()
    assert 0.7 * 2.0 < rms < 2.0  # interpolating between knots lowers it a little
    # White noise would give neighbours differing by √2 × rms; a smooth field by far less.
    neighbour_rms = (pixels[:, 1:] - pixels[:, :-1]).pow(2).mean().sqrt()
    assert neighbour_rms < 0.5 * rms


def test_elastic_leaves_the_affine_draws_unchanged(digits: torch.Tensor) -> None:
    # The affine numbers are drawn first, so turning elastic on with a tiny strength changes little.
    plain = random_affine(digits, AugmentConfig(), _generator(3))
    tiny = random_affine(digits, AugmentConfig(elastic=1e-4), _generator(3))
    torch.testing.assert_close(plain, tiny, rtol=0, atol=1e-3)


@pytest.mark.parametrize(
    "field, value", [("rotation", -1.0), ("scale", 1.0), ("translate", -0.1), ("shear", 90.0)]
)
def test_invalid_ranges_raise_config_error(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        AugmentConfig(**{field: value})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_result(digits: torch.Tensor) -> None:
    expected = random_affine(digits, STRONG, _generator(5))
    got = random_affine(digits.cuda(), STRONG, _generator(5))
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=1e-4)
