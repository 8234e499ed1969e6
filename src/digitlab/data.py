"""MNIST on disk and in memory: find, parse and check the four IDX files; batch them.

The whole dataset is held as uint8 tensors (about 55 MB) and batches are cut from it by indexing,
so training needs no worker processes and no per-sample Python.

Content is verified by the MD5 of the *uncompressed* bytes, because equally valid copies of the
.gz files differ in their gzip wrapper (`download.py` fetches missing files, checked by the MD5
of the published .gz).
"""

import gzip
import hashlib
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from digitlab.errors import DataError
from digitlab.mnist_format import IMAGE_SIZE, NUM_CLASSES

ENV_VAR = "DIGITLAB_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/digitlab/mnist")  # expanded when used

IMAGES_MAGIC = 2051  # IDX header: 0x0803 = unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # IDX header: 0x0801 = unsigned bytes, 1 dimension


@dataclass(frozen=True)
class MnistFile:
    """One of the four MNIST files and the checksums that identify it."""

    name: str  # canonical name without .gz, e.g. "train-images-idx3-ubyte"
    count: int  # number of images or labels
    is_images: bool
    gz_md5: str  # MD5 of the published .gz (checked after a download)
    raw_md5: str  # MD5 of the uncompressed bytes (checked whenever the file is read)

    @property
    def gz_name(self) -> str:
        return self.name + ".gz"

    @property
    def header_size(self) -> int:
        # magic + one 4-byte size per dimension: (count, rows, cols) or (count,)
        return 16 if self.is_images else 8

    @property
    def byte_size(self) -> int:
        """Expected size of the uncompressed file."""
        record_size = IMAGE_SIZE * IMAGE_SIZE if self.is_images else 1
        return self.header_size + self.count * record_size


FILES: tuple[MnistFile, ...] = (
    MnistFile(
        "train-images-idx3-ubyte",
        60000,
        True,
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "6bbc9ace898e44ae57da46a324031adb",
    ),
    MnistFile(
        "train-labels-idx1-ubyte",
        60000,
        False,
        "d53e105ee54ea40749a09fcbcd1e9432",
        "a25bea736e30d166cdddb491f175f624",
    ),
    MnistFile(
        "t10k-images-idx3-ubyte",
        10000,
        True,
        "9fb629c4189551a2d022fa330f9573f3",
        "2646ac647ad5339dbf082846283269ea",
    ),
    MnistFile(
        "t10k-labels-idx1-ubyte",
        10000,
        False,
        "ec29112dd5afa0611ce80d1b7f02629c",
        "27ae3e4e09519cfbb04c329615203637",
    ),
)
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = FILES

