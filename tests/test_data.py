"""Tests for digitlab.data: the real files, file discovery, strict parsing, downloads, batching."""

import dataclasses
import gzip
import hashlib
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from digitlab import data, download
from digitlab.data import (
    FILES,
    MNIST,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_LABELS,
    MNISTDataset,
    MnistFile,
    class_counts,
    find_file,
    iterate_batches,
    load_mnist,
    missing_files,
    read_idx,
    resolve_data_dir,
    split_validation,
    to_float,
    verify_mnist,
)
from digitlab.download import download_mnist
from digitlab.errors import DataError

# From ../shared/data/mnist/README.md
README_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
README_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def raw_bytes(mnist_dir: Path, spec: MnistFile) -> bytes:
    return gzip.decompress((mnist_dir / spec.gz_name).read_bytes())


@pytest.fixture(scope="session")
def test_labels_raw(mnist_dir: Path) -> bytes:
    return raw_bytes(mnist_dir, TEST_LABELS)


@pytest.fixture(scope="session")
def test_images_raw(mnist_dir: Path) -> bytes:
    return raw_bytes(mnist_dir, TEST_IMAGES)


# ---------------------------------------------------------------------------------------------
# The real files


def test_shapes_and_dtypes(mnist: MNIST) -> None:
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.train_images.dtype == torch.uint8
    assert mnist.train_labels.shape == (60000,)
    assert mnist.train_labels.dtype == torch.int64
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.test_images.dtype == torch.uint8
    assert mnist.test_labels.shape == (10000,)
    assert mnist.test_labels.dtype == torch.int64


def test_label_counts_match_readme(mnist: MNIST) -> None:
    assert class_counts(mnist.train_labels) == README_TRAIN_COUNTS
    assert class_counts(mnist.test_labels) == README_TEST_COUNTS


def test_test_image_100_is_a_6(mnist: MNIST) -> None:
    assert int(mnist.test_labels[100]) == 6


def test_pixels_span_0_to_255_with_mostly_background(mnist: MNIST) -> None:
    assert int(mnist.train_images.min()) == 0
    assert int(mnist.train_images.max()) == 255
    # MNIST's well-known mean pixel is 0.1307 of full scale.
    assert to_float(mnist.train_images).mean().item() == pytest.approx(0.1307, abs=1e-4)


def test_load_mnist_records_its_folder(mnist: MNIST, mnist_dir: Path) -> None:
    assert mnist.root == mnist_dir


def test_data_checksum_is_a_short_stable_id() -> None:
    expected = hashlib.md5("".join(f.raw_md5 for f in FILES).encode()).hexdigest()[:12]
    assert data.DATA_CHECKSUM == expected == "f85aa589f05f"


# ---------------------------------------------------------------------------------------------
# to_float, iterate_batches, MNISTDataset


def test_to_float_divides_by_255_and_adds_a_channel(mnist: MNIST) -> None:
    images = mnist.test_images[:50]
    floats = to_float(images)
    assert floats.shape == (50, 1, 28, 28)
    assert floats.dtype == torch.float32
    assert torch.equal(floats[:, 0], images.float() / 255)
    assert floats.min().item() == 0.0 and floats.max().item() == 1.0


def test_to_float_rejects_images_that_are_not_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        to_float(torch.zeros(2, 28, 28))


