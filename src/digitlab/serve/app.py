"""`create_app(checkpoint)`: the FastAPI application, with the model loaded once at startup.

    digitlab serve --checkpoint runs/default-20250101-120000 --port 8000

or, from Python: `uvicorn.run(create_app("runs/..."), host="127.0.0.1", port=8000)`.
"""

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

import digitlab
from digitlab.checkpoint import load_model
from digitlab.device import select_device
from digitlab.errors import ImageError
from digitlab.predict import Predictor, check_runtime
from digitlab.runs import resolve_checkpoint
from digitlab.serve.batching import BatchingPredictor, ThreadBridgePredictor
from digitlab.serve.cleaning import Cleaner, ProcessCleaner, ThreadCleaner
from digitlab.serve.docs import add_offline_docs
from digitlab.serve.inputs import UNPROCESSABLE
from digitlab.serve.limits import BodySizeLimit
from digitlab.serve.routes import STATIC_DIR, router

# A phone photo of a digit is a few MB, and base64 in JSON adds a third: 16 MB is ample
# while keeping a flood of large uploads from exhausting memory.
MAX_BODY_BYTES = 16 * 1024 * 1024

logger = logging.getLogger(__name__)

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    checkpoint: str | Path | None = None,
    *,
    device: str = "auto",
    threads: int | None = 1,
    max_body_bytes: int = MAX_BODY_BYTES,
    runtime: str = "torch",
    reject: bool = True,
    reject_threshold: float | None = None,
    workers: int = 0,
) -> FastAPI:
    """The app serving `checkpoint` (a run folder or .safetensors file; None = newest run).

    The checkpoint and the device are checked now, so a missing, damaged or unfitting
    checkpoint or an unusable device fails before the server starts (with CheckpointError or
    ConfigError, which `digitlab serve` prints as one line), and the model is loaded for
    serving once, when the server starts. `threads` sets torch's CPU threads for the server
    process (None keeps torch's default): one request is one tiny forward pass, which a single
    thread runs fastest. `runtime="onnx"` serves with ONNX Runtime on the CPU (same threads).
    `reject` and `reject_threshold` are `Predictor.from_checkpoint`'s ("not a digit").
    `workers` processes decode and clean uploaded images (0: threads of this process do; see
    digitlab.serve.cleaning), started with the server.
    """
    checkpoint_file = resolve_checkpoint(checkpoint)
    select_device(device)
    check_runtime(runtime, device)
    # Read and fitted on the CPU, then dropped: a fraction of a second, against the uvicorn
    # traceback the same error would give from inside the lifespan.
    load_model(checkpoint_file, "cpu")
    app = FastAPI(
        title="digitlab",
        version=digitlab.__version__,
        summary="Recognise handwritten digits with a model trained by digitlab.",
        lifespan=_lifespan(
            checkpoint_file,
            threads,
            workers,
            lambda: Predictor.from_checkpoint(
                checkpoint_file,
                device,
                runtime,
                reject=reject,
                reject_threshold=reject_threshold,
            ),
        ),
        docs_url=None,  # add_offline_docs serves /docs without a CDN
        redoc_url=None,
    )
    app.include_router(router)
    add_offline_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodySizeLimit, limit=max_body_bytes)
    app.add_exception_handler(ImageError, _invalid_image)
    app.add_exception_handler(Exception, _internal_error)
    return app


def _lifespan(
    checkpoint: Path, threads: int | None, workers: int, load: Callable[[], Predictor]
) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        previous_threads = torch.get_num_threads()
        if threads is not None:
            # Set in the event loop's thread, which runs every forward pass (batching.py):
            # with OpenMP the setting belongs to the thread that makes it.
            torch.set_num_threads(threads)
        predictor = _load_warm(load)
        app.state.predictor = predictor
        app.state.batcher = BatchingPredictor(predictor)
        app.state.bridge = ThreadBridgePredictor(app.state.batcher)
        app.state.checkpoint = str(checkpoint)
        app.state.cleaner = await _start_cleaner(workers)
        logger.info("serving %s (%s)", checkpoint, predictor.model_name)
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


async def _start_cleaner(workers: int) -> Cleaner:
    if not workers:
        return ThreadCleaner()
    cleaner = ProcessCleaner(workers)
    await cleaner.start()
    return cleaner


def _load_warm(load: Callable[[], Predictor]) -> Predictor:
    predictor = load()
    # One throwaway prediction, so the first real request doesn't pay for lazy set-up.
    predictor.predict_tensor(torch.zeros(1, 1, 28, 28))
    return predictor


async def _invalid_image(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error)}, UNPROCESSABLE)


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    # A bug, not a bad request. Starlette re-raises it after this answer, so uvicorn logs the
    # traceback; the client gets JSON like every other error, and the server keeps running.
    return JSONResponse({"detail": "internal server error; see the server's log"}, 500)
