"""`create_app(checkpoint)`: the FastAPI application, with the models loaded once at startup.

    digitlab serve --checkpoint runs/default-20250101-120000 --port 8000

or, from Python: `uvicorn.run(create_app("runs/..."), host="127.0.0.1", port=8000)`.
"""

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

import digitlab
from digitlab.bundle import Bundle, check_runtime, load_bundle
from digitlab.device import select_device
from digitlab.errors import ImageError
from digitlab.lines import LINE_HEIGHT
from digitlab.mnist_format import IMAGE_SIZE
from digitlab.predict import Predictor
from digitlab.read import NumberReader
from digitlab.runs import default_checkpoint, resolve_checkpoint
from digitlab.serve.batching import BatchingPredictor, BatchingReader
from digitlab.serve.cleaning import start_cleaner
from digitlab.serve.docs import add_offline_docs
from digitlab.serve.inputs import UNPROCESSABLE
from digitlab.serve.limits import BodySizeLimit
from digitlab.serve.routes import STATIC_DIR, router

# A phone photo of a digit is a few MB, and base64 in JSON adds a third: 16 MB is ample
# while keeping a flood of large uploads from exhausting memory.
MAX_BODY_BYTES = 16 * 1024 * 1024

logger = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class _Serving:
    """What the lifespan loads: where from, and how."""

    checkpoint: Path  # the classifier's
    reader_checkpoint: Path  # the number reader's (perhaps the same file)
    device: str
    runtime: str
    reject: bool
    reject_threshold: float | None
    threads: int | None
    workers: int


def create_app(
    checkpoint: str | Path | None = None,
    *,
    reader: str | Path | None = None,
    device: str = "auto",
    threads: int | None = 1,
    max_body_bytes: int = MAX_BODY_BYTES,
    runtime: str = "torch",
    reject: bool = True,
    reject_threshold: float | None = None,
    workers: int = 0,
) -> FastAPI:
    """The app serving `checkpoint`'s classifier (a run folder or .safetensors file; None =
    the newest classifier's run, else the packaged model) and `reader`'s number reader (None:
    the checkpoint's own if it carries one, else the newest reader run, else the packaged
    model's; see `reader_checkpoint`).

    Both checkpoints and the device are checked now, so a missing, damaged or unfitting
    checkpoint or an unusable device fails before the server starts (with CheckpointError or
    ConfigError, which `digitlab serve` prints as one line); the models are loaded for
    serving once, when the server starts. `threads` sets torch's CPU threads for the server
    process (None keeps torch's default): one request is one tiny forward pass, which a single
    thread runs fastest. `runtime="onnx"` serves the classifier with ONNX Runtime on the CPU
    (same threads). `reject` and `reject_threshold` are `Predictor.from_bundle`'s ("not a
    digit"). `workers` processes decode and clean uploaded images (0: threads of this process
    do; see digitlab.serve.cleaning), started with the server.
    """
    checkpoint_file = resolve_checkpoint(checkpoint)
    select_device(device)
    check_runtime(runtime, device)
    # Read and built on the CPU, then dropped: a fraction of a second, against the uvicorn
    # traceback the same error would give from inside the lifespan.
    checked = load_bundle(checkpoint_file, device="cpu")
    Predictor.from_bundle(checked)  # a reader's run is no classifier: said here
    reader_file = reader_checkpoint(checked, reader)
    if reader_file != checkpoint_file:
        NumberReader.from_bundle(load_bundle(reader_file, device="cpu"))
    else:
        NumberReader.from_bundle(checked)
    serving = _Serving(
        checkpoint_file, reader_file, device, runtime, reject, reject_threshold, threads, workers
    )
    app = FastAPI(
        title="digitlab",
        version=digitlab.__version__,
        summary="Recognise handwritten digits and read numbers with models trained by digitlab.",
        lifespan=_lifespan(serving),
        docs_url=None,  # add_offline_docs serves /docs without a CDN
        redoc_url=None,
    )
    app.state.reader_checkpoint = str(reader_file)  # known now: `digitlab serve` says it
    app.include_router(router)
    add_offline_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodySizeLimit, limit=max_body_bytes)
    app.add_exception_handler(ImageError, _invalid_image)
    app.add_exception_handler(Exception, _internal_error)
    return app


def reader_checkpoint(bundle: Bundle, reader: str | Path | None = None) -> Path:
    """Where /read's reader comes from: `reader` (a run folder or file) if given; else the
    served checkpoint if it carries a reader; else the newest reader run under ./runs, else
    the packaged model."""
    if reader is not None:
        return resolve_checkpoint(reader, task="numbers")
    if bundle.reader is not None:
        return bundle.path
    return default_checkpoint("numbers")


def _lifespan(serving: _Serving) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        previous_threads = torch.get_num_threads()
        if serving.threads is not None:
            # Set in the event loop's thread, which runs every forward pass (batching.py):
            # with OpenMP the setting belongs to the thread that makes it.
            torch.set_num_threads(serving.threads)
        predictor, reader = _load_warm(serving)
        app.state.predictor = predictor
        app.state.batcher = BatchingPredictor(predictor)
        app.state.reader = reader
        app.state.reader_batcher = BatchingReader(reader)
        app.state.checkpoint = str(serving.checkpoint)
        app.state.cleaner = await start_cleaner(serving.workers)
        logger.info("serving %s (%s)", serving.checkpoint, predictor.model_name)
        # Torch, numpy and FastAPI leave ~200k long-lived objects that every full garbage
        # collection scans again: measured under load, a 100 ms pause every few seconds, which
        # was the whole p99. Frozen, the collector skips them (it finds nothing there anyway).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            app.state.cleaner.close()
            # Undo both for whatever runs next in this process (e.g. the next test).
            gc.unfreeze()
            torch.set_num_threads(previous_threads)

    return lifespan


def _load_warm(serving: _Serving) -> tuple[Predictor, NumberReader]:
    """The classifier and the reader, each checkpoint read once; one throwaway pass of each,
    so the first real request doesn't pay for lazy set-up."""
    bundle = load_bundle(serving.checkpoint, device=serving.device, runtime=serving.runtime)
    predictor = Predictor.from_bundle(
        bundle, reject=serving.reject, reject_threshold=serving.reject_threshold
    )
    if serving.reader_checkpoint != serving.checkpoint:
        bundle = load_bundle(serving.reader_checkpoint, device=serving.device)
    reader = NumberReader.from_bundle(bundle)
    predictor.predict_tensor(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE))
    reader.decode([np.zeros((LINE_HEIGHT, 2 * LINE_HEIGHT), np.float32)])
    return predictor, reader


async def _invalid_image(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, UNPROCESSABLE)


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    # A bug, not a bad request. Starlette re-raises it after this answer, so uvicorn logs the
    # traceback; the client gets JSON like every other error, and the server keeps running.
    return JSONResponse({"detail": "internal server error; see the server's log"}, 500)
