"""Batched random affine (and optional elastic) augmentation with tensor ops.

One `affine_grid` + `grid_sample` call warps a whole batch on its own device: no PIL, no Python
loop over samples. Random numbers are drawn on the CPU from the caller's `torch.Generator` and
then moved to the images' device, so a seed gives the same transforms on CPU and CUDA.

    gen = torch.Generator().manual_seed(0)
    x = random_affine(x, AugmentConfig(rotation=15, translate=0.1), gen)  # (N, 1, 28, 28)
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from digitlab.errors import ConfigError

# Elastic noise lives on a coarse ELASTIC_GRID × ELASTIC_GRID lattice and is bicubically upsampled,
# which makes the displacement field smooth (knots ~4.7 px apart on 28×28, like Simard et al.'s
# Gaussian-smoothed fields with sigma ≈ 4) at a fraction of the cost of a per-pixel blur.
ELASTIC_GRID = 7


@dataclass(frozen=True)
class AugmentConfig:
    rotation: float = 10.0  # max degrees, uniform in ±rotation
    scale: float = 0.1  # zoom factor uniform in [1 - scale, 1 + scale]; must stay below 1
    translate: float = 0.1  # max shift per axis as a fraction of the image size
    shear: float = 0.0  # max horizontal shear in degrees, uniform in ±shear
    elastic: float = 0.0  # std of the smooth elastic displacement in pixels at its knots (0 = off)

    def __post_init__(self) -> None:
        for name in ("rotation", "scale", "translate", "shear", "elastic"):
            if getattr(self, name) < 0:
                raise ConfigError(f"augmentation {name} must be >= 0, got {getattr(self, name)}")
        if self.scale >= 1:
            raise ConfigError(f"augmentation scale must be below 1 (got {self.scale})")
        if self.shear >= 90:
            raise ConfigError(f"augmentation shear must be below 90 degrees (got {self.shear})")


def affine_matrices(
    rotation: torch.Tensor,
    scale: torch.Tensor,
    translate_x: torch.Tensor,
    translate_y: torch.Tensor,
    shear: torch.Tensor,
) -> torch.Tensor:
    """Per-sample transforms → `(N, 2, 3)` matrices for `F.affine_grid`.

    Each argument is `(N,)`: rotation and shear in degrees, scale as a zoom factor, translations
    as fractions of the image width/height (positive moves content right/down). The image is
    zoomed, sheared, rotated about its centre, then shifted. `affine_grid` wants the inverse map
    (output pixel → where to read in the input), so the inverse is built directly. Rotation is a
    true rotation only on square images, whose normalised x and y units are equally long.
    """
    angle = torch.deg2rad(rotation)
    cos, sin = torch.cos(angle), torch.sin(angle)
    tan_shear = torch.tan(torch.deg2rad(shear))
    inv_scale = 1.0 / scale
    # Inverse of (rotate · shear · zoom) = zoom⁻¹ · shear⁻¹ · rotate⁻¹, written out.
    a = inv_scale * (cos + tan_shear * sin)
    b = inv_scale * (sin - tan_shear * cos)
    c = inv_scale * -sin
    d = inv_scale * cos
    linear = torch.stack([torch.stack([a, b], -1), torch.stack([c, d], -1)], -2)  # (N, 2, 2)
    # Normalised coordinates span [-1, 1], i.e. 2 units per image size.
    shift = torch.stack([translate_x, translate_y], -1).unsqueeze(-1) * 2.0  # (N, 2, 1)
    return torch.cat([linear, -linear @ shift], dim=-1)  # (N, 2, 3)


def random_matrices(n: int, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Draw `n` affine transforms from `config` on the CPU → `(n, 2, 3)` float32 matrices."""
    # One draw for all five ranges, so disabling one range does not shift the others' numbers.
    u = torch.rand(n, 5, generator=generator) * 2 - 1  # (n, 5) uniform in [-1, 1)
    return affine_matrices(
        rotation=u[:, 0] * config.rotation,
        scale=1 + u[:, 1] * config.scale,
        translate_x=u[:, 2] * config.translate,
        translate_y=u[:, 3] * config.translate,
        shear=u[:, 4] * config.shear,
    )


def elastic_offsets(
    n: int, size: tuple[int, int], strength: float, generator: torch.Generator
) -> torch.Tensor:
    """Smooth random displacement fields → `(n, H, W, 2)` in normalised grid units (CPU)."""
    height, width = size
    knots = torch.randn(n, 2, ELASTIC_GRID, ELASTIC_GRID, generator=generator)  # pixels / strength
    field = F.interpolate(knots, size=size, mode="bicubic", align_corners=True)  # (n, 2, H, W)
    pixels_to_grid = torch.tensor([2.0 / width, 2.0 / height]).view(1, 2, 1, 1)
    return (field * strength * pixels_to_grid).permute(0, 2, 3, 1)  # (n, H, W, 2) as (x, y)


def warp(
    images: torch.Tensor, theta: torch.Tensor, offsets: torch.Tensor | None = None
) -> torch.Tensor:
    """Resample `images` (N, C, H, W) through affine `theta` (N, 2, 3) plus optional `offsets`."""
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (N, H, W, 2)
    if offsets is not None:
        grid = grid + offsets.to(device=images.device, dtype=images.dtype)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Bilinear weights sum to one, but rounding can overshoot 1 by an ulp; keep [0, 1] exact.
    return out.clamp_(0.0, 1.0)


def random_affine(
    images: torch.Tensor,
    config: AugmentConfig,
    generator: torch.Generator,
    *,
    rows: slice | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Randomly rotate, zoom, shift, shear (and elastically warp) a batch `(N, 1, 28, 28)`.

    Images are float in [0, 1]; the result has the same shape, dtype and device. Uncovered
    pixels become 0 (background). The same generator state gives the same output. When
    `images` are only the rows `rows` of a batch of `batch_size` (one process's share of a
    data-parallel batch), the transforms of the whole batch are drawn and those rows applied,
    so every share gets what one process would have given it.
    """
    n, _, height, width = images.shape
    drawn = n if batch_size is None else batch_size
    rows = slice(None) if rows is None else rows
    theta = random_matrices(drawn, config, generator)[rows]
    offsets = None
    if config.elastic > 0:
        offsets = elastic_offsets(drawn, (height, width), config.elastic, generator)[rows]
    return warp(images, theta, offsets)
