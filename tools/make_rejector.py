"""Train the "not a digit" detector shipped as src/digitlab/pretrained/rejector.safetensors.

    python tools/make_rejector.py [--seed 0] [--threads 1]

It trains on a sample of the 55,000 training images that every recipe trains on (the fixed
5,000-image held-out split is left out) against generated doodles and letters, pairs of those
training digits side by side and slices of them (digitlab.synth.nondigits), and sets its threshold
on the 5,000 held-out digits at digitlab.reject.REJECTION.false_rejection_rate. A few minutes on two
CPU cores; every `digitlab train` then copies it into its checkpoint. To put it into the
packaged model without retraining the classifier: scripts/make_pretrained.py --embed-rejector.
The training itself is digitlab.synth.rejector's.

Deterministic: the same seed, fonts and thread count give the same weights.
"""

import argparse
import json
import time
from pathlib import Path

import torch

import digitlab
from digitlab.config import HELD_OUT
from digitlab.data import DATA_CHECKSUM, load_mnist, split_validation
from digitlab.reject import PACKAGED
from digitlab.synth.nondigits import bundled_fonts
from digitlab.synth.rejector import fit_rejector, save_packaged

# Fonts the detector learns letters (and typed digits) from, besides matplotlib's DejaVu, when
# installed: handwriting (Debian: fonts-comic-neue, fonts-humor-sans, fonts-dkg-handwriting,
# fonts-bwht) and the URW and Liberation families (fonts-urw-base35, fonts-liberation). The
# tests' letters come from the handwriting families held out from training
# (digitlab.synth.fonts.HELD_OUT_FAMILIES, drawn by digitlab.synth.marks); comic-neue is in both.
TRAINING_FONT_DIRS = (
    "comic-neue",
    "humor-sans",
    "fifthhorseman",
    "bwht",
    "urw-base35",
    "liberation",
)
# Symbol fonts: their "letters" and "digits" are other signs.
SYMBOL_FONTS = ("D050000L.otf", "StandardSymbolsPS.otf")


def training_fonts() -> list[str]:
    found = bundled_fonts()
    for name in TRAINING_FONT_DIRS:
        for root in (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype")):
            found += sorted(
                str(p) for p in (root / name).glob("*.[ot]tf") if p.name not in SYMBOL_FONTS
            )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mnist = load_mnist()
    (train, labels), (held_out, _) = split_validation(
        mnist.train_images, mnist.train_labels, HELD_OUT
    )
    started = time.perf_counter()
    fonts = training_fonts()
    rejector, metadata = fit_rejector(train, labels, held_out, seed=args.seed, fonts=fonts)
    metadata |= {
        "made_by": f"tools/make_rejector.py --seed {args.seed} --threads {args.threads}",
        "trained_on": f"a sample of the {len(train):,} MNIST training digits (the {HELD_OUT:,} "
        "held out by every recipe excluded) against generated doodles and letters, pairs of "
        "those digits and slices of them (digitlab.synth.nondigits)",
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
