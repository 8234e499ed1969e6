"""PNG pictures of a run: learning curves, the confusion matrix, and grids of digits.

Figures are built with `matplotlib.figure.Figure` directly, never with `pyplot`: no global
figure registry (so nothing to close and nothing leaks), no GUI backend, and safe to call from
threads such as the web server's. Saving a bare `Figure` renders with Agg, so this works
headless whatever `MPLBACKEND` says. matplotlib is imported only here, so `import digitlab`
stays light.

Every file is written to a temporary path and renamed into place, and the PNGs carry no
matplotlib version stamp, so the same inputs give the same bytes.
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from digitlab.checkpoint import atomic_path

DPI = 100  # 1 inch = 100 pixels; keeps the PNGs small (tens of kB)
CELL_INCHES = 0.9  # width of one digit (with its title) in a grid
INK = "gray_r"  # digits drawn as dark ink on white paper, which reads better in a report
MISTAKE_COLOR = "#c62828"  # titles of wrongly predicted digits
TRAIN_COLOR, TEST_COLOR = "#1f77b4", "#d62728"
MAX_LABELLED_EPOCHS = 20  # up to this many epochs, every one gets a tick
READING_INCHES = 8.0  # the longer side of an image drawn by `plot_reading`
BOX_COLOR = "#d62728"  # boxes around the digits read, red on any paper
NUMBER_BOX_COLOR = "#1f77b4"  # dashed boxes around whole numbers, with their confidence
HEAT = "RdBu_r"  # attribution maps: red for the class, blue against it, white for nothing
OUTLINE_LEVEL = 0.5  # the strokes are outlined where the view is this bright (of 1)
OUTLINE_COLOR = "#444444"


def plot_curves(history: Sequence[Mapping[str, float]], out_dir: Path) -> list[Path]:
    """`loss.png` and `accuracy.png`: train and test per epoch, from history.json's entries."""
    if not history:
        raise ValueError("no epochs to plot: the history is empty")
    epochs = [int(entry["epoch"]) for entry in history]
    series = {
        # key: (title, y label, scale, how to print the last value); history holds fractions
        "loss": ("Loss per epoch", "cross-entropy loss", 1.0, "{:.4f}"),
        "accuracy": ("Accuracy per epoch", "accuracy (%)", 100.0, "{:.2f}%"),
    }
    paths = []
    for key, (title, ylabel, scale, last_format) in series.items():
        figure = Figure(figsize=(6.4, 4.0), layout="constrained")
        axes = figure.add_subplot()
        for split, color in (("train", TRAIN_COLOR), ("test", TEST_COLOR)):
            values = [entry[f"{split}_{key}"] * scale for entry in history]
            # The legend carries the final value, so the picture answers "how good?" alone.
            label = f"{split} (last: {last_format.format(values[-1])})"
            axes.plot(epochs, values, marker="o", color=color, label=label)
        _style_curve_axes(axes, title, ylabel, epochs)
        paths.append(_save(figure, out_dir / f"{key}.png"))
    return paths


def _style_curve_axes(axes: Axes, title: str, ylabel: str, epochs: Sequence[int]) -> None:
    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    if len(epochs) <= MAX_LABELLED_EPOCHS:
        axes.set_xticks(epochs)  # exactly the epochs there are: no "epoch 0" or "1.5"
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    axes.grid(alpha=0.3)
    axes.legend()


