"""Shared by the serving tests: a real server.

`running_server` starts `digitlab serve` in a subprocess on a free loopback port and waits
for /health.
"""

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

SERVER_START_TIMEOUT = 60.0  # seconds; loading torch on a busy 2-core machine takes a few
POLL_INTERVAL = 0.1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(run_dir: Path) -> Iterator[str]:
    """Serve `run_dir` on a free loopback port; yields the base URL, stops the server after."""
    port = free_port()
    # The log goes to a file, not a pipe: a pipe nobody reads would block a chatty server.
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "digitlab", "serve", "--checkpoint", str(run_dir)]
            + ["--port", str(port)],
            stdout=log,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_healthy(server, url, log)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_until_healthy(server: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise RuntimeError(f"the server exited with code {server.returncode}:\n{output}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass  # not listening yet
        time.sleep(POLL_INTERVAL)
    raise RuntimeError(f"the server did not answer {url}/health within {SERVER_START_TIMEOUT} s")
