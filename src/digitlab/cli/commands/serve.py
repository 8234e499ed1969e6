"""`digitlab serve`: the REST API and the draw-a-digit page (needs the `serve` extra)."""

import argparse
import sys
from pathlib import Path
from typing import Any

from digitlab.cli import options


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = options.add_command(
        subparsers, "serve", "serve the REST API and the draw-a-digit web page"
    )
    options.add_checkpoint(parser)
    parser.add_argument(
        "--reader", type=Path, metavar="RUN|CHECKPOINT",
        help="the number reader of POST /read and the page's Read button: a reader run "
        "(`digitlab train --recipe reader`) or a checkpoint carrying one (default: the "
        "checkpoint's own reader if it carries one, else the newest reader run in ./runs, else "
        "the packaged model's)",
    )  # fmt: skip
    parser.add_argument(
        "--host", default="127.0.0.1", help="0.0.0.0 makes it reachable from other machines"
    )
    parser.add_argument("--port", type=options.port, default=8000, help="TCP port")
    options.add_device(parser)
    parser.add_argument(
        "--workers", type=options.whole_number, metavar="N",
        help="decode and clean uploaded images (find their lines, for /read) in N processes "
        "beside the server's, which answers the requests and runs the models; 0 cleans them in "
        "threads of the server process (default: one per CPU core, at most 4; 0 on a single "
        "core, and where there is no fork server, e.g. Windows, which always uses threads)",
    )  # fmt: skip
    options.add_runtime(parser)
    options.add_rejection(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    # Importing digitlab.serve names the extra to install when fastapi or uvicorn is missing.
    from digitlab.serve import create_app
    from digitlab.serve.cleaning import default_workers

    workers = default_workers() if args.workers is None else args.workers
    app = create_app(
        args.checkpoint,
        reader=args.reader,
        device=args.device,
        runtime=args.runtime,
        workers=workers,
        **options.rejection_options(args),
    )  # fails here on a bad checkpoint
    import uvicorn

    if args.reader is None:
        print(f"digitlab: reading numbers with {app.state.reader_checkpoint}", file=sys.stderr)
    print(f"digitlab: serving on http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
