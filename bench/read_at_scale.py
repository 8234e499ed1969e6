"""Reading large folders: images/s with 1 and 2 worker processes, and peak memory vs. file count.

    DIGITLAB_DATA=../shared/data/mnist .venv/bin/python bench/read_at_scale.py \\
        --checkpoint runs/default-... --folder /tmp/digitlab-wild --files 20000 --small 2000

The first run writes `--files` photo-like PNGs of MNIST test digits (digitlab.synth.photos: ink on
tinted paper, lighting gradient, noise, JPEG artefacts) into `--folder`: `--unique` rendered ones
and copies of them under new names; later runs reuse them. Each measurement is a fresh process
running `digitlab predict FOLDER --jsonl --out FILE --workers N`, timed from inside (model load
included, Python start-up not). Peak RSS is the reading process's own (`ru_maxrss`; the workers,
children of the forkserver, are not counted). Targets (issue 10): 2 workers >= 1.6x the images/s
of 1; the peak RSS for all files within 10% of that for `--small`. The rows run in the order 1, 2,
1, 2 workers so that a change in the machine's load shows up as a difference between the repeats
rather than as a speed-up.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEED_TARGET, MEMORY_TARGET = 1.6, 0.10


def make_folder(folder: Path, files: int, unique: int) -> None:
    """`files` wild PNGs named by index and true digit, e.g. 000123-7.png (kept if present):
    `unique` rendered ones, then copies of them under new names (rendering costs more than
    reading, and a copy takes exactly as long to decode as its original)."""
    folder.mkdir(parents=True, exist_ok=True)
    have = {p.name for p in folder.glob("*.png")}
    if len(have) >= files:
        return
    print(f"writing {files:,} PNGs ({unique:,} distinct) to {folder} …", file=sys.stderr)
    import numpy as np

    from digitlab.data import load_mnist
    from digitlab.synth.photos import make_wild_image

    mnist = load_mnist()
    rng = np.random.default_rng(0)
    originals = []
    for index in range(min(unique, files)):
        digit = index % len(mnist.test_images)
        path = folder / f"{index:06d}-{int(mnist.test_labels[digit])}.png"
        if path.name not in have:
            make_wild_image(mnist.test_images[digit].numpy(), rng).save(path)
        originals.append(path)
    for index in range(len(originals), files):
        original = originals[index % len(originals)]
        copy = folder / f"{index:06d}-{original.stem.split('-')[1]}.png"
        if copy.name not in have:
            shutil.copyfile(original, copy)


def child(argv: list[str]) -> None:
    from digitlab.cli import main

    started = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"code": code, "seconds": seconds, "rss_mib": own}))


def first_files(folder: Path, count: int, into: Path) -> Path:
    """A folder of links to the first `count` PNGs of `folder` (a command line of 20,000
    paths would pass the kernel's limit, a folder does not)."""
    into.mkdir()
    for path in sorted(folder.glob("*.png"))[:count]:
        (into / path.name).symlink_to(path.resolve())
    return into


def measure(checkpoint: str, folder: Path, workers: int, out: Path) -> dict:
    argv = ["predict", str(folder), "--checkpoint", checkpoint, "--device", "cpu"]
    argv += ["--jsonl", "--out", str(out), "--workers", str(workers)]
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(argv)], capture_output=True, text=True
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"predict failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.splitlines()[-1])
    lines = sum(1 for _ in out.open())
    return result | {"files": lines, "workers": workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help="run folder or .safetensors to read with")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/digitlab-wild"))
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--small", type=int, default=2000, help="file count for the RSS baseline")
    parser.add_argument("--unique", type=int, default=2000, help="distinct images rendered")
    parser.add_argument("--speed-files", type=int, help="files for the speed rows (default all)")
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    if not args.checkpoint:
        parser.error("--checkpoint is required")
    make_folder(args.folder, args.files, args.unique)
    load = os.getloadavg()
    print(f"{args.files:,} PNGs in {args.folder}; {os.cpu_count()} cores; load average "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the start\n")  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out.jsonl"
        every = first_files(args.folder, args.files, Path(scratch) / "every")
        few = first_files(args.folder, args.small, Path(scratch) / "few")
        speed = every
        if args.speed_files:
            speed = first_files(args.folder, args.speed_files, Path(scratch) / "speed")
        rows = [measure(args.checkpoint, speed, workers, out) for workers in (1, 2, 1, 2)]
        small = measure(args.checkpoint, few, 2, out)
        large = measure(args.checkpoint, every, 2, out) if speed != every else None
    print("| workers | files | seconds | images/s | peak RSS MiB |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for row in [*rows, small] + ([large] if large else []):
        print(f"| {row['workers']} | {row['files']:,} | {row['seconds']:.1f} | "
              f"{row['files'] / row['seconds']:.1f} | {row['rss_mib']:.0f} |")  # fmt: skip
    one = [r["files"] / r["seconds"] for r in rows if r["workers"] == 1]
    two = [r["files"] / r["seconds"] for r in rows if r["workers"] == 2]
    ratios = [b / a for a, b in zip(one, two, strict=True)]
    big = large or next(r for r in rows if r["workers"] == 2)
    growth = big["rss_mib"] / small["rss_mib"] - 1
    load = os.getloadavg()
    print(f"\n2 workers / 1 worker: {', '.join(f'{r:.2f}x' for r in ratios)} "
          f"(target >= {SPEED_TARGET}x)")  # fmt: skip
    print(
        f"peak RSS {big['files']:,} files vs {small['files']:,}: {growth:+.1%} "
        f"(target within {MEMORY_TARGET:.0%}); load average {load[0]:.1f} at the end"
    )


if __name__ == "__main__":
    main()
