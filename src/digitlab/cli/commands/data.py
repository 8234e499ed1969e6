"""`digitlab data download|verify|info`: fetch, check or describe the MNIST files."""

import argparse
import sys
from typing import Any

from digitlab.cli import options
from digitlab.cli.options import EXIT_ERROR
from digitlab.cli.output import download_bar


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = options.add_command(subparsers, "data", "download, verify or describe the MNIST files")
    parser.add_argument("action", choices=["download", "verify", "info"])
    options.add_data_dir(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from digitlab import data
    from digitlab.download import download_mnist

    root = data.resolve_data_dir(args.data_dir)
    if args.action == "download":
        fetched = download_mnist(root, on_progress=download_bar())
        print(
            f"downloaded {len(fetched)} file(s) to {root}" if fetched else f"all present in {root}"
        )
    statuses = data.verify_mnist(root)
    print(f"MNIST folder: {root}")
    for status in statuses:
        where = f"  ({status.path})" if status.path else ""
        print(f"  {status.spec.name:26} {status.problem or 'ok'}{where}")
    if any(s.problem for s in statuses):
        print(
            "digitlab: some MNIST files are missing or damaged; run `digitlab data download`, "
            f"or point {data.ENV_VAR} or --data-dir at a folder that has them",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if args.action == "info":
        mnist = data.load_mnist(root)
        for split, labels in (("train", mnist.train_labels), ("test", mnist.test_labels)):
            counts = " ".join(f"{d}:{n}" for d, n in enumerate(data.class_counts(labels)))
            print(f"{split:5} {len(labels):6} images  {counts}")
    return 0