def plot_confusion_matrix(matrix: torch.Tensor, path: Path) -> Path:
    """A heatmap of counts, true digits as rows and predictions as columns, counts in cells.

    Right answers (the diagonal) are shaded blue and mistakes red, each on its own scale:
    on one shared scale the ~1000 per diagonal cell would wash the few mistakes out to white.
    """
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {tuple(matrix.shape)}")
    counts = matrix.detach().cpu().long().numpy()
    size = counts.shape[0]
    on_diagonal = np.eye(size, dtype=bool)
    figure = Figure(figsize=(6.0, 5.6), layout="constrained")
    axes = figure.add_subplot()
    norms = {}
    # Empty cells stay white; the scales start below zero so that even a count of 1 is tinted.
    for cmap, mask in (("Blues", ~on_diagonal), ("Reds", on_diagonal)):
        cells = np.ma.masked_array(counts, mask=mask | (counts == 0))
        top = max(int(cells.max() or 0), 1)
        norm = Normalize(vmin=-top / 4, vmax=top)
        axes.imshow(cells, cmap=cmap, norm=norm)
        norms[cmap] = norm
    for true, predicted in np.ndindex(size, size):
        norm = norms["Blues" if true == predicted else "Reds"]
        _annotate_cell(axes, true, predicted, int(counts[true, predicted]), norm)
    wrong = int(counts[~on_diagonal].sum())
    axes.set_title(f"Confusion matrix: {wrong:,} of {int(counts.sum()):,} digits wrong")
    axes.set_xlabel("predicted digit")
    axes.set_ylabel("true digit")
    axes.set_xticks(range(size))
    axes.set_yticks(range(size))
    axes.tick_params(length=0)
    return _save(figure, path)


def _annotate_cell(axes: Axes, row: int, column: int, count: int, norm: Normalize) -> None:
    if count == 0:  # zeros as faint dots, so the real mistakes stand out
        axes.text(column, row, "·", ha="center", va="center", color="#bbbbbb")
        return
    dark = float(norm(count)) > 0.55  # white text on dark cells
    axes.text(
        column,
        row,
        str(count),
        ha="center",
        va="center",
        fontsize=9,
        color="white" if dark else "black",
    )


def plot_digit_grid(
    images: torch.Tensor,
    titles: Sequence[str],
    path: Path,
    *,
    columns: int = 10,
    title: str | None = None,
    title_colors: Sequence[str] | None = None,
) -> Path:
    """Digits (N, H, W) in a grid, `columns` wide, each with its own small title.

    `title_colors` (one per digit, optional) lets callers mark e.g. wrong predictions in red.
    An empty `images` gives a small picture saying there is nothing to show.
    """
    if len(titles) != len(images):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    if title_colors is not None and len(title_colors) != len(images):
        raise ValueError(f"{len(images)} images but {len(title_colors)} title colours")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, not {columns}")
    if len(images) == 0:
        return _save(_empty_figure(title or "", "no digits to show"), path)
    from matplotlib.gridspec import GridSpec
    from matplotlib.patches import Rectangle
    from matplotlib.transforms import offset_copy

    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    heading = 0.35 if title else 0.0  # inches for the figure title
    width, height = columns * CELL_INCHES, rows * (CELL_INCHES + 0.15) + heading
    figure = Figure(figsize=(width, height))
    if title:
        figure.suptitle(title, fontsize=11)
    # The cells of a subplot grid with fixed margins, but drawn on one full-figure axes: an axes
    # per digit costs about 10 ms each to build and draw, which made two 40-digit galleries
    # a second of every training run. Each digit is a square centred in its cell, as an
    # image axes of equal aspect would show it, with a light frame and its title above.
    top = 1 - heading / height
    cells = GridSpec(rows, columns, left=0.01, right=0.99, bottom=0.01, top=top - 0.01, hspace=0.35)
    bottoms, tops, lefts, rights = cells.get_grid_positions(figure)
    canvas = figure.add_axes((0, 0, 1, 1))
    canvas.set_axis_off()
    above = offset_copy(canvas.transData, fig=figure, y=2, units="points")  # a title's pad
    pixels = images.detach().cpu()
    # uint8 pixels span 0..255; float images (e.g. preprocessed) span 0..1.
    vmax = 255 if pixels.dtype == torch.uint8 else 1.0
    colors = title_colors or ["black"] * len(images)
    for i, (image, text, color) in enumerate(zip(pixels, titles, colors, strict=True)):
        row, column = divmod(i, columns)
        side = min((rights[column] - lefts[column]) * width, (tops[row] - bottoms[row]) * height)
        x0 = (lefts[column] + rights[column]) / 2 - side / width / 2
        y0 = (bottoms[row] + tops[row]) / 2 - side / height / 2
        x1, y1 = x0 + side / width, y0 + side / height
        canvas.imshow(
            image.float().numpy(), cmap=INK, vmin=0, vmax=vmax, interpolation="nearest",
            extent=(x0, x1, y0, y1), aspect="auto",
        )  # fmt: skip
        canvas.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="#dddddd", linewidth=0.8)
        )
        canvas.text((x0 + x1) / 2, y1, text, fontsize=8, color=color, ha="center", transform=above)
    canvas.set(xlim=(0, 1), ylim=(0, 1))
    return _save(figure, path)


