"""The PNGs: valid, of the expected size, drawn (not blank), written atomically and reproducibly."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from digitlab import plots
from digitlab.data import MNIST


def history(epochs: int) -> list[dict[str, float]]:
    return [
        {
            "epoch": e,
            "train_loss": 0.5 / e,
            "train_accuracy": 0.90 + 0.01 * e,
            "test_loss": 0.4 / e,
            "test_accuracy": 0.91 + 0.01 * e,
            "seconds": 3.0,
            "lr": 0.01,
        }
        for e in range(1, epochs + 1)
    ]


def pixels(path: Path) -> np.ndarray:
    """The PNG as (H, W, 3) uint8, after checking it is a real PNG."""
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def count_near(rgb: np.ndarray, hex_color: str, tolerance: int = 30) -> int:
    """How many pixels are within `tolerance` (per channel) of a colour."""
    target = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb.astype(int) - target).max(axis=2) <= tolerance).sum())


def reddish(rgb: np.ndarray) -> int:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return int(((r - g > 60) & (r - b > 60)).sum())


@pytest.mark.parametrize("epochs", [1, 5])
def test_curves_are_pngs_with_both_lines(tmp_path: Path, epochs: int) -> None:
    paths = plots.plot_curves(history(epochs), tmp_path / "plots")

    assert [p.name for p in paths] == ["loss.png", "accuracy.png"]
    for path in paths:
        rgb = pixels(path)
        assert rgb.shape == (400, 640, 3)
        # markers and lines of both series are drawn in their colours
        assert count_near(rgb, plots.TRAIN_COLOR) > 50
        assert count_near(rgb, plots.TEST_COLOR) > 50


def test_curves_need_at_least_one_epoch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        plots.plot_curves([], tmp_path)


def test_more_epochs_draw_more_line(tmp_path: Path) -> None:
    one = pixels(plots.plot_curves(history(1), tmp_path / "one")[0])
    five = pixels(plots.plot_curves(history(5), tmp_path / "five")[0])
    assert count_near(five, plots.TEST_COLOR) > 2 * count_near(one, plots.TEST_COLOR)


def known_matrix(mistakes: bool) -> torch.Tensor:
    matrix = torch.diag(torch.arange(980, 1080, 10))
    if mistakes:
        matrix[4, 9] = 12  # a true 4 predicted as 9, twelve times
        matrix[7, 1] = 1
    return matrix


def test_confusion_matrix_shows_mistakes_in_red(tmp_path: Path) -> None:
    clean = pixels(plots.plot_confusion_matrix(known_matrix(False), tmp_path / "clean.png"))
    confused = pixels(plots.plot_confusion_matrix(known_matrix(True), tmp_path / "cm.png"))

    assert clean.shape == confused.shape == (560, 600, 3)
    assert reddish(clean) == 0  # right answers only: all blue
    assert reddish(confused) > 500  # two red cells of roughly 45×45 pixels each


def test_confusion_matrix_must_be_square(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix(torch.zeros(10, 9, dtype=torch.long), tmp_path / "x.png")


def test_digit_grid_with_a_short_last_row(tmp_path: Path, mnist: MNIST) -> None:
    images = mnist.test_images[:13]
    titles = [f"{int(label)}" for label in mnist.test_labels[:13]]
    path = plots.plot_digit_grid(images, titles, tmp_path / "deep" / "grid.png", columns=5)

    rgb = pixels(path)
    # 5 columns of 0.9 in and 3 rows of 1.05 in at 100 dpi
    assert abs(rgb.shape[1] - 450) <= 2
    assert abs(rgb.shape[0] - 315) <= 2
    # the empty slots of the last row are left white: its right half has no ink
    last_row = rgb[-100:, -180:]
    assert (last_row > 240).all()
    assert (rgb[:100, -180:] < 100).any()  # while the first row there has dark ink


def test_digit_grid_title_adds_height_and_colors_apply(tmp_path: Path, mnist: MNIST) -> None:
    images = mnist.test_images[:10]
    titles = ["7→2 (91%)"] * 10
    plain = pixels(plots.plot_digit_grid(images, titles, tmp_path / "a.png"))
    red = pixels(
        plots.plot_digit_grid(
            images,
            titles,
            tmp_path / "b.png",
            title="Mistakes",
            title_colors=[plots.MISTAKE_COLOR] * 10,
        )
    )
    assert red.shape[0] > plain.shape[0]
    assert reddish(plain) == 0
    assert reddish(red) > 100


def test_digit_grid_checks_its_inputs_and_handles_nothing(tmp_path: Path) -> None:
    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match="3 images but 2 titles"):
        plots.plot_digit_grid(images, ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="colours"):
        plots.plot_digit_grid(images, ["a", "b", "c"], tmp_path / "x.png", title_colors=["red"])

    empty = plots.plot_digit_grid(images[:0], [], tmp_path / "empty.png", title="Mistakes")
    assert pixels(empty).shape[0] > 0


def test_single_digit(tmp_path: Path, mnist: MNIST) -> None:
    path = plots.plot_digit(mnist.test_images[0], "7 (99.8%)", tmp_path / "digit.png")
    rgb = pixels(path)
    assert rgb.shape == (330, 300, 3)
    assert (rgb < 50).mean() > 0.05  # the 7 itself, drawn large in dark ink

    batch_of_one = plots.plot_digit(mnist.test_images[:1], "7", tmp_path / "one.png")
    assert pixels(batch_of_one).shape == rgb.shape
    with pytest.raises(ValueError, match="one image"):
        plots.plot_digit(mnist.test_images[:2], "two", tmp_path / "two.png")


def test_writes_are_atomic_and_reproducible(tmp_path: Path, mnist: MNIST) -> None:
    images, titles = mnist.test_images[:4], ["a", "b", "c", "d"]
    first = plots.plot_digit_grid(images, titles, tmp_path / "grid.png").read_bytes()
    second = plots.plot_digit_grid(images, titles, tmp_path / "grid.png").read_bytes()

    assert first == second
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary files left


def test_importing_digitlab_does_not_load_matplotlib() -> None:
    code = (
        "import sys, digitlab, digitlab.report\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
