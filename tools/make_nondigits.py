"""Make the frozen non-digits `digitlab evaluate` scores: pretrained/nondigits-v1.safetensors.

    python tools/make_nondigits.py [--seed 2027] [--count 1000] [--out PATH]

Marks drawn by `digitlab.synth.marks`, the generator kept apart from what the "not a digit"
detector and the reader train on, the kinds in turn: stroke doodles (stars, hearts, smileys,
hatching, scribbles), letters and words in the held-out handwriting fonts, and empty printed
forms. Each is drawn as a phone photo or a scan (`synth.photos`) and cleaned into a 28×28 view
by `digitlab.preprocess`, exactly as a user's photo would be; a mark preprocessing refuses
("no digit found") is counted and replaced by the next. The views are stored as uint8.

Run once: evaluations agree across machines because this file is shipped, not because the
generator would draw the same pixels everywhere (fonts, Pillow and OpenCV versions differ). A
new set is a new file (nondigits-v2), so that figures measured on v1 keep their meaning.
"""

import argparse
import json
import platform
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import PIL
import torch
from safetensors.torch import save_file

import digitlab
from digitlab.checkpoint import METADATA_KEY, atomic_path
from digitlab.preprocess import preprocess_image
from digitlab.pretrained import NONDIGITS_SET
from digitlab.synth.fonts import HELD_OUT_FAMILIES, held_out_fonts
from digitlab.synth.marks import KINDS, mark_photo

SEED = 2027  # no test or benchmark draws marks with it


def make_views(count: int, seed: int) -> tuple[np.ndarray, Counter, Counter]:
    """`count` uint8 views (N, 28, 28), and how many marks of each kind were kept and refused."""
    fonts = held_out_fonts()
    if not fonts:
        raise SystemExit("no held-out handwriting fonts installed; see digitlab.synth.fonts")
    rng = np.random.default_rng(seed)
    views, kept, refused = [], Counter(), Counter()
    index = 0
    while len(views) < count:
        kind = KINDS[index % len(KINDS)]
        index += 1
        cleaned = preprocess_image(mark_photo(kind, rng, fonts))
        if cleaned.pixels is None:
            refused[kind] += 1
            continue
        views.append(np.rint(cleaned.pixels[0].numpy() * 255).astype(np.uint8))
        kept[kind] += 1
    return np.stack(views), kept, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=NONDIGITS_SET)
    args = parser.parse_args()
    views, kept, refused = make_views(args.count, args.seed)
    kinds = ", ".join(f"{kept[kind]} {kind}" for kind in KINDS)
    metadata = {
        "description": (
            f"{len(views):,} marks drawn by digitlab.synth.marks ({kinds}; letters and words "
            f"in the held-out fonts), photographed by synth.photos and cleaned by preprocess "
            f"(tools/make_nondigits.py --seed {args.seed})"
        ),
        "made_by": f"tools/make_nondigits.py --seed {args.seed} --count {args.count}",
        "seed": args.seed,
        "kept": dict(kept),
        "refused_by_preprocessing": dict(refused),
        "font_families": _families(),
        "digitlab_version": digitlab.__version__,
        "numpy_version": np.__version__,
        "pillow_version": PIL.__version__,
        "opencv_version": cv2.__version__,
        "python_version": platform.python_version(),
    }
    with atomic_path(args.out) as tmp:
        save_file(
            {"views": torch.from_numpy(views)},
            str(tmp),
            metadata={METADATA_KEY: json.dumps(metadata)},
        )
    print(json.dumps(metadata, indent=2))


def _families() -> list[str]:
    """The held-out families installed here (their first font's folder names them)."""
    from digitlab.synth.fonts import FONT_FAMILIES, FONT_ROOT

    return [
        name
        for name in HELD_OUT_FAMILIES
        if any((FONT_ROOT / font).is_file() for font in FONT_FAMILIES[name])
    ]


if __name__ == "__main__":
    main()