def collect(batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> list:
    return list(batches)


def test_iterate_batches_visits_a_permutation_once_each(mnist: MNIST) -> None:
    images = mnist.test_images
    ids = torch.arange(len(images))  # stands in for labels so each sample can be traced
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    batches = collect(iterate_batches(images, ids, 128, order=order))
    assert len(batches) == 79  # 78 full batches + one of 16, as DataLoader(drop_last=False)
    assert [len(y) for _, y in batches[-2:]] == [128, 16]
    visited = torch.cat([y for _, y in batches])
    assert torch.equal(visited, order)
    assert torch.equal(torch.sort(visited).values, ids)
    x, y = batches[5]
    assert x.shape == (128, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(x, to_float(images[y]))


def test_iterate_batches_without_order_is_sequential(mnist: MNIST) -> None:
    batches = collect(iterate_batches(mnist.test_images, mnist.test_labels, 3000))
    assert [len(y) for _, y in batches] == [3000, 3000, 3000, 1000]
    assert torch.equal(torch.cat([y for _, y in batches]), mnist.test_labels)
    assert torch.equal(batches[3][0], to_float(mnist.test_images[9000:]))


def test_iterate_batches_resumes_at_start_batch(mnist: MNIST) -> None:
    order = torch.randperm(10000, generator=torch.Generator().manual_seed(1))
    images, labels = mnist.test_images, mnist.test_labels
    full = collect(iterate_batches(images, labels, 256, order=order))
    resumed = collect(iterate_batches(images, labels, 256, order=order, start_batch=30))
    assert len(resumed) == len(full) - 30
    for (x_full, y_full), (x_resumed, y_resumed) in zip(full[30:], resumed, strict=True):
        assert torch.equal(x_full, x_resumed)
        assert torch.equal(y_full, y_resumed)
    assert collect(iterate_batches(images, labels, 256, order=order, start_batch=len(full))) == []


def test_iterate_batches_rejects_a_zero_batch_size(mnist: MNIST) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        next(iterate_batches(mnist.test_images, mnist.test_labels, 0))


def test_split_validation_holds_out_the_same_random_images_every_time(mnist: MNIST) -> None:
    images, labels = mnist.train_images, mnist.train_labels
    (train, train_labels), (held_out, held_out_labels) = split_validation(images, labels, 5000)
    assert len(train) == 55_000 and len(held_out) == 5000
    # Every image lands on exactly one side: the pixel sums of both sides add up.
    assert int(train.sum(dtype=torch.int64) + held_out.sum(dtype=torch.int64)) == int(
        images.sum(dtype=torch.int64)
    )
    assert int(train_labels.bincount().add(held_out_labels.bincount()).sum()) == 60_000
    # A random choice: every digit is held out, in roughly its share of the training set.
    shares = held_out_labels.bincount(minlength=10) / 5000
    assert torch.allclose(shares, labels.bincount(minlength=10) / 60_000, atol=0.01)
    torch.manual_seed(123)  # the global seed (a run's seed) does not move the split
    (_, _), (again, _) = split_validation(images, labels, 5000)
    assert torch.equal(again, held_out)
    (_, _), (none, _) = split_validation(images, labels, 0)
    assert len(none) == 0
    with pytest.raises(ValueError, match="cannot hold out 60000 of 60000"):
        split_validation(images, labels, 60_000)


def test_mnist_dataset_works_with_a_dataloader(mnist: MNIST) -> None:
    dataset = MNISTDataset(mnist, train=False)
    assert len(dataset) == 10000
    image, label = dataset[100]
    assert image.shape == (1, 28, 28) and isinstance(label, int) and label == 6
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=False)
    x, y = next(iter(loader))
    assert torch.equal(x, to_float(mnist.test_images[:64]))
    assert torch.equal(y, mnist.test_labels[:64])
    assert len(MNISTDataset(mnist, train=True)) == 60000


# ---------------------------------------------------------------------------------------------
# Finding the data


@pytest.mark.parametrize(
    "relative",
    [
        "t10k-labels-idx1-ubyte.gz",
        "t10k-labels-idx1-ubyte",
        "MNIST/raw/t10k-labels-idx1-ubyte.gz",
        "MNIST/raw/t10k-labels-idx1-ubyte",
    ],
)
def test_find_file_accepts_gz_plain_and_torchvision_layouts(
    tmp_path: Path, mnist_dir: Path, test_labels_raw: bytes, relative: str
) -> None:
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if relative.endswith(".gz"):
        path.symlink_to(mnist_dir / TEST_LABELS.gz_name)
    else:
        path.write_bytes(test_labels_raw)
    assert find_file(tmp_path, TEST_LABELS) == path
    assert find_file(tmp_path, TRAIN_LABELS) is None
    labels = read_idx(path, TEST_LABELS)
    assert labels.shape == (10000,) and int(labels[100]) == 6


def test_missing_files_lists_what_is_absent(tmp_path: Path, mnist_dir: Path) -> None:
    (tmp_path / TEST_LABELS.gz_name).symlink_to(mnist_dir / TEST_LABELS.gz_name)
    assert missing_files(tmp_path) == [f for f in FILES if f != TEST_LABELS]
    assert missing_files(mnist_dir) == []


def test_resolve_data_dir_prefers_argument_then_env_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DIGITLAB_DATA", raising=False)
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "digitlab" / "mnist"
    monkeypatch.setenv("DIGITLAB_DATA", "~/from-env")
    assert resolve_data_dir() == tmp_path / "home" / "from-env"
    assert resolve_data_dir(None) == tmp_path / "home" / "from-env"
    assert resolve_data_dir("~/from-arg") == tmp_path / "home" / "from-arg"
    assert resolve_data_dir(tmp_path / "x") == tmp_path / "x"


def test_load_mnist_reads_the_folder_named_by_env(
    mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITLAB_DATA", str(mnist_dir))
    assert load_mnist().root == mnist_dir


def test_load_mnist_without_files_says_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_mnist(tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message
    for spec in FILES:
        assert spec.gz_name in message
    assert "DIGITLAB_DATA" in message
    assert "digitlab data download" in message


def test_load_mnist_downloads_missing_files_when_asked(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_download(root: Path, *, on_progress: object = None) -> list[Path]:
        paths = [root / spec.gz_name for spec in missing_files(root)]
        for path in paths:
            path.symlink_to(mnist_dir / path.name)
        return paths

    (tmp_path / TEST_LABELS.gz_name).symlink_to(mnist_dir / TEST_LABELS.gz_name)
    monkeypatch.setattr(download, "download_mnist", fake_download)
    mnist = load_mnist(tmp_path, download=True)
    assert mnist.root == tmp_path
    assert class_counts(mnist.test_labels) == README_TEST_COUNTS


# ---------------------------------------------------------------------------------------------
# Strict parsing of corrupt files


def with_bytes(raw: bytes, offset: int, new: bytes) -> bytes:
    return raw[:offset] + new + raw[offset + len(new) :]


def labels_with_count(raw: bytes, count: int) -> bytes:
    return struct.pack(">II", 2049, count) + raw[8 : 8 + count]


# Each case: the spec read, how to spoil the good uncompressed t10k labels, and the expected text.
CONTENT_CASES = [
    pytest.param(
        TEST_LABELS, lambda raw: raw[:1000], "is truncated: expected 10008 bytes, got 1000",
        id="truncated",
    ),
    pytest.param(
        TEST_LABELS, lambda raw: raw[:5], "is truncated: expected 10008 bytes, got 5",
        id="no-header",
    ),
    pytest.param(
        TEST_LABELS, lambda raw: with_bytes(raw, 0, struct.pack(">I", 2051)),
        "has magic number 2051, expected 2049",
        id="wrong-magic",
    ),
    pytest.param(
        TEST_IMAGES, lambda raw: raw, "has magic number 2049, expected 2051",
        id="labels-read-as-images",
    ),
    pytest.param(
        TEST_LABELS, lambda raw: labels_with_count(raw, 9999),
        "holds 9999 records, expected 10000",
        id="wrong-count",
    ),
    pytest.param(
        TEST_IMAGES, lambda raw: struct.pack(">IIII", 2051, 10000, 27, 28),
        "holds images of 27×28 pixels, expected 28×28",
        id="wrong-dimensions",
    ),
    pytest.param(
        TEST_LABELS, lambda raw: raw + b"\x00\x00\x00",
        "has 3 trailing bytes after the expected 10008",
        id="trailing-bytes",
    ),
    pytest.param(
        TEST_LABELS, lambda raw: with_bytes(raw, 8 + 42, b"\x0a"),
        "has a label 10; labels must be 0..9",
        id="label-out-of-range",
    ),
    pytest.param(
        TEST_LABELS, lambda raw: with_bytes(raw, 8 + 100, b"\x05"),
        "wrong content: MD5 of the uncompressed bytes is",
        id="changed-label",
    ),
]  # fmt: skip


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "plain"])
@pytest.mark.parametrize(("spec", "corrupt", "expected"), CONTENT_CASES)
def test_read_idx_names_the_file_and_the_problem(
    tmp_path: Path,
    test_labels_raw: bytes,
    spec: MnistFile,
    corrupt: Callable[[bytes], bytes],
    expected: str,
    compress: bool,
) -> None:
    # Every case starts from good labels; the image cases only need a header to fail.
    content = corrupt(test_labels_raw)
    path = tmp_path / (spec.gz_name if compress else spec.name)
    path.write_bytes(gzip.compress(content, compresslevel=1) if compress else content)
    with pytest.raises(DataError) as caught:
        read_idx(path, spec)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message
    assert "digitlab data download" in message


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda gz: gz[:-200], id="truncated-gzip"),
        pytest.param(lambda gz: with_bytes(gz, 500, b"\xff" * 8), id="damaged-gzip"),
    ],
)
def test_read_idx_rejects_corrupt_gzip(
    tmp_path: Path, test_labels_raw: bytes, spoil: Callable[[bytes], bytes]
) -> None:
    path = tmp_path / TEST_LABELS.gz_name
    path.write_bytes(spoil(gzip.compress(test_labels_raw)))
    with pytest.raises(DataError, match=f"^{re.escape(str(path))} is not a valid gzip file"):
        read_idx(path, TEST_LABELS)


