"""Fetching MNIST: each missing file from the first mirror that serves it with the right checksum.

A file appears under its final name only once its MD5 (of the published .gz) is verified, so an
interrupted or corrupted download leaves nothing behind. Tested against a loopback HTTP server.
"""

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from digitlab import __version__
from digitlab.data import ENV_VAR, FILES, MnistFile, missing_files
from digitlab.errors import DataError

# torchvision's order: the S3 copy is fast and reliable; LeCun's original site is often down.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# on_progress(file name, bytes so far, total bytes or None if the server does not say)
ProgressCallback = Callable[[str, int, int | None], None]

_CHUNK_SIZE = 1 << 16  # bytes per read while downloading; small enough for smooth progress
_USER_AGENT = f"digitlab/{__version__}"  # some servers reject urllib's default agent


def download_mnist(
    root: Path,
    *,
    mirrors: Sequence[str] = MIRRORS,
    on_progress: ProgressCallback | None = None,
    timeout: float = 30.0,
    files: Sequence[MnistFile] = FILES,
) -> list[Path]:
    """Download the missing `files` into `root` as NAME.gz; return the paths written.

    Each file is tried on every mirror in turn until one serves bytes with the published MD5.
    A file only appears under its final name once verified, so an interrupted download leaves
    nothing behind. Raises DataError if no mirror delivers a file.
    """
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data folder {root}: {e.strerror or e}") from None
    written = []
    for spec in missing_files(root, files=files):
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + spec.gz_name
            problem = _download_one(url, root, spec, on_progress, timeout)
            if problem is None:
                written.append(root / spec.gz_name)
                break
            failures.append(f"{url}: {problem}")
        else:
            raise DataError(_download_failed_message(root, spec, files, failures))
    return written


def _download_one(
    url: str,
    root: Path,
    spec: MnistFile,
    on_progress: ProgressCallback | None,
    timeout: float,
) -> str | None:
    """Fetch `url` into root/NAME.gz if its MD5 matches; return None, or what went wrong."""
    # The temp file lives in `root` so os.replace() is an atomic rename on the same filesystem.
    try:
        fd, tmp_name = tempfile.mkstemp(dir=root, prefix=f".{spec.gz_name}.", suffix=".part")
    except OSError as e:
        raise DataError(f"cannot write into the data folder {root}: {e.strerror or e}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            md5 = _stream(url, out, spec.gz_name, on_progress, timeout)
        if md5 != spec.gz_md5:
            return f"wrong checksum (MD5 {md5}, expected {spec.gz_md5})"
        os.chmod(tmp, 0o644)  # mkstemp makes files private; a data file should be readable
        os.replace(tmp, root / spec.gz_name)
        return None
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        return str(e.reason)
    except TimeoutError:
        return f"timed out after {timeout:g} s"
    except (OSError, http.client.HTTPException) as e:
        return f"{type(e).__name__}: {e}"
    finally:
        # Also runs on KeyboardInterrupt; after a successful replace() there is nothing to remove.
        tmp.unlink(missing_ok=True)


def _stream(
    url: str,
    out: BinaryIO,
    name: str,
    on_progress: ProgressCallback | None,
    timeout: float,
) -> str:
    """Copy the body of `url` into `out`, reporting progress; return the MD5 of the bytes."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    md5 = hashlib.md5()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        so_far = 0
        if on_progress is not None:
            on_progress(name, 0, total)
        while chunk := response.read(_CHUNK_SIZE):
            out.write(chunk)
            md5.update(chunk)
            so_far += len(chunk)
            if on_progress is not None:
                on_progress(name, so_far, total)
    return md5.hexdigest()


def _download_failed_message(
    root: Path, spec: MnistFile, files: Sequence[MnistFile], failures: list[str]
) -> str:
    names = ", ".join(f.gz_name for f in files)
    return (
        f"could not download {spec.gz_name} into {root} from any mirror "
        f"({'; '.join(failures)}). Get the MNIST files ({names}) another way and copy them "
        f"into {root}, or point {ENV_VAR} or --data-dir at a folder that has them."
    )
