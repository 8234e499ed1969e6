r"""Every benchmark peer (bench/peers.py) on generated number pictures: accuracy and speed.

    cd bench && DIGITLAB_DATA=../../shared/data/mnist nice -n 10 ../.venv/bin/python \
        peers_check.py --count 100

The pictures are `digitlab.synth.pictures`', seed 2026 as in read_numbers.py: numbers of 2-6
MNIST test digits (spaced, close, touching) and held-out handwriting fonts, one number per
picture; and two numbers on two lines, read as "top\nbottom". A cell gives the whole strings
right, then in brackets the same with spaces ignored (a peer that splits one number into
groups, "12 345", is wrong strictly but read every digit in order).
"""

import argparse
import datetime
import os
import sys
from pathlib import Path

import torch
from machine import cpu_name  # bench/, beside this script
from peers import available_peers, timed_read

from digitlab.data import load_mnist
from digitlab.synth.pictures import make_pictures

KINDS = ("spaced", "close", "touching", "fonts")

SEED = 2026


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="MNIST folder (default: $DIGITLAB_DATA)")
    parser.add_argument("--count", type=int, default=100, help="pictures per kind (default 100)")
    parser.add_argument(
        "--two-lines", type=int, default=20, help="pictures of two lines (default 20)"
    )
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(),
        help="ONNX Runtime and Tesseract threads (default: torch's, as digitlab reads with)",
    )  # fmt: skip
    parser.add_argument("--only", help="peers whose name contains this text")
    args = parser.parse_args()

    mnist = load_mnist(args.data_dir) if args.data_dir else load_mnist()
    images, labels = mnist.test_images, mnist.test_labels
    sets = {kind: make_pictures(images, labels, kind, args.count, SEED) for kind in KINDS}
    sets["two lines"] = make_pictures(images, labels, "two_lines", args.two_lines, SEED)
    peers = [p for p in available_peers(args.threads) if (args.only or "") in p.name]
    load_before = os.getloadavg()[0]
    results: dict[tuple[str, str], tuple[str, str]] = {}
    for kind, pairs in sets.items():  # kinds outside, so a change of load hits every peer
        pictures, truths = [p for p, _ in pairs], [t for _, t in pairs]
        for peer in peers:
            peer.read(pictures[:1])  # warm up (first runs of a model are slower)
            answers, speed = timed_read(peer, pictures)
            results[peer.name, kind] = (accuracy(answers, truths), f"{speed:.1f}")
            print(kind, peer.name, *results[peer.name, kind], file=sys.stderr)

    header = ["peer", *(f"{k} ({len(v)})" for k, v in sets.items())]
    for title, column in (("Whole strings right (spaces ignored)", 0), ("Pictures/s", 1)):
        print(f"\n{title}:\n")
        rows = [[p.name, *(results[p.name, k][column] for k in sets)] for p in peers]
        print(table(header, rows))
    print("\nPeers:\n")
    sizes = [f"{p.model_size_mb:.1f}" if p.model_size_mb else "-" for p in peers]
    rows = [[p.name, p.version, size] for p, size in zip(peers, sizes, strict=True)]
    print(table(["peer", "version", "weights MB"], rows))
    print(
        f"\nMachine: {cpu_name()}, {os.cpu_count()} cores, {args.threads} threads per peer, "
        f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after, "
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}."
    )


def accuracy(answers: list[str], truths: list[str]) -> str:
    strict = sum(a == t for a, t in zip(answers, truths, strict=True))
    loose = sum(a.replace(" ", "") == t for a, t in zip(answers, truths, strict=True))
    return f"{strict / len(truths):.0%} ({loose / len(truths):.0%})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


if __name__ == "__main__":
    main()
