"""The per-run report's Markdown, from plain data: what metrics.json, history.json and the
checkpoint's metadata hold. A pure function of its inputs, so the text can be tested, or
rebuilt, without a model or a run folder (`report.write_run_report` does the file work).
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from digitlab.resume import describe as describe_resume

GALLERY_SIZE = 40  # digits per gallery: four rows of ten, readable at a glance

# The report's pictures by name: `report.write_run_plots` returns these keys, the report shows
# them in their sections.
PLOT_CAPTIONS = {
    "loss": "Loss per epoch",
    "accuracy": "Accuracy per epoch",
    "confusion_matrix": "Confusion matrix (rows: true digit, columns: prediction)",
    "misclassified": f"The most confident mistakes (up to {GALLERY_SIZE})",
    "samples": f"The first {GALLERY_SIZE} test digits and their predictions",
    "reliability": "Reliability diagram: accuracy against confidence, before and after "
    "temperature scaling (on the diagonal = calibrated)",
}


def render_markdown_report(
    run_name: str,
    metrics: Mapping[str, Any],
    *,
    history: Sequence[Mapping[str, float]] = (),
    members: Sequence[Mapping[str, Any]] = (),
    config: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    parameters: int | None = None,
    plots: Mapping[str, str] | None = None,
) -> str:
    """The report as Markdown, from plain data.

    `metrics` is what metrics.json holds (`accuracy`, `loss`, `per_class`, and optionally
    `confusion_matrix` and `misclassified`); `history` the entries of history.json; `members`
    an ensemble's members (`member`, `seed`, `seconds` and their last epoch's entry); `config`
    config.json; `metadata` the checkpoint's metadata; `plots` maps plot names (the keys of
    PLOT_CAPTIONS) to links relative to the report. Each plot is shown in its section; absent
    data leaves out its section rather than showing an empty one.
    """
    metadata, plots = metadata or {}, plots or {}
    sections = [
        f"# Run `{run_name}`",
        _summary(metrics, history, metadata),
        _history_section(history, plots),
        _members_section(members),
        _per_class_section(metrics, plots),
        _trust_section(metrics, plots),
        _images("Mistakes", ["misclassified", "samples"], plots),
        _config_section(config or {}),
        _metadata_section(metadata, parameters),
        _images("More plots", [name for name in plots if name not in PLOT_CAPTIONS], plots),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _trust_section(metrics: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """ "How sure is it?": calibration before and after, and the "not a digit" figures."""
    calibration, rejection = metrics.get("calibration"), metrics.get("rejection")
    if not calibration:
        return ""
    temperature = calibration.get("temperature")
    lines = ["## How sure is it?", ""]
    if temperature is None:
        lines += [f"No temperature: {calibration.get('missing', 'none stored')}.", ""]
    else:
        lines += [
            f"Probabilities are divided by a temperature T = {temperature:.3f} fitted on "
            "held-out training images (never the test set). On the test set:",
            "",
        ]
    lines.append(
        _table(
            ["", "ECE (15 bins)", "NLL"],
            [
                [
                    "before",
                    _percent(calibration["ece_uncalibrated"]),
                    f"{calibration['nll_uncalibrated']:.4f}",
                ],
                ["after", _percent(calibration["ece"]), f"{calibration['nll']:.4f}"],
            ],
        )
    )
    if rejection:
        lines += ["", _rejection_text(rejection)]
    picture = _images(None, ["reliability"], plots)
    return "\n".join(lines) + (f"\n\n{picture}" if picture else "")


def _rejection_text(rejection: Mapping[str, Any]) -> str:
    text = (
        f'"Not a digit": on {rejection["digits"]:,} MNIST test digits and '
        f"{rejection['nondigits']:,} {rejection.get('nondigit_source', 'non-digits')}, the "
        f"detector's AUROC is {rejection['auroc']:.4f} and its FPR at 95% TPR "
        f"{_percent(rejection['fpr_at_95_tpr'])}."
    )
    if rejection.get("threshold") is not None:
        text += (
            f" At the stored threshold ({rejection['threshold']:.3f}) it rejects "
            f"{_percent(rejection['digits_rejected'])} of the test digits and "
            f"{_percent(rejection['nondigits_rejected'])} of the non-digits."
        )
    return text


def _images(heading: str | None, names: Sequence[str], plots: Mapping[str, str]) -> str:
    """The named plots that exist, each with its caption; "" if none does."""
    shown = [
        f"![{PLOT_CAPTIONS.get(name, name)}]({plots[name]})\n*{PLOT_CAPTIONS.get(name, name)}*"
        for name in names
        if name in plots
    ]
    if not shown:
        return ""
    body = "\n\n".join(shown)
    return f"## {heading}\n\n{body}" if heading else body


def _summary(
    metrics: Mapping[str, Any], history: Sequence[Mapping[str, float]], metadata: Mapping[str, Any]
) -> str:
    total = _test_count(metrics)
    wrong = metrics.get("misclassified")
    accuracy = f"**{_percent(metrics['accuracy'])} test accuracy**"
    if wrong is not None and total:
        accuracy += f" ({len(wrong):,} of {total:,} wrong)"
    parts = [accuracy, f"test loss {metrics['loss']:.4f}"]
    if history:
        wall = sum(entry["seconds"] for entry in history)
        epochs = len(history)
        parts.append(
            f"{epochs} epoch{'s' if epochs != 1 else ''} in {wall:.1f} s "
            f"({wall / epochs:.1f} s per epoch)"
        )
        held_out = metadata.get("config", {}).get("validation", 0)
        if history[-1].get("val_accuracy") is not None and held_out:
            parts.append(
                f"validation accuracy {_percent(history[-1]['val_accuracy'])} on the "
                f"{held_out:,} training images held out"
            )
    line = ", ".join(parts) + "."
    epoch = metadata.get("epoch")
    checkpoint = f"the checkpoint of epoch {epoch}" if epoch is not None else "the checkpoint"
    how = (
        f"Measured on the {total:,} MNIST test images, which training never sees, with "
        f"{checkpoint} in this folder (`model.safetensors`)."
        if total
        else f"Measured on the MNIST test images with {checkpoint} in this folder."
    )
    resumed = metadata.get("resumed") or []
    if resumed:
        times = "once" if len(resumed) == 1 else f"{len(resumed)} times"
        points = "; ".join(describe_resume(entry) for entry in resumed)
        how += f" Training was stopped and resumed {times}: {points}."
    return f"{line}\n\n{how}"


def _test_count(metrics: Mapping[str, Any]) -> int:
    per_class = metrics.get("per_class") or []
    return sum(int(row["support"]) for row in per_class)


def _history_section(history: Sequence[Mapping[str, float]], plots: Mapping[str, str]) -> str:
    curves = _images(None, ["loss", "accuracy"], plots)
    if not history and not curves:
        return ""
    header = ["epoch", "train loss", "train acc %", "test loss", "test acc %", "seconds", "lr"]
    validation = any(entry.get("val_accuracy") is not None for entry in history)
    if validation:
        header += ["val loss", "val acc %"]
    rows = []
    for entry in history:
        row = [
            str(int(entry["epoch"])),
            f"{entry['train_loss']:.4f}",
            f"{entry['train_accuracy'] * 100:.2f}",
            f"{entry['test_loss']:.4f}",
            f"{entry['test_accuracy'] * 100:.2f}",
            f"{entry['seconds']:.1f}",
            f"{entry['lr']:.3g}",
        ]
        if validation:
            row += [f"{entry['val_loss']:.4f}", f"{entry['val_accuracy'] * 100:.2f}"]
        rows.append(row)
    parts = ["## Training, epoch by epoch", _table(header, rows) if rows else "", curves]
    return "\n\n".join(part for part in parts if part)


def _members_section(members: Sequence[Mapping[str, Any]]) -> str:
    if not members:
        return ""
    validation = all(member.get("val_accuracy") is not None for member in members)
    header = ["member", "seed", "test acc %", *(["val acc %"] if validation else []), "seconds"]
    rows = [
        [
            str(member["member"]),
            str(member["seed"]),
            f"{member['test_accuracy'] * 100:.2f}",
            *([f"{member['val_accuracy'] * 100:.2f}"] if validation else []),
            f"{member['seconds']:.1f}",
        ]
        for member in members
    ]
    intro = (
        f"The {len(members)} models averaged, each at its final epoch; the folders `member-1` "
        f"… `member-{len(members)}` hold each one's checkpoint and history."
    )
    return f"## Ensemble members\n\n{intro}\n\n{_table(header, rows)}"


def _per_class_section(metrics: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    per_class = metrics.get("per_class") or []
    matrix_image = _images(None, ["confusion_matrix"], plots)
    if not per_class:
        return f"## Test set\n\n{matrix_image}" if matrix_image else ""
    matrix = metrics.get("confusion_matrix")
    header = ["digit", "precision %", "recall %", "F1 %", "support"]
    if matrix is not None:
        header.append("most often mistaken for")
    rows = []
    for row in per_class:
        cells = [
            str(row["digit"]),
            f"{row['precision'] * 100:.2f}",
            f"{row['recall'] * 100:.2f}",
            f"{row['f1'] * 100:.2f}",
            f"{int(row['support']):,}",
        ]
        if matrix is not None:
            cells.append(_most_confused(matrix, int(row["digit"])))
        rows.append(cells)
    parts = ["## Test set, digit by digit", _table(header, rows), matrix_image]
    return "\n\n".join(part for part in parts if part)


def _most_confused(matrix: Sequence[Sequence[int]], digit: int) -> str:
    """The prediction a true `digit` most often wrongly gets, e.g. "9 (12×)", or "—"."""
    mistakes = [(count, other) for other, count in enumerate(matrix[digit]) if other != digit]
    count, other = max(mistakes, key=lambda pair: pair[0])  # first digit wins a tie
    return f"{other} ({count}×)" if count else "—"


def _config_section(config: Mapping[str, Any]) -> str:
    if not config:
        return ""
    rows = [[f"`{key}`", _value(value)] for key, value in config.items()]
    return "## Config\n\n" + _table(["setting", "value"], rows, numbers=False)


def _metadata_section(metadata: Mapping[str, Any], parameters: int | None) -> str:
    epoch = metadata.get("epoch")
    if epoch is not None and "complete" in metadata:
        epoch = f"{epoch} ({'complete' if metadata['complete'] else 'training unfinished'})"
    entries = [
        ("model", _value(metadata.get("model"))),
        ("parameters", f"{parameters:,}" if parameters is not None else "—"),
        ("checkpoint epoch", "—" if epoch is None else str(epoch)),
        ("digitlab version", _value(metadata.get("digitlab_version"))),
        ("torch version", _value(metadata.get("torch_version"))),
        ("data checksum", _value(metadata.get("data_checksum"))),
    ]
    return "## Metadata\n\n" + _table(
        ["", "value"], [list(entry) for entry in entries], numbers=False
    )


def _value(value: Any) -> str:
    """A table cell: strings as code, missing values as a dash, the rest as JSON."""
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value)
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.2f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, numbers: bool = True) -> str:
    """A Markdown table; with `numbers`, all but the first column are right-aligned."""
    align = [":--"] + [("--:" if numbers else ":--")] * (len(header) - 1)
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
