"""Train the "not a digit" detector shipped as src/digitlab/pretrained/rejector.safetensors.

    PYTHONPATH=src python tools/make_rejector.py [--seed 0]

It trains on the 55,000 training images that every recipe trains on (the fixed 5,000-image
held-out split is left out), plus generated doodles and letters (digitlab.nondigits), and sets
its threshold on those 5,000 held-out digits at digitlab.reject.FALSE_REJECTION_RATE. A few
minutes on two CPU cores; every `digitlab train` then copies it into its checkpoint.
"""

import argparse
import json
import time
from pathlib import Path

import torch

import digitlab
from digitlab.config import HELD_OUT
from digitlab.data import DATA_CHECKSUM, load_mnist, split_validation
from digitlab.nondigits import bundled_fonts
from digitlab.reject import PACKAGED, fit_rejector, save_packaged

# Handwriting fonts the detector learns letters from, when installed (Debian: fonts-comic-neue,
# fonts-humor-sans, fonts-dkg-handwriting, fonts-bwht). The tests' letters come from four
# others (tests/non_digits.py), so they measure letters in fonts the detector never saw.
TRAINING_FONT_DIRS = ("comic-neue", "humor-sans", "fifthhorseman", "bwht")


def training_handwriting_fonts() -> list[str]:
    found: list[str] = []
    for name in TRAINING_FONT_DIRS:
        for root in (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype")):
            found += sorted(str(p) for p in (root / name).glob("*.[ot]tf"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mnist = load_mnist()
    (train, _), (held_out, _) = split_validation(mnist.train_images, mnist.train_labels, HELD_OUT)
    started = time.perf_counter()
    fonts = bundled_fonts() + training_handwriting_fonts()
    rejector, metadata = fit_rejector(train, held_out, seed=args.seed, fonts=fonts)
    metadata |= {
        "made_by": f"tools/make_rejector.py --seed {args.seed}",
        "trained_on": f"{len(train):,} MNIST training digits (the {HELD_OUT:,} held out by every "
        "recipe excluded) and generated doodles and letters (digitlab.nondigits)",
        "fonts": sorted({Path(f).name for f in fonts}),
        "train_seconds": round(time.perf_counter() - started, 1),
        "digitlab_version": digitlab.__version__,
        "torch_version": torch.__version__,
        "data_checksum": DATA_CHECKSUM,
    }
    save_packaged(rejector, metadata)
    print(json.dumps(metadata, indent=2))
    print(f"wrote {PACKAGED}")


if __name__ == "__main__":
    main()