def test_read_idx_catches_one_changed_pixel(tmp_path: Path, test_images_raw: bytes) -> None:
    offset = 16 + 100 * 28 * 28 + 14 * 28 + 14  # centre pixel of test image 100
    changed = with_bytes(test_images_raw, offset, bytes([test_images_raw[offset] ^ 1]))
    path = tmp_path / TEST_IMAGES.name
    path.write_bytes(changed)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))} .*wrong content: MD5"):
        read_idx(path, TEST_IMAGES)


def test_verify_mnist_reports_missing_and_corrupt_files(
    tmp_path: Path, mnist_dir: Path, test_labels_raw: bytes
) -> None:
    for spec in FILES[:3]:
        (tmp_path / spec.gz_name).symlink_to(mnist_dir / spec.gz_name)
    statuses = verify_mnist(tmp_path)
    assert [s.spec for s in statuses] == list(FILES)
    assert [s.problem for s in statuses[:3]] == [None, None, None]
    assert statuses[3].path is None and statuses[3].problem == "missing"

    (tmp_path / TEST_LABELS.name).write_bytes(test_labels_raw + b"\x00")
    corrupt = verify_mnist(tmp_path)[3]
    assert corrupt.path == tmp_path / TEST_LABELS.name
    assert corrupt.problem == "has 1 trailing bytes after the expected 10008"