def plot_digit(image: torch.Tensor, title: str, path: Path) -> Path:
    """One digit, large, with a title (what `predict --save` writes)."""
    if image.dim() == 3 and image.shape[0] == 1:  # accept (1, H, W) as well as (H, W)
        image = image[0]
    if image.dim() != 2:
        raise ValueError(f"expected one image (H, W), got shape {tuple(image.shape)}")
    figure = Figure(figsize=(3.0, 3.3), layout="constrained")
    axes = figure.add_subplot()
    _draw_digit(axes, image)
    axes.set_title(title, fontsize=12)
    return _save(figure, path)


def plot_original_and_view(
    original: Image.Image, view: torch.Tensor | None, title: str, path: Path
) -> Path:
    """An input image beside the 28×28 view the model saw (what `predict --show` writes)."""
    figure = Figure(figsize=(6.0, 3.3), layout="constrained")
    figure.suptitle(title, fontsize=11)
    left, right = figure.subplots(1, 2)
    left.imshow(original.convert("RGB"))
    left.set_title("original", fontsize=9)
    left.set_xticks([])
    left.set_yticks([])
    if view is None:
        right.set_axis_off()
        right.text(0.5, 0.5, "no digit found", ha="center", va="center", color="#666666")
    else:
        _draw_digit(right, view[0] if view.dim() == 3 else view)
        right.set_title("what the model saw (28×28)", fontsize=9)
    return _save(figure, path)


def plot_heat_maps(
    view: torch.Tensor, maps: Sequence[tuple[str, torch.Tensor]], title: str, path: Path
) -> Path:
    """The 28×28 view, then each (heading, signed 28×28 map) with the strokes outlined on it.

    Each map is scaled by its own strongest pixel: a confident answer's map is faint next to a
    runner-up that the ink argues hard against, and on one shared scale it would wash out.
    """
    pixels = (view[0] if view.dim() == 3 else view).detach().cpu().float()
    figure = Figure(figsize=(2.4 * (len(maps) + 1) + 0.8, 3.0), layout="constrained")
    figure.suptitle(title, fontsize=11)
    view_axes, *map_axes = figure.subplots(1, len(maps) + 1)
    _draw_digit(view_axes, pixels)
    view_axes.set_title("what the model saw", fontsize=9)
    for axes, (heading, heat) in zip(map_axes, maps, strict=True):
        values = heat.detach().cpu().float()
        strongest = max(float(values.abs().max()), 1e-12)  # an all-zero map stays white
        shown = axes.imshow(
            (values / strongest).numpy(), cmap=HEAT, vmin=-1, vmax=1, interpolation="nearest"
        )
        axes.contour(pixels.numpy(), levels=[OUTLINE_LEVEL], colors=OUTLINE_COLOR, linewidths=0.6)
        axes.set_title(heading, fontsize=9)
        axes.set_xticks([])
        axes.set_yticks([])
    colorbar = figure.colorbar(shown, ax=map_axes, shrink=0.8, ticks=[-1, 0, 1])
    colorbar.ax.set_yticklabels(["against", "0", "for"], fontsize=8)
    return _save(figure, path)


