"""Uploaded images decoded and cleaned off the event loop — into one digit in MNIST format for
/predict, into the line images of its numbers for /read — in worker processes
(`ProcessCleaner`, what `digitlab serve` uses), or in threads of the server process
(`ThreadCleaner`, the default of `create_app`, and the fallback where workers cannot run).

Cleaning a photo is milliseconds of Python and numpy (a 140×140 PNG: about 2.2 ms), beside
about 1 ms for everything else a request costs. In threads of one process that is one GIL at a
time whatever the cores: on 2 cores with 32 clients uploading PNGs the server answered 211
req/s, p99 204 ms, and spent about 7 ms of CPU per request as threads handed the GIL back and
forth. Worker processes clean in parallel, each with a GIL of its own, while the event loop
keeps the HTTP, the batched forward passes and the answers.

Each worker is fed over a pipe of its own, watched by the event loop, one image at a time.
Measured on 1,000 such PNGs, 32 at a time, 2 workers: 0.5 ms of CPU per image on top of the
cleaning itself, against 1.65 ms through `concurrent.futures.ProcessPoolExecutor`, whose
hand-offs between its own threads and queues cost more than the work. (uvicorn's own
workers, whole servers sharing the port, left the keep-alive connections where they were
accepted: 31 of 32 on one worker in our measurements.)

The workers need a fork server (`digitlab.workers`) and an event loop that watches pipes
(`loop.add_reader`): Linux and macOS have both, Windows neither. Where one is missing,
`start_cleaner` cleans in threads instead, whatever the number of workers asked for.
"""

import asyncio
import logging
import os
from collections import deque
from typing import Protocol, cast

import numpy as np
import torch
from starlette.concurrency import run_in_threadpool

from digitlab.predict import preprocess_to_array
from digitlab.preprocess import Preprocessed, preprocess_path
from digitlab.read import FoundLines, find_lines_in
from digitlab.workers import clean_forever, has_fork_server, worker_context

logger = logging.getLogger(__name__)

# `digitlab serve`'s default: one worker per core, up to this many. Each is a process with
# torch imported (about 150 MB), and beyond a few the event loop, not the cleaning, limits
# how many uploads a second one server answers.
MAX_DEFAULT_WORKERS = 4
STOP_TIMEOUT = 5.0  # seconds a worker gets to exit once its pipe is closed
EXIT_WAIT = 0.1  # seconds to wait for a vanished worker's exit code, for the message
# Images sent to a worker at a time: the next one waits in its pipe while it cleans one, so
# it never waits for the event loop between them.
IN_FLIGHT_PER_WORKER = 2
# Larger uploads are written to a worker's pipe from a thread: a pipe holds 64 KB, and
# writing more would block the event loop until the worker reads it.
SEND_INLINE_BYTES = 32 * 1024
# What a worker does with a message, by the index its first byte holds (workers.clean_forever).
JOBS = (preprocess_to_array, find_lines_in)
PREPROCESS, FIND_LINES = 0, 1


def default_workers() -> int:
    """Worker processes for `digitlab serve`: one per CPU core this process may use, at most
    MAX_DEFAULT_WORKERS; none on a single core, where they could only add overhead, nor
    where the platform has no fork server."""
    if not has_fork_server():
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return 0 if cores < 2 else min(cores, MAX_DEFAULT_WORKERS)


def why_no_workers(loop: asyncio.AbstractEventLoop) -> str | None:
    """Why cleaning workers cannot run here (None when they can)."""
    if not has_fork_server():
        return "this platform has no fork server"
    ours, theirs = os.pipe()
    try:
        loop.add_reader(ours, lambda: None)
        loop.remove_reader(ours)
    except NotImplementedError:  # e.g. Windows' proactor loop
        return f"the event loop ({type(loop).__name__}) cannot watch pipes"
    finally:
        os.close(ours)
        os.close(theirs)
    return None


async def start_cleaner(workers: int) -> "Cleaner":
    """`workers` cleaning processes, started and warm; threads when `workers` is 0, or where
    processes cannot run (said once in the log)."""
    if not workers:
        return ThreadCleaner()
    why = why_no_workers(asyncio.get_running_loop())
    if why is not None:
        logger.warning("cleaning uploads in threads, not %d worker processes: %s", workers, why)
        return ThreadCleaner()
    cleaner = ProcessCleaner(workers)
    await cleaner.start()
    return cleaner


class Cleaner(Protocol):
    """Turns an uploaded image's bytes into one digit in MNIST format (or the reason there is
    none), or into its numbers' line images (or the reason there are none); raises ImageError
    for bytes that are no readable image."""

    async def preprocess(self, data: bytes) -> Preprocessed: ...

    async def find_lines(self, data: bytes) -> FoundLines | str: ...

    def close(self) -> None: ...


class ThreadCleaner:
    """`preprocess_path` and `find_lines` in the server process's thread pool."""

    async def preprocess(self, data: bytes) -> Preprocessed:
        return await run_in_threadpool(preprocess_path, data)

    async def find_lines(self, data: bytes) -> FoundLines | str:
        return await run_in_threadpool(find_lines_in, data)

    def close(self) -> None:
        pass


# What a worker sends back: what its job returned, or the ImageError it raised.
Answer = object


