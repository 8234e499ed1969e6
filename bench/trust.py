"""How sure is it: calibration and "not a digit" figures of trained runs, as Markdown tables.

    python bench/trust.py runs/default-X runs/fast-Y runs/best-Z

For each run: test-set ECE (15 bins) and NLL before and after its temperature; the share of
rejected MNIST test digits, wild photo digits (digitlab.synth.photos) and generated non-digit
photos (digitlab.synth.marks: doodles, letters and words in the held-out handwriting fonts,
empty forms, drawn apart from what the detector trains on); AUROC and FPR at 95% TPR of the
"not a digit" score (the detector's, plus the classifier's doubt where the run weighs it), and
of the classifier's own maximum probability as the baseline it replaces; and the cost per image
of calibration and rejection against the classifier's forward pass, measured in the same
process.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from digitlab.calibrate import TemperatureScaled, evaluate_checkpoint, temperature_of
from digitlab.data import load_mnist, to_float
from digitlab.predict import Predictor
from digitlab.preprocess import preprocess_image
from digitlab.reject import REJECTION, read_rejector, rejection_summary
from digitlab.runs import resolve_checkpoint
from digitlab.synth.marks import make_mark_set
from digitlab.synth.photos import make_wild_set

WILD_DIGITS = 1000
NON_DIGITS = 600
TIMING_BATCHES = (1, 256)


def views(images: list) -> torch.Tensor:
    """Photos → the (N, 1, 28, 28) views the model sees (photos with no ink found are dropped)."""
    found = [preprocess_image(image.convert("L")).pixels for image in images]
    return torch.stack([v for v in found if v is not None])


def per_image_ms(function, pixels: torch.Tensor, repeats: int = 20) -> float:
    with torch.inference_mode():
        function(pixels)
        started = time.perf_counter()
        for _ in range(repeats):
            function(pixels)
    return (time.perf_counter() - started) / repeats / len(pixels) * 1000


def measure(run: Path, mnist, wild: torch.Tensor, nondigits: torch.Tensor) -> dict:
    checkpoint = resolve_checkpoint(run)
    evaluation, model, metadata = evaluate_checkpoint(checkpoint, mnist)
    calibration = evaluation.calibration or {}
    rejector = read_rejector(checkpoint)
    test = to_float(mnist.test_images)
    row = {
        "run": run.name,
        "recipe": metadata["config"]["recipe"],
        "accuracy": evaluation.accuracy,
        "temperature": temperature_of(metadata),
        **{k: calibration[k] for k in ("ece_uncalibrated", "ece", "nll_uncalibrated", "nll")},
    }
    # Baseline: the classifier's own (calibrated) top probability, threshold set on MNIST test
    # digits at the detector's false-rejection rate (which flatters the baseline).
    scaled = TemperatureScaled(model, temperature_of(metadata) or 1.0).eval()
    with torch.inference_mode():
        doubt = [-scaled(x).exp().max(1).values for x in (test, nondigits)]
    base = rejection_summary(
        doubt[0], doubt[1], float(torch.quantile(doubt[0], 1 - REJECTION.false_rejection_rate))
    )
    row |= {"baseline_auroc": base["auroc"], "baseline_fpr95": base["fpr_at_95_tpr"],
            "baseline_nondigits_rejected": base["nondigits_rejected"]}  # fmt: skip
    if rejector is not None:
        # The score the answers use: the detector's with the classifier's doubt, if the run
        # has a weight for it (digitlab.reject.with_doubt).
        predictor = Predictor.from_checkpoint(checkpoint, "cpu")
        scores = [
            predictor.not_digit_scores(x, predictor.predict_probabilities(x))
            for x in (test, wild, nondigits)
        ]
        threshold = predictor.reject_threshold
        summary = rejection_summary(scores[0], scores[2], threshold)
        row |= {
            "auroc": summary["auroc"],
            "fpr95": summary["fpr_at_95_tpr"],
            "digits_rejected": summary["digits_rejected"],
            "wild_rejected": float((scores[1] > threshold).float().mean()),
            "nondigits_rejected": summary["nondigits_rejected"],
        }
    for batch in TIMING_BATCHES:
        pixels = test[:batch]
        classify = per_image_ms(model, pixels)
        row[f"classify_ms_b{batch}"] = classify
        row[f"calibrate_extra_b{batch}"] = per_image_ms(scaled, pixels) - classify
        if rejector is not None:
            row[f"reject_ms_b{batch}"] = per_image_ms(rejector, pixels)
    return row


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def print_tables(rows: list[dict]) -> None:
    print("| run | accuracy | T | ECE before | ECE after | NLL before | NLL after |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        t = "—" if r["temperature"] is None else f"{r['temperature']:.3f}"
        print(f"| {r['recipe']} | {pct(r['accuracy'])} | {t} | {pct(r['ece_uncalibrated'])} | "
              f"{pct(r['ece'])} | {r['nll_uncalibrated']:.4f} | {r['nll']:.4f} |")  # fmt: skip
    print()
    print(f"Rejection: {WILD_DIGITS} wild photo digits, {NON_DIGITS} non-digit photos "
          "(doodles, handwriting letters), 10,000 MNIST test digits.")  # fmt: skip
    print()
    print("| run | MNIST rejected | wild rejected | non-digits rejected | AUROC | FPR@95%TPR | "
          "max-prob AUROC | max-prob FPR@95%TPR | max-prob non-digits rejected |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        cells = [
            pct(r.get("digits_rejected")),
            pct(r.get("wild_rejected")),
            pct(r.get("nondigits_rejected")),
            f"{r.get('auroc', float('nan')):.4f}",
            pct(r.get("fpr95")),
            f"{r['baseline_auroc']:.4f}",
            pct(r["baseline_fpr95"]),
            pct(r["baseline_nondigits_rejected"]),
        ]
        print(f"| {r['recipe']} | " + " | ".join(cells) + " |")
    print()
    print("Cost per image (ms), same process: classifier forward, extra for the temperature, "
          "detector forward.")  # fmt: skip
    print()
    print(
        "| run | "
        + " | ".join(f"classify b{b} | +temperature b{b} | detector b{b}" for b in TIMING_BATCHES)
        + " |"
    )
    print("|---|" + "--:|" * (3 * len(TIMING_BATCHES)))
    for r in rows:
        cells = []
        for b in TIMING_BATCHES:
            cells += [f"{r[f'classify_ms_b{b}']:.4f}", f"{r[f'calibrate_extra_b{b}']:+.4f}",
                      f"{r.get(f'reject_ms_b{b}', float('nan')):.4f}"]  # fmt: skip
        print(f"| {r['recipe']} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mnist = load_mnist()
    wild_set = make_wild_set(
        mnist.test_images.numpy(), mnist.test_labels.numpy(), WILD_DIGITS, seed=1
    )
    wild = views([image for image, _ in wild_set])
    nondigits = views([image for image, _ in make_mark_set(NON_DIGITS, seed=2)])
    print(f"views: {len(wild)} wild digits, {len(nondigits)} non-digits with ink found\n")
    print_tables([measure(run, mnist, wild, nondigits) for run in args.runs])


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