# A short id of the data content; checkpoints store it so results can be tied to the exact data.
DATA_CHECKSUM: str = hashlib.md5("".join(f.raw_md5 for f in FILES).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# Finding files


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data folder: the argument, else $DIGITLAB_DATA, else ~/.cache/digitlab/mnist."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return DEFAULT_DATA_DIR.expanduser()


def find_file(root: Path, spec: MnistFile) -> Path | None:
    """The path of `spec` under `root`, gzipped or plain, flat or in torchvision's MNIST/raw/."""
    for folder in (root, root / "MNIST" / "raw"):
        for name in (spec.gz_name, spec.name):
            if (folder / name).is_file():
                return folder / name
    return None


def missing_files(root: Path, *, files: Sequence[MnistFile] = FILES) -> list[MnistFile]:
    return [spec for spec in files if find_file(root, spec) is None]


# ---------------------------------------------------------------------------------------------
# Parsing and validating


class _BadFile(ValueError):
    """What is wrong with a file's content; callers add the path and advice."""


def read_idx(path: Path, spec: MnistFile) -> torch.Tensor:
    """Parse a gzipped or plain IDX file strictly: uint8 (count, 28, 28) or int64 (count,).

    Raises DataError naming the file and what is wrong with it.
    """
    try:
        return _parse_idx(_read_bytes(path), spec)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except _BadFile as e:
        raise DataError(
            f"{path} {e}; delete it and run `digitlab data download`, or copy a good one there"
        ) from None


def _read_bytes(path: Path) -> bytearray:
    """The uncompressed content; gzip is recognised by its magic bytes, not by the file name."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzip magic
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise _BadFile(f"is not a valid gzip file ({e})") from None
    # A bytearray is writable, so torch.frombuffer can share it without copying or warning.
    return bytearray(data)


def _parse_idx(data: bytearray, spec: MnistFile) -> torch.Tensor:
    _check_header(data, spec)
    if len(data) < spec.byte_size:
        raise _BadFile(f"is truncated: expected {spec.byte_size} bytes, got {len(data)}")
    if len(data) > spec.byte_size:
        extra = len(data) - spec.byte_size
        raise _BadFile(f"has {extra} trailing bytes after the expected {spec.byte_size}")
    values = torch.frombuffer(data, dtype=torch.uint8, offset=spec.header_size)
    if not spec.is_images and int(values.max()) >= NUM_CLASSES:
        raise _BadFile(f"has a label {int(values.max())}; labels must be 0..{NUM_CLASSES - 1}")
    md5 = hashlib.md5(data).hexdigest()
    if md5 != spec.raw_md5:
        raise _BadFile(
            f"has the right shape but the wrong content: MD5 of the uncompressed bytes is "
            f"{md5}, expected {spec.raw_md5}"
        )
    if spec.is_images:
        return values.view(spec.count, IMAGE_SIZE, IMAGE_SIZE)
    return values.to(torch.int64)


def _check_header(data: bytearray, spec: MnistFile) -> None:
    if len(data) < spec.header_size:
        raise _BadFile(
            f"is truncated: expected {spec.byte_size} bytes, got {len(data)} (not even a header)"
        )
    magic, *dims = struct.unpack_from(f">{spec.header_size // 4}I", data)
    expected_magic = IMAGES_MAGIC if spec.is_images else LABELS_MAGIC
    if magic != expected_magic:
        kind = "images" if spec.is_images else "labels"
        raise _BadFile(f"has magic number {magic}, expected {expected_magic} (IDX {kind})")
    if dims[0] != spec.count:
        raise _BadFile(f"holds {dims[0]} records, expected {spec.count}")
    if spec.is_images and dims[1:] != [IMAGE_SIZE, IMAGE_SIZE]:
        raise _BadFile(
            f"holds images of {dims[1]}×{dims[2]} pixels, expected {IMAGE_SIZE}×{IMAGE_SIZE}"
        )


# ---------------------------------------------------------------------------------------------
# The dataset in memory


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors with == is elementwise
class MNIST:
    """Both splits in memory, exactly as stored in the files."""

    train_images: torch.Tensor  # (60000, 28, 28) uint8
    train_labels: torch.Tensor  # (60000,) int64
    test_images: torch.Tensor  # (10000, 28, 28) uint8
    test_labels: torch.Tensor  # (10000,) int64
    root: Path


# Fixed, so every run that holds out N images holds out the same N and their scores compare.
VALIDATION_SEED = 0


def split_validation(
    images: torch.Tensor, labels: torch.Tensor, holdout: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Carve `holdout` randomly chosen images out of a training set → (train, validation).

    The choice depends only on `len(images)` and `holdout`, never on a run's seed.
    """
    if not 0 <= holdout < len(images):
        raise ValueError(f"cannot hold out {holdout} of {len(images)} images")
    if holdout == 0:  # no copy of the training set when nothing is held out
        return (images, labels), (images[:0], labels[:0])
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    train, held_out = order[holdout:].sort().values, order[:holdout].sort().values
    return (images[train], labels[train]), (images[held_out], labels[held_out])


def load_mnist(
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    on_progress: Callable[[str, int, int | None], None] | None = None,
) -> MNIST:
    """Read and verify all four files from the data folder (see `resolve_data_dir`);
    `download` fetches the missing ones first (`download.download_mnist`, with `on_progress`)."""
    root = resolve_data_dir(data_dir)
    missing = missing_files(root)
    if missing and download:
        from digitlab.download import download_mnist

        download_mnist(root, on_progress=on_progress)
    elif missing:
        names = ", ".join(spec.gz_name for spec in missing)
        raise DataError(
            f"MNIST files missing in {root}: {names}. Run `digitlab data download` to fetch "
            f"them, or set {ENV_VAR} (or --data-dir) to a folder that has them."
        )
    train_images, train_labels, test_images, test_labels = (
        read_idx(_found(root, spec), spec) for spec in FILES
    )
    return MNIST(train_images, train_labels, test_images, test_labels, root)


def _found(root: Path, spec: MnistFile) -> Path:
    path = find_file(root, spec)
    if path is None:  # only if a file vanished after the download
        raise DataError(f"{spec.gz_name} is missing in {root}; run `digitlab data download`")
    return path


@dataclass(frozen=True)
class FileStatus:
    spec: MnistFile
    path: Path | None  # None when missing
    problem: str | None  # None when the file parses and its checksum matches


def verify_mnist(data_dir: str | Path | None = None) -> list[FileStatus]:
    """Check every file fully; report each one's problem instead of raising."""
    root = resolve_data_dir(data_dir)
    return [_file_status(root, spec) for spec in FILES]


def _file_status(root: Path, spec: MnistFile) -> FileStatus:
    path = find_file(root, spec)
    if path is None:
        return FileStatus(spec, None, "missing")
    try:
        _parse_idx(_read_bytes(path), spec)
    except OSError as e:
        return FileStatus(spec, path, f"cannot be read: {e.strerror or e}")
    except _BadFile as e:
        return FileStatus(spec, path, str(e))
    return FileStatus(spec, path, None)


# ---------------------------------------------------------------------------------------------
# Batching


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W) → float32 (N, 1, H, W) in [0, 1], as torchvision's ToTensor (x / 255)."""
    if images.dtype != torch.uint8 or images.dim() != 3:
        raise ValueError(
            f"expected uint8 images (N, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    return images.unsqueeze(1).to(torch.float32) / 255


def iterate_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    order: torch.Tensor | None = None,
    start_batch: int = 0,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (float images (B, 1, 28, 28), labels (B,)) on `device`, visiting `order`.

    `order` holds the indices to visit (a permutation, or a subset); None means 0..N-1.
    The first `start_batch` batches are skipped, to resume mid-epoch. The last batch may be short.
    """
    if batch_size < 1 or start_batch < 0:
        raise ValueError(
            f"need batch_size >= 1 and start_batch >= 0, got {batch_size}, {start_batch}"
        )
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    size = len(images) if order is None else len(order)
    for start in range(start_batch * batch_size, size, batch_size):
        if order is None:
            index: slice | torch.Tensor = slice(start, start + batch_size)
        else:
            index = order[start : start + batch_size]
        # Move uint8 pixels before converting: a quarter of the bytes of float32.
        yield to_float(images[index].to(device)), labels[index].to(device)


def class_counts(labels: torch.Tensor) -> list[int]:
    """How many labels of each digit 0..9."""
    return [int(n) for n in torch.bincount(labels.flatten(), minlength=NUM_CLASSES)]


class MNISTDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """One split as a map-style Dataset, for users who want a DataLoader.

    Items are (float image (1, 28, 28) in [0, 1], int label). Training in digitlab itself uses
    `iterate_batches`, which is much faster than collating single items.
    """

    def __init__(self, mnist: MNIST, train: bool = True) -> None:
        self.images = mnist.train_images if train else mnist.test_images
        self.labels = mnist.train_labels if train else mnist.test_labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return to_float(self.images[index].unsqueeze(0))[0], int(self.labels[index])
