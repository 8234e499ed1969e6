"""The run report: the Markdown text from plain data, and the whole run folder end to end."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from digitlab import plots, report, report_markdown
from digitlab.checkpoint import load_model, read_json, save_model, write_json
from digitlab.data import MNIST, iterate_batches
from digitlab.errors import CheckpointError
from digitlab.evaluation import evaluate
from digitlab.models import create_model
from digitlab.runs import RunPaths

IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")

HISTORY = [
    {
        "epoch": 1,
        "train_loss": 0.4321,
        "train_accuracy": 0.8765,
        "test_loss": 0.1234,
        "test_accuracy": 0.9612,
        "seconds": 11.0,
        "lr": 0.01,
    },
    {
        "epoch": 2,
        "train_loss": 0.0987,
        "train_accuracy": 0.9701,
        "test_loss": 0.0567,
        "test_accuracy": 0.9834,
        "seconds": 9.0,
        "lr": 0.0004,
    },
]


def fake_metrics() -> dict[str, Any]:
    matrix = [[0] * 10 for _ in range(10)]
    for d in range(10):
        matrix[d][d] = 990
    matrix[4][9] = 7  # 4 is most often mistaken for 9
    matrix[4][1] = 3
    per_class = [
        {"digit": d, "precision": 0.9 + d / 100, "recall": 0.95, "f1": 0.925, "support": 1000}
        for d in range(10)
    ]
    return {
        "accuracy": 0.98765,
        "loss": 0.04321,
        "per_class": per_class,
        "confusion_matrix": matrix,
        "misclassified": list(range(124)),
    }


def render(**overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "history": HISTORY,
        "config": {"model": "lenet", "epochs": 2, "subset": None, "shuffle": True},
        "metadata": {
            "model": "lenet",
            "epoch": 2,
            "complete": True,
            "digitlab_version": "0.1.0",
            "torch_version": "2.13.0",
            "data_checksum": "abc123def456",
        },
        "parameters": 60074,
        "plots": {"loss": "plots/loss.png", "misclassified": "plots/misclassified.png"},
    }
    arguments.update(overrides)
    return report_markdown.render_markdown_report(
        "default-20260101-000000", fake_metrics(), **arguments
    )


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    """The cells of the Markdown table rows whose first cell is `first_cell`."""
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]
    return [row for row in rows if row[0] == first_cell]


def test_summary_states_the_measured_result() -> None:
    text = render()
    lines = text.splitlines()
    assert lines[0] == "# Run `default-20260101-000000`"
    summary = lines[2]
    assert "98.77% test accuracy" in summary
    assert "124 of 10,000 wrong" in summary
    assert "test loss 0.0432" in summary
    assert "2 epochs in 20.0 s (10.0 s per epoch)" in summary
    assert "10,000 MNIST test images" in text
    assert "checkpoint of epoch 2" in text


def test_every_epoch_has_a_row() -> None:
    text = render()
    assert table_rows(text, "1")[0] == ["1", "0.4321", "87.65", "0.1234", "96.12", "11.0", "0.01"]
    second = table_rows(text, "2")[0]
    assert second == ["2", "0.0987", "97.01", "0.0567", "98.34", "9.0", "0.0004"]


def test_per_class_rows_with_their_worst_confusion() -> None:
    text = render()
    section = text.split("## Test set, digit by digit")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 10
    four = table_rows(section, "4")[0]
    assert four == ["4", "94.00", "95.00", "92.50", "1,000", "9 (7×)"]
    assert table_rows(section, "0")[0][-1] == "—"  # never confused


def test_plots_config_and_metadata() -> None:
    text = render()
    assert IMAGE_LINK.findall(text) == ["plots/loss.png", "plots/misclassified.png"]
    training = text.split("## Training")[1].split("\n## ")[0]
    assert "](plots/loss.png)" in training
    assert "](plots/misclassified.png)" in text.split("## Mistakes")[1].split("\n## ")[0]
    assert "| `subset` | — |" in text
    assert "| `shuffle` | `true` |" in text
    assert "| parameters | 60,074 |" in text
    assert "| data checksum | `abc123def456` |" in text
    assert "| checkpoint epoch | 2 (complete) |" in text
    assert "`2.13.0`" in text


def test_without_history_or_plots_there_is_no_empty_section() -> None:
    text = render(history=[], plots={}, config={})
    assert "epoch by epoch" not in text
    assert "## Mistakes" not in text
    assert "](" not in text  # no image links
    assert "## Config" not in text
    assert "epochs in" not in text
    assert "98.77% test accuracy" in text


def test_unknown_plots_are_still_shown() -> None:
    text = render(plots={"saliency": "plots/saliency.png"})
    assert "## More plots\n\n![saliency](plots/saliency.png)" in text


def test_table_cells_cannot_break_the_table() -> None:
    text = render(config={"note": "a | b"})
    assert "| `note` | `a \\| b` |" in text


# ---------------------------------------------------------------------------------------------
# End to end, on a real (tiny) run


STEPS, BATCH = 50, 64  # ~3,200 training digits: a weak model, so there are plenty of mistakes


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Train and evaluate on one CPU thread: for a 60k-parameter net, syncing threads costs
    more than it saves, and on a busy machine two threads made this file ~20× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, mnist: MNIST, one_thread: None) -> Path:
    """A run folder as `digitlab train` leaves it: checkpoint, config.json, history.json."""
    torch.manual_seed(0)
    model = create_model("lenet")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen = STEPS * BATCH
    for x, y in iterate_batches(mnist.train_images[:seen], mnist.train_labels[:seen], BATCH):
        loss = F.nll_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    root = tmp_path_factory.mktemp("runs") / "tiny-20260101-000000"
    config = {"recipe": "tiny", "model": "lenet", "epochs": 1, "batch_size": BATCH, "lr": 1e-3}
    metadata = {
        "model": "lenet",
        "config": config,
        "epoch": 1,
        "complete": True,
        "digitlab_version": "0.1.0",
        "torch_version": torch.__version__,
        "data_checksum": "0123456789ab",
    }
    save_model(RunPaths(root).model, model, metadata)
    write_json(RunPaths(root).config, config)
    history = [
        {
            "epoch": 1,
            "train_loss": 0.8,
            "train_accuracy": 0.75,
            "test_loss": 0.4,
            "test_accuracy": 0.88,
            "seconds": 1.5,
            "lr": 1e-3,
        }
    ]
    write_json(RunPaths(root).history, history)
    return root


@pytest.mark.slow  # run_dir trains a lenet for 50 steps
def test_write_run_report_end_to_end(
    run_dir: Path, mnist: MNIST, monkeypatch: pytest.MonkeyPatch
) -> None:
    grids: dict[str, tuple[torch.Tensor, list[str]]] = {}
    real_grid = plots.plot_digit_grid

    def spy(images: torch.Tensor, titles: list[str], path: Path, **kwargs: Any) -> Path:
        grids[path.name] = (images.clone(), list(titles))
        return real_grid(images, titles, path, **kwargs)

    monkeypatch.setattr(plots, "plot_digit_grid", spy)
    evaluation = report.write_run_report(run_dir, mnist)

    paths = RunPaths(run_dir)
    model, _ = load_model(paths.model)
    expected = evaluate(model, mnist.test_images, mnist.test_labels)
    metrics = read_json(paths.metrics)
    assert metrics["accuracy"] == expected.accuracy == evaluation.accuracy
    assert 0.5 < metrics["accuracy"] < 0.995  # learned something, and made mistakes to show
    assert metrics["misclassified"] == expected.misclassified
    assert (metrics["model"], metrics["epoch"], metrics["run_dir"]) == ("lenet", 1, str(run_dir))

    pngs = ["loss", "accuracy", "confusion_matrix", "misclassified", "samples", "reliability"]
    for name in pngs:
        assert (paths.plots / f"{name}.png").stat().st_size > 1000

    text = paths.report.read_text()
    assert text.startswith("# Run `tiny-20260101-000000`")
    assert f"**{metrics['accuracy'] * 100:.2f}% test accuracy**" in text
    links = IMAGE_LINK.findall(text)
    assert sorted(links) == sorted(f"plots/{name}.png" for name in pngs)
    assert all((run_dir / link).is_file() for link in links)
    assert "| parameters | 60,074 |" in text

    # The mistakes gallery: up to 40 digits, each really misclassified, most confident first.
    images, titles = grids["misclassified.png"]
    shown = report.most_confident_mistakes(evaluation, report.GALLERY_SIZE)
    assert len(shown) == len(titles) == min(40, len(evaluation.misclassified))
    assert torch.equal(images, mnist.test_images[shown])
    confidences = evaluation.confidences[shown]
    assert (confidences[:-1] >= confidences[1:]).all()
    for index, title in zip(shown, titles, strict=True):
        true, predicted = int(evaluation.labels[index]), int(evaluation.predictions[index])
        assert true != predicted
        assert title.startswith(f"{true}→{predicted} (")
    highest = evaluation.confidences[evaluation.misclassified].max()
    assert confidences[0] == highest

    # The samples gallery: the first 40 test digits in order.
    images, titles = grids["samples.png"]
    assert torch.equal(images, mnist.test_images[:40])
    assert titles[0].startswith(str(int(evaluation.predictions[0])))


def test_a_folder_without_a_checkpoint_is_a_clear_error(tmp_path: Path, mnist: MNIST) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        report.write_run_report(tmp_path, mnist)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