def test_load_mnist_refuses_a_corrupt_file(
    tmp_path: Path, mnist_dir: Path, test_labels_raw: bytes
) -> None:
    for spec in FILES[:3]:
        (tmp_path / spec.gz_name).symlink_to(mnist_dir / spec.gz_name)
    (tmp_path / TEST_LABELS.name).write_bytes(test_labels_raw[:-1])
    with pytest.raises(DataError, match="is truncated"):
        load_mnist(tmp_path)


# ---------------------------------------------------------------------------------------------
# Downloading from a loopback server


class Mirrors:
    """A loopback HTTP server with three mirrors: /good/ serves files, /bad/ corrupts them,
    anything else answers 404. `requests` lists every path asked for."""

    def __init__(self, payloads: dict[str, bytes]) -> None:
        self.payloads = payloads
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.good, self.bad, self.missing = (f"{self.base}/{m}/" for m in ("good", "bad", "none"))
        # A short poll interval makes shutdown() quick; the default waits up to 0.5 s.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        mirrors = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                mirrors.requests.append(self.path)
                _, mirror, name = self.path.split("/", 2)
                body = mirrors.payloads.get(name)
                if body is None or mirror not in ("good", "bad"):
                    self.send_error(404)
                    return
                if mirror == "bad":
                    body = body[:-1] + bytes([body[-1] ^ 0xFF])
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        return Handler


