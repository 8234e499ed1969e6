"""A number reader's evaluation and run report: whole texts right, per kind of picture.

`evaluate_reader(checkpoint, mnist)` reads PER_KIND pictures of each kind of
`synth.pictures` (MNIST **test** digits and held-out fonts, drawn as photos, seed SEED) the way
`digitlab read` reads them, with the checkpoint's temperature and "not a number" threshold, and
scores the whole texts, the numbers refused, and how well the numbers' confidences are
calibrated. `write_reader_report(run_dir, mnist)` writes metrics.json, the curves and report.md.
The pictures are generated (numbers typed in the held-out fonts need those fonts installed), so
this is a workflow of training and benchmarking, never of reading.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digitlab.checkpoint import atomic_path, read_json, write_json
from digitlab.data import MNIST
from digitlab.runs import RunPaths

PER_KIND = 100
SEED = 7  # the tests' pictures; bench/read_numbers.py scores seed 2026
SHOWN_MISTAKES = 20


@dataclass(frozen=True)
class ReaderEvaluation:
    accuracy: float  # pictures whose whole text was read right
    loss: float  # mean CTC loss of the pictures holding one number (its line image)
    per_kind: dict[str, float]
    refused: float  # pictures holding a number that were answered with none
    ece: float  # numbers' calibrated confidence against being right (15 bins)
    pictures: int
    mistakes: list[dict[str, str]] = field(default_factory=list)  # kind, truth, read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_reader(
    checkpoint: Path, mnist: MNIST, *, device: torch.device | str = "cpu"
) -> ReaderEvaluation:
    from digitlab.read import FoundLines, NumberReader, find_lines
    from digitlab.synth.pictures import KINDS, make_pictures
    from digitlab.training.reading import LineSet, score_lines

    reader = NumberReader.from_checkpoint(checkpoint, str(device))
    per_kind, refused, holding, confidences, mistakes = {}, 0, 0, [], []
    lines, line_texts = [], []
    for kind in KINDS:
        pairs = make_pictures(mnist.test_images, mnist.test_labels, kind, PER_KIND, SEED)
        found = [find_lines(picture) for picture, _ in pairs]
        readings = reader.read_found(found)
        right = 0
        for (_, truth), reading, lines_found in zip(pairs, readings, found, strict=True):
            read = reading.text or ""
            right += read == truth
            if truth:
                holding += 1
                refused += read == ""
            if read != truth:
                mistakes.append({"kind": kind, "truth": truth, "read": read})
            truths = truth.replace("\n", " ").split()
            if len(reading.numbers) == len(truths):
                confidences += [
                    (n.confidence, n.text == t)
                    for n, t in zip(reading.numbers, truths, strict=True)
                ]
            # One number, found as one: its line image has a loss.
            if isinstance(lines_found, FoundLines) and len(truths) == len(lines_found.numbers) == 1:
                lines.append(lines_found.numbers[0].pixels)
                line_texts.append(truth)
        per_kind[kind] = right / len(pairs)
    loss, _ = score_lines(reader.model, LineSet(lines, line_texts), reader.device)
    total = len(per_kind) * PER_KIND
    return ReaderEvaluation(
        accuracy=float(np.mean(list(per_kind.values()))),
        loss=loss,
        per_kind=per_kind,
        refused=refused / max(1, holding),
        ece=string_ece(confidences),
        pictures=total,
        mistakes=mistakes,
    )


def string_ece(confidences: Sequence[tuple[float, bool]]) -> float:
    """Expected calibration error of (confidence, right) pairs, binned as the digits' ECE is."""
    from torchmetrics.functional.classification import binary_calibration_error

    from digitlab.calibrate import ECE_BINS

    if not confidences:
        return 0.0
    p = torch.tensor([c for c, _ in confidences], dtype=torch.float64)
    right = torch.tensor([r for _, r in confidences], dtype=torch.long)
    return float(binary_calibration_error(p, right, n_bins=ECE_BINS, norm="l1"))


def write_reader_report(
    run_dir: Path, mnist: MNIST, *, device: torch.device | str = "cpu"
) -> ReaderEvaluation:
    """Evaluate a reader run's checkpoint; write metrics.json, plots/ and report.md."""
    from digitlab import plots
    from digitlab.checkpoint import read_model_file

    paths = RunPaths(Path(run_dir))
    evaluation = evaluate_reader(paths.model, mnist, device=device)
    _, metadata = read_model_file(paths.model)
    metrics = {**evaluation.to_dict(), "run_dir": str(paths.root), "model": metadata["model"]}
    metrics["calibration"] = metadata.get("reader", {})
    write_json(paths.metrics, metrics)
    history = read_json(paths.history) if paths.history.is_file() else []
    written = plots.plot_curves(history, paths.plots) if history else []
    text = render_reader_report(
        paths.root.resolve().name,
        metrics,
        history,
        [p.relative_to(paths.root).as_posix() for p in written],
    )
    with atomic_path(paths.report) as tmp:
        tmp.write_text(text)
    return evaluation


def render_reader_report(
    name: str, metrics: Mapping[str, Any], history: Sequence[Mapping[str, Any]], images: list[str]
) -> str:
    calibration = metrics.get("calibration") or {}
    lines = [
        f"# Run `{name}`",
        "",
        f"**{metrics['accuracy']:.1%}** of {metrics['pictures']} pictures read right, whole text "
        f"(MNIST test digits and held-out fonts as photos, `digitlab.synth.pictures`, seed "
        f"{SEED}); {metrics['refused']:.1%} of the numbers refused.",
        "",
        "| kind | read right |",
        "| --- | ---: |",
        *(f"| {kind} | {share:.1%} |" for kind, share in metrics["per_kind"].items()),
        "",
        "## Training",
        "",
        "| epoch | train loss | train right | test right | val loss | val right | seconds |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {h['epoch']} | {h['train_loss']:.3f} | {h['train_accuracy']:.1%} | "
            f"{h['test_accuracy']:.1%} | {_or_dash(h.get('val_loss'), '{:.3f}')} | "
            f"{_or_dash(h.get('val_accuracy'), '{:.1%}')} | {h['seconds']:.0f} |"
            for h in history
        ),
        "",
        *(f"![{Path(image).stem}]({image})" for image in images),
        "",
        "## How sure is it?",
        "",
        _calibration_line(calibration, metrics["ece"]),
        "",
        "## Mistakes",
        "",
        *(
            f"- {m['kind']}: `{m['truth']!r}` read as `{m['read']!r}`"
            for m in metrics["mistakes"][:SHOWN_MISTAKES]
        ),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _calibration_line(calibration: Mapping[str, Any], ece: float) -> str:
    temperature = calibration.get("temperature")
    if temperature is None:
        return f"No temperature: {calibration.get('reason', 'none stored')}."
    return (
        f"Temperature {temperature:.3f}, fitted on {calibration.get('fitted_on')} numbers of "
        f"held-out training digits (ECE there {calibration.get('ece_uncalibrated', 0):.2%} → "
        f"{calibration.get('ece', 0):.2%}); on the test pictures the numbers' ECE is {ece:.2%}. "
        f"A number under {calibration.get('threshold', 0):.3f} confidence is refused "
        f'("not a number"), {calibration.get("false_refusal_rate", 0):.1%} of held-out ones.'
    )


def _or_dash(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