def plot_reading(original: Image.Image, numbers: Sequence[Any], title: str, path: Path) -> Path:
    """An image with a box around each number read, and around each of its digits the digit's
    box with the digit above it (what `read --show` writes). `numbers` are `read.ReadNumber`s:
    boxes (x, y, w, h) in the image's pixels."""
    from matplotlib.patches import Rectangle

    width, height = original.size
    # As wide as READING_INCHES allows, as tall as the image's shape asks (plus the title).
    scale = READING_INCHES / max(width, height)
    figure = Figure(figsize=(max(width * scale, 3.0), height * scale + 0.6), layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(original.convert("RGB"))
    axes.set_title(title, fontsize=11)
    axes.set_xticks([])
    axes.set_yticks([])
    for number in numbers:
        x, y, w, h = number.box
        # Pixel i covers [i - 0.5, i + 0.5] in imshow's coordinates.
        axes.add_patch(
            Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=NUMBER_BOX_COLOR,
                      linewidth=1.0, linestyle="--")
        )  # fmt: skip
        axes.text(
            x - 0.5, y + h, f"{number.confidence:.0%}", color=NUMBER_BOX_COLOR, fontsize=8,
            va="top",
        )  # fmt: skip
        for digit in number.digits:
            x, y, w, h = digit.box
            box = Rectangle(
                (x - 0.5, y - 0.5), w, h, fill=False, edgecolor=BOX_COLOR, linewidth=1.5
            )
            axes.add_patch(box)
            axes.text(
                x - 0.5, y - 1.5, str(digit.digit), color="white", fontsize=9, va="bottom",
                bbox={"facecolor": BOX_COLOR, "edgecolor": "none", "pad": 1.5},
            )  # fmt: skip
    if not numbers:
        axes.set_xlabel("no number found", color="#666666")
    return _save(figure, path)


def _draw_digit(axes: Axes, image: torch.Tensor) -> None:
    pixels = image.detach().cpu()
    # uint8 pixels span 0..255; float images (e.g. preprocessed) span 0..1.
    vmax = 255 if pixels.dtype == torch.uint8 else 1.0
    axes.imshow(pixels.float().numpy(), cmap=INK, vmin=0, vmax=vmax, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_color("#dddddd")


def plot_reliability(
    before: Mapping[str, Sequence[float]], after: Mapping[str, Sequence[float]], path: Path
) -> Path:
    """Reliability diagram from `digitlab.calibrate.reliability_bins`, before and after
    calibration. Left: accuracy against mean confidence per bin (on the diagonal = calibrated);
    right: how many images fall in each bin (log scale: nearly all MNIST answers are sure)."""
    figure = Figure(figsize=(8.0, 3.6))
    curve, counts = figure.subplots(1, 2)
    curve.plot([0, 1], [0, 1], color="#999999", linestyle="--", label="calibrated")
    bins = len(after["share"])
    centres = (np.arange(bins) + 0.5) / bins
    for offset, (data, color, label) in enumerate(
        ((before, TEST_COLOR, "before"), (after, TRAIN_COLOR, "after"))
    ):
        confidence, accuracy = np.array(data["confidence"]), np.array(data["accuracy"])
        shown = ~np.isnan(confidence)
        curve.plot(confidence[shown], accuracy[shown], marker="o", color=color, label=label)
        counts.bar(
            centres + (offset - 0.5) * 0.4 / bins,
            np.array(data["share"]),
            width=0.4 / bins,
            color=color,
            label=label,
        )
    curve.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (bin mean)", ylabel="accuracy")
    curve.set_title(f"Accuracy per confidence bin ({bins} bins)")
    curve.grid(alpha=0.3)
    curve.legend(loc="upper left")
    counts.set_yscale("log")
    counts.set(xlim=(0, 1), xlabel="confidence", ylabel="share of test images")
    counts.set_title("Images per bin")
    counts.legend(loc="upper left")
    figure.tight_layout()
    return _save(figure, path)


def _empty_figure(title: str, message: str) -> Figure:
    figure = Figure(figsize=(4.0, 1.2))
    figure.text(0.5, 0.65, title, ha="center", va="center", fontsize=11)
    figure.text(0.5, 0.3, message, ha="center", va="center", color="#666666")
    return figure


def _save(figure: Figure, path: Path) -> Path:
    """Write the PNG atomically; `Software: None` drops the version stamp for stable bytes."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return path