@pytest.fixture
def served(mnist_dir: Path) -> tuple[MnistFile, ...]:
    """Specs for three real files whose download checksum is that of the copies we serve
    (the shared .gz files are re-wrapped, so the published gz MD5s would not match)."""
    specs = (TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
    return tuple(
        dataclasses.replace(spec, gz_md5=hashlib.md5(payload(mnist_dir, spec)).hexdigest())
        for spec in specs
    )


def payload(mnist_dir: Path, spec: MnistFile) -> bytes:
    return (mnist_dir / spec.gz_name).read_bytes()


@pytest.fixture
def mirrors(
    mnist_dir: Path, served: tuple[MnistFile, ...], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Mirrors]:
    for proxy in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(proxy, raising=False)  # loopback must not go through a proxy
    mirrors = Mirrors({spec.gz_name: payload(mnist_dir, spec) for spec in served})
    mirrors.thread.start()
    yield mirrors
    mirrors.server.shutdown()
    mirrors.server.server_close()


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens here any more


def test_download_falls_back_past_a_closed_port_and_a_404(
    tmp_path: Path,
    mnist_dir: Path,
    mirrors: Mirrors,
    served: tuple[MnistFile, ...],
    closed_port_url: str,
) -> None:
    root = tmp_path / "new" / "folder"
    written = download_mnist(
        root, mirrors=[closed_port_url, mirrors.missing, mirrors.good], files=served
    )
    assert written == [root / spec.gz_name for spec in served]
    assert sorted(os.listdir(root)) == sorted(spec.gz_name for spec in served)
    for spec in served:
        assert (root / spec.gz_name).read_bytes() == payload(mnist_dir, spec)
        assert f"/none/{spec.gz_name}" in mirrors.requests
    assert int(read_idx(root / TEST_LABELS.gz_name, TEST_LABELS)[100]) == 6


def test_download_falls_back_after_a_checksum_mismatch(
    tmp_path: Path, mnist_dir: Path, mirrors: Mirrors, served: tuple[MnistFile, ...]
) -> None:
    download_mnist(tmp_path, mirrors=[mirrors.bad, mirrors.good], files=served)
    assert mirrors.requests[:2] == [f"/bad/{served[0].gz_name}", f"/good/{served[0].gz_name}"]
    for spec in served:
        assert (tmp_path / spec.gz_name).read_bytes() == payload(mnist_dir, spec)
    assert sorted(os.listdir(tmp_path)) == sorted(spec.gz_name for spec in served)


def test_download_failing_everywhere_says_what_to_do_and_leaves_nothing(
    tmp_path: Path, mirrors: Mirrors, served: tuple[MnistFile, ...], closed_port_url: str
) -> None:
    with pytest.raises(DataError) as caught:
        download_mnist(
            tmp_path, mirrors=[mirrors.missing, mirrors.bad, closed_port_url], files=served
        )
    message = str(caught.value)
    assert str(tmp_path) in message
    for spec in served:
        assert spec.gz_name in message
    assert "DIGITLAB_DATA" in message and "--data-dir" in message
    assert "HTTP 404" in message
    assert "wrong checksum" in message
    assert "refused" in message.lower()
    assert os.listdir(tmp_path) == []  # the bad mirror's bytes were not kept, not even as .part


def test_download_times_out_on_a_silent_server(
    tmp_path: Path, mirrors: Mirrors, served: tuple[MnistFile, ...]
) -> None:
    labels = served[-1:]  # one file is enough; each attempt waits for the timeout
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        download_mnist(tmp_path, mirrors=[url, mirrors.good], files=labels, timeout=0.1)
        assert os.listdir(tmp_path) == [labels[0].gz_name]
        with pytest.raises(DataError, match="timed out after 0.1 s"):
            download_mnist(tmp_path / "other", mirrors=[url], files=labels, timeout=0.1)


def test_download_interrupted_leaves_no_partial_file(
    tmp_path: Path, mirrors: Mirrors, served: tuple[MnistFile, ...]
) -> None:
    def interrupt(name: str, so_far: int, total: int | None) -> None:
        if so_far > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_mnist(tmp_path, mirrors=[mirrors.good], files=served, on_progress=interrupt)
    assert os.listdir(tmp_path) == []


def test_download_reports_progress_with_growing_byte_counts(
    tmp_path: Path, mnist_dir: Path, mirrors: Mirrors, served: tuple[MnistFile, ...]
) -> None:
    calls: list[tuple[str, int, int | None]] = []
    download_mnist(
        tmp_path, mirrors=[mirrors.good], files=served, on_progress=lambda *c: calls.append(c)
    )
    images = [(n, total) for name, n, total in calls if name == TEST_IMAGES.gz_name]
    size = len(payload(mnist_dir, TEST_IMAGES))
    assert len(images) > 3  # a 1.6 MB file arrives in several chunks
    counts = [n for n, _ in images]
    assert counts == sorted(set(counts))  # strictly increasing
    assert counts[0] == 0 and counts[-1] == size
    assert {total for _, total in images} == {size}
    assert {name for name, _, _ in calls} == {spec.gz_name for spec in served}


def test_download_skips_files_already_present(
    tmp_path: Path, mnist_dir: Path, mirrors: Mirrors, served: tuple[MnistFile, ...]
) -> None:
    present = tmp_path / "MNIST" / "raw" / TEST_IMAGES.name  # torchvision's layout, uncompressed
    present.parent.mkdir(parents=True)
    present.write_bytes(raw_bytes(mnist_dir, TEST_IMAGES))
    written = download_mnist(tmp_path, mirrors=[mirrors.good], files=served)
    assert written == [tmp_path / TRAIN_LABELS.gz_name, tmp_path / TEST_LABELS.gz_name]
    assert f"/good/{TEST_IMAGES.gz_name}" not in mirrors.requests
    mirrors.requests.clear()
    assert download_mnist(tmp_path, mirrors=[mirrors.good], files=served) == []
    assert mirrors.requests == []
