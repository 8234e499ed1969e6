"""The per-run report: evaluate a run's model, write metrics.json, the plots and report.md.

`write_run_report(run_dir, mnist)` does the file work; `render_markdown_report(...)` is a pure
function from plain data (what the JSON files hold) to the Markdown text, so the text can be
tested, or rebuilt, without a model or a run folder.

The report opens with its measured result and how it was measured, like cifar10-airbench.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digitlab.checkpoint import atomic_path, read_json, write_json
from digitlab.data import MNIST
from digitlab.evaluation import Evaluation
from digitlab.models import count_parameters
from digitlab.report_markdown import GALLERY_SIZE, render_markdown_report
from digitlab.runs import RunPaths


def write_run_report(
    run_dir: Path,
    mnist: MNIST,
    *,
    device: torch.device | str = "cpu",
    model: nn.Module | None = None,
    test_log_probs: torch.Tensor | None = None,
) -> Evaluation:
    """Evaluate the run's checkpoint on the test set; write metrics.json, plots/ and report.md.
    A number reader's run is scored on pictures of numbers instead (`reading_report`).

    Right after training, `model` (the checkpoint's network, in memory) and `test_log_probs`
    (its log-probabilities on the test set, `RunResult.test_log_probs`) spare loading the
    checkpoint and evaluating the test set a second time; the files written are the same."""
    from digitlab.calibrate import evaluate_checkpoint
    from digitlab.checkpoint import read_model_file
    from digitlab.models import task_of

    paths = RunPaths(Path(run_dir))
    if task_of(read_model_file(paths.model)[1]["model"]) == "numbers":
        from digitlab.reading_report import write_reader_report

        return write_reader_report(paths.root, mnist, device=device)  # type: ignore[return-value]
    evaluation, model, metadata = evaluate_checkpoint(
        paths.model, mnist, device=device, model=model, test_log_probs=test_log_probs
    )
    metrics = {
        **evaluation.to_dict(),
        "run_dir": str(paths.root),
        "model": metadata["model"],
        "epoch": metadata.get("epoch"),
        "resumed": metadata.get("resumed", []),  # where training was resumed, if it was
    }
    write_json(paths.metrics, metrics)

    history = read_json(paths.history) if paths.history.is_file() else []
    config = read_json(paths.config) if paths.config.is_file() else metadata.get("config", {})
    plots = write_run_plots(paths.plots, evaluation, mnist.test_images, history)
    text = render_markdown_report(
        paths.root.resolve().name,
        metrics,
        history=history,
        members=_member_results(paths.root, int(metadata.get("members", 1))),
        config=config,
        metadata=metadata,
        parameters=count_parameters(model),
        plots={name: path.relative_to(paths.root).as_posix() for name, path in plots.items()},
    )
    with atomic_path(paths.report) as tmp:
        tmp.write_text(text)
    return evaluation


def _member_results(run_dir: Path, members: int) -> list[dict[str, Any]]:
    """Each ensemble member's seed, last epoch and training seconds (none for one model)."""
    results = []
    for index, member in enumerate(RunPaths(run_dir).members(members) if members > 1 else (), 1):
        history = read_json(member.history)
        seconds = sum(entry["seconds"] for entry in history)
        seed = read_json(member.config)["seed"]
        results.append({**history[-1], "member": index, "seed": seed, "seconds": seconds})
    return results


def write_run_plots(
    out_dir: Path,
    evaluation: Evaluation,
    test_images: torch.Tensor,
    history: Sequence[Mapping[str, float]],
) -> dict[str, Path]:
    """Every picture of the report, by name (the keys of PLOT_CAPTIONS)."""
    from digitlab import plots  # matplotlib is heavy: load it only when drawing

    written: dict[str, Path] = {}
    if history:
        written["loss"], written["accuracy"] = plots.plot_curves(history, out_dir)
    written["confusion_matrix"] = plots.plot_confusion_matrix(
        evaluation.confusion_matrix, out_dir / "confusion_matrix.png"
    )
    mistakes = most_confident_mistakes(evaluation, GALLERY_SIZE)
    written["misclassified"] = plots.plot_digit_grid(
        test_images[mistakes],
        [_prediction_title(evaluation, i) for i in mistakes],
        out_dir / "misclassified.png",
        title="Most confident mistakes: true→predicted (confidence)",
        title_colors=[plots.MISTAKE_COLOR] * len(mistakes),
    )
    if evaluation.calibration is not None:
        written["reliability"] = plots.plot_reliability(
            evaluation.calibration["reliability_uncalibrated"],
            evaluation.calibration["reliability"],
            out_dir / "reliability.png",
        )
    first = list(range(min(GALLERY_SIZE, len(test_images))))
    written["samples"] = plots.plot_digit_grid(
        test_images[first],
        [_prediction_title(evaluation, i) for i in first],
        out_dir / "samples.png",
        title="First test digits: prediction (confidence); red = wrong, true→predicted",
        title_colors=[_title_color(evaluation, i) for i in first],
    )
    return written


def most_confident_mistakes(evaluation: Evaluation, limit: int) -> list[int]:
    """Indices of wrongly predicted digits, most confident first (ties: lower index first)."""
    wrong = torch.tensor(evaluation.misclassified, dtype=torch.long)
    if len(wrong) == 0:
        return []
    order = torch.sort(evaluation.confidences[wrong], descending=True, stable=True).indices
    return wrong[order[:limit]].tolist()


def _prediction_title(evaluation: Evaluation, index: int) -> str:
    """A gallery title: "7 (99%)" when right, "7→2 (91%)" (true→predicted) when wrong."""
    true, predicted = int(evaluation.labels[index]), int(evaluation.predictions[index])
    confidence = f"{float(evaluation.confidences[index]):.0%}"
    answer = str(predicted) if true == predicted else f"{true}→{predicted}"
    return f"{answer} ({confidence})"


def _title_color(evaluation: Evaluation, index: int) -> str:
    from digitlab.plots import MISTAKE_COLOR

    right = bool(evaluation.labels[index] == evaluation.predictions[index])
    return "black" if right else MISTAKE_COLOR


# ---------------------------------------------------------------------------------------------
# The Markdown text
