"""`digitlab export`: ONNX or TorchScript, checked against PyTorch (needs the `export` extra)."""

import argparse
from pathlib import Path
from typing import Any

from digitlab.cli import options


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = options.add_command(
        subparsers,
        "export",
        "export a trained model to ONNX or TorchScript, checked against PyTorch",
    )
    parser.add_argument("checkpoint", type=Path, metavar="RUN_DIR|CHECKPOINT")
    parser.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    parser.add_argument("--out", type=Path, required=True, metavar="FILE")
    return parser


def run(args: argparse.Namespace) -> int:
    from digitlab.export import export_checkpoint
    from digitlab.runs import resolve_checkpoint

    path = export_checkpoint(resolve_checkpoint(args.checkpoint), args.out, args.format)
    print(
        f"wrote {path}: input 'pixels' float32 [N,1,28,28] in [0,1], "
        "output 'log_probs' [N,10]; matches PyTorch within 1e-4"
    )
    return 0
