"""Load-test `digitlab serve`: N concurrent keep-alive clients, single-image predicts, a table.

    .venv/bin/python bench/serve_load.py --checkpoint runs/default-20250101-120000
    .venv/bin/python bench/serve_load.py --clients 32 --seconds 10 --payload pixels png
    .venv/bin/python bench/serve_load.py --payload png --workers 0   # cleaning in threads

The server runs in a subprocess on a free loopback port, exactly as a user would start it.
The load generator is a few dozen lines of raw asyncio HTTP/1.1 (one keep-alive connection per
client, requests prepared in advance) so that it takes as little CPU as possible from the
server it measures, which shares the same cores. Payloads are real MNIST test digits: `pixels`
sends the 28×28 JSON, `png` uploads them as 140×140 dark-on-light PNGs (the server then does
the full photo clean-up). Latency is measured by the client, from sending a request to reading
the last byte of its answer. Answers other than 200, and broken connections, count as errors.
"""

import argparse
import asyncio
import importlib.util
import io
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"
DIGITS = 1000  # distinct test digits cycled through by the clients
WARMUP_SECONDS = 1.0
COLUMNS = (
    "payload", "clients", "req/s", "p50 ms", "p95 ms", "p99 ms", "mean ms", "requests", "errors",
    "wrong digits", "server CPU", "server CPU ms/request", "client CPU",
)  # fmt: skip
SERVER_START_TIMEOUT = 60.0
DIGIT_FIELD = re.compile(rb'"digit":(\d+|null)')


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: int = 0
    wrong_digits: int = 0


# --- payloads ------------------------------------------------------------------------------


def pixels_request(pixels: np.ndarray, port: int) -> bytes:
    body = json.dumps({"pixels": pixels.tolist()}, separators=(",", ":")).encode()
    return _http_post(port, "application/json", body)


def png_request(pixels: np.ndarray, port: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(255 - pixels).resize((140, 140), Image.Resampling.BILINEAR).save(buffer, "PNG")
    boundary = "digitlab-bench-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="digit.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body += buffer.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    return _http_post(port, f"multipart/form-data; boundary={boundary}", body)


def _http_post(port: int, content_type: str, body: bytes) -> bytes:
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --- the load generator --------------------------------------------------------------------


async def client(
    port: int, requests: list[tuple[bytes, int]], offset: int, stop_at: float, tally: Tally
) -> None:
    """One keep-alive connection sending requests back to back until `stop_at`."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        i = offset
        while time.perf_counter() < stop_at:
            request, label = requests[i % len(requests)]
            i += 1
            started = time.perf_counter()
            try:
                writer.write(request)
                status, body = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                tally.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
                continue
            elapsed = time.perf_counter() - started
            if status != 200:
                tally.errors += 1
                continue
            tally.latencies.append(elapsed)
            # A regex, not json.loads: parsing the 784-integer view would cost the client
            # more CPU than everything else it does.
            digit = DIGIT_FIELD.search(body)
            if digit is None or digit.group(1) != str(label).encode():
                tally.wrong_digits += 1
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
    )
    return status, await reader.readexactly(length)


async def load(port: int, requests: list[tuple[bytes, int]], clients: int, seconds: float) -> Tally:
    """Run `clients` connections for `seconds`, each starting at a different digit."""
    tally = Tally()
    stop = time.perf_counter() + seconds
    spread = len(requests) // clients
    await asyncio.gather(*(client(port, requests, c * spread, stop, tally) for c in range(clients)))
    return tally


def measure(
    server_pid: int, port: int, requests: list[tuple[bytes, int]], clients: int, seconds: float
) -> tuple[Tally, float, float]:
    """(tally, server CPU %, client CPU %) after a short warm-up that is not counted."""
    asyncio.run(load(port, requests, clients, WARMUP_SECONDS))
    server_before, client_before = cpu_seconds(server_pid), time.process_time()
    tally = asyncio.run(load(port, requests, clients, seconds))
    server_cpu = (cpu_seconds(server_pid) - server_before) / seconds * 100
    client_cpu = (time.process_time() - client_before) / seconds * 100
    return tally, server_cpu, client_cpu


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live child processes (the server's
    workers under `--workers N`), from Linux's /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return own + sum(cpu_seconds(child) for child in _children(pid))


def _children(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


# --- the server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def start_server(
    checkpoint: str, port: int, log: "io.BufferedRandom", workers: int | None = None
) -> subprocess.Popen[bytes]:
    """`digitlab serve` in a subprocess, once it answers /health."""
    command = ["serve", "--checkpoint", checkpoint, "--host", HOST, "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    server = subprocess.Popen([sys.executable, "-m", "digitlab", *command], stdout=log, stderr=log)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited:\n{log.read().decode(errors='replace')}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=1):
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"the server did not answer /health within {SERVER_START_TIMEOUT} s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# --- the report ----------------------------------------------------------------------------


def percentile_ms(latencies: list[float], q: float) -> float:
    return float(np.percentile(latencies, q)) * 1000 if latencies else float("nan")


def uvicorn_speedups() -> str:
    """Which HTTP parser and event loop uvicorn picks (the server shares this environment)."""
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{parser} + {loop}"


def table_row(
    payload: str, clients: int, seconds: float, measured: tuple[Tally, float, float]
) -> str:
    tally, server_cpu, client_cpu = measured
    count = len(tally.latencies)
    cells = [
        payload,
        str(clients),
        f"{count / seconds:.0f}",
        f"{percentile_ms(tally.latencies, 50):.1f}",
        f"{percentile_ms(tally.latencies, 95):.1f}",
        f"{percentile_ms(tally.latencies, 99):.1f}",
        f"{statistics.fmean(tally.latencies) * 1000:.1f}" if count else "nan",
        str(count),
        str(tally.errors),
        str(tally.wrong_digits),
        f"{server_cpu:.0f}%",
        f"{server_cpu / 100 * seconds / count * 1000:.2f}" if count else "nan",
        f"{client_cpu:.0f}%",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="run folder or .safetensors (default: newest run)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per payload")
    parser.add_argument(
        "--payload", nargs="+", choices=["pixels", "png"], default=["pixels"], help="what to send"
    )
    parser.add_argument(
        "--workers", type=int, help="the server's --workers (default: digitlab serve's own)"
    )
    args = parser.parse_args()

    from digitlab.data import load_mnist
    from digitlab.runs import resolve_checkpoint

    checkpoint = str(resolve_checkpoint(args.checkpoint))
    mnist = load_mnist()
    images = mnist.test_images[:DIGITS].numpy()
    labels = mnist.test_labels[:DIGITS].tolist()
    port = free_port()
    makers = {"pixels": pixels_request, "png": png_request}

    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryFile() as log:
        server = start_server(checkpoint, port, log, args.workers)
        try:
            for payload in args.payload:
                requests = [
                    (makers[payload](image, port), label)
                    for image, label in zip(images, labels, strict=True)
                ]
                measured = measure(server.pid, port, requests, args.clients, args.seconds)
                rows.append(table_row(payload, args.clients, args.seconds, measured))
        finally:
            stop_server(server)
    load_after = os.getloadavg()

    print(
        f"digitlab serve under load: {checkpoint}, {args.seconds:g} s per payload after "
        f"{WARMUP_SECONDS:g} s of warm-up; uvicorn with {uvicorn_speedups()}; "
        f"--workers {'default' if args.workers is None else args.workers}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; load average before "
        f"{load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)\n"
    )
    print(f"| {' | '.join(COLUMNS)} |")
    print("| --- |" + " ---: |" * (len(COLUMNS) - 1))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