class WorkerDied(RuntimeError):
    """A worker process ended while cleaning an image (killed, or a crash in a decoder)."""


class ProcessCleaner:
    """`preprocess_path` and `find_lines` in `workers` processes, started by `start`. Each
    worker has up to
    IN_FLIGHT_PER_WORKER images sent to it, so that it starts the next as soon as it answers;
    requests beyond that wait in turn. A worker that dies fails the requests it holds with
    WorkerDied, which the app answers as a 500, and is replaced for the requests after them."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._slots: asyncio.Queue[int] = asyncio.Queue()  # worker indices, one per free place
        self._processes: list[_Worker] = []

    async def start(self) -> None:
        """Start every worker and wait until each has cleaned a first image, so the first
        requests don't wait for the workers' imports."""
        self._processes = [_Worker() for _ in range(self.workers)]
        blank = _message(PREPROCESS, _blank_png())
        await asyncio.gather(*(worker.ask(blank) for worker in self._processes))
        for _ in range(IN_FLIGHT_PER_WORKER):
            for index in range(self.workers):
                self._slots.put_nowait(index)

    async def preprocess(self, data: bytes) -> Preprocessed:
        answer = await self._ask(_message(PREPROCESS, data))
        view, reason = cast(tuple[np.ndarray | None, str | None], answer)
        return Preprocessed(torch.from_numpy(view) if view is not None else None, reason)

    async def find_lines(self, data: bytes) -> FoundLines | str:
        found = await self._ask(_message(FIND_LINES, data))
        assert isinstance(found, FoundLines | str)
        return found

    async def _ask(self, message: bytes) -> object:
        index = await self._slots.get()
        try:
            return await self._worker(index).ask(message)
        finally:
            self._slots.put_nowait(index)

    def _worker(self, index: int) -> "_Worker":
        """The worker at `index`, a new one if it has ended."""
        worker = self._processes[index]
        if worker.ended is not None:
            worker.stop()
            worker = self._processes[index] = _Worker()
        return worker

    def close(self) -> None:
        for worker in self._processes:
            worker.stop()
        self._processes = []


def _message(job: int, data: bytes) -> bytes:
    """What a worker reads: the job's index in one byte, then the image's bytes."""
    return bytes((job,)) + data


class _Worker:
    """One worker process (`digitlab.workers.clean_forever`) and the server's end of its pipe.
    It answers in the order it was asked, so the answers waiting are a queue."""

    def __init__(self) -> None:
        context = worker_context()
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=clean_forever, args=(theirs, JOBS), daemon=True)
        self.process.start()
        theirs.close()  # the worker holds it now; closing ours lets us see the worker end
        self._waiting: deque[asyncio.Future[Answer]] = deque()
        self._sending = asyncio.Lock()  # one message at a time on the pipe
        self._loop: asyncio.AbstractEventLoop | None = None  # watching the pipe, once asked
        self.ended: str | None = None  # why the worker is gone, once it is

    async def ask(self, data: bytes) -> object:
        """One message (`_message`) answered: what its job returned, or the ImageError."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            loop.add_reader(self.connection.fileno(), self._read_answers)
            # uvloop (libuv) makes a watched descriptor non-blocking; the pipe's reads and
            # writes expect whole messages: an answer larger than the socket's buffer (a
            # page's line images) would fail half read, an upload half written.
            os.set_blocking(self.connection.fileno(), True)
        answer: asyncio.Future[Answer] = loop.create_future()
        async with self._sending:
            if self.ended is not None:
                raise WorkerDied(self.ended)
            self._waiting.append(answer)  # before sending: the answer may come at once
            try:
                if len(data) <= SEND_INLINE_BYTES:
                    self.connection.send_bytes(data)
                else:  # the pipe would block the event loop until the worker drains it
                    await loop.run_in_executor(None, self.connection.send_bytes, data)
            except OSError:
                self._end()
        result = await answer
        if isinstance(result, BaseException):
            raise result
        return result

    def _read_answers(self) -> None:
        """The event loop's callback when the pipe is readable: hand out the answers there."""
        try:
            while self.connection.poll():
                result = self.connection.recv()
                answer = self._waiting.popleft()
                if not answer.done():  # its request may have been cancelled
                    answer.set_result(result)
        except (OSError, EOFError):  # the worker is gone, perhaps while idle
            self._end()

    def _end(self) -> None:
        """The worker is gone: fail every request waiting for it."""
        if self.ended is None:
            self.process.join(EXIT_WAIT)
            self.ended = f"a worker cleaning images ended (exit code {self.process.exitcode})"
            if self._loop is not None:
                self._loop.remove_reader(self.connection.fileno())
        while self._waiting:
            answer = self._waiting.popleft()
            if not answer.done():
                answer.set_exception(WorkerDied(self.ended))

    def stop(self) -> None:
        if self._loop is not None and self.ended is None:
            self._loop.remove_reader(self.connection.fileno())
        self.ended = self.ended or "the server is stopping"
        self.connection.close()  # the worker reads the end of its pipe and returns
        self.process.join(STOP_TIMEOUT)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def _blank_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (28, 28), 255).save(buffer, "PNG")
    return buffer.getvalue()
