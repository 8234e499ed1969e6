"""Weights that ship with digitlab, so that a fresh install reads digits without training.

`model.safetensors`: the packaged model, an ordinary digitlab checkpoint whose metadata holds the
config (recipe, seed), the data checksum, the test accuracy, its calibration and rejection
threshold, and under `source` the exact `digitlab train` command that made it. It also carries
a number reader (tensors `reader.*`, metadata "reader"), which `digitlab read` uses when there is
no reader run. `scripts/make_pretrained.py` re-creates it; see the README beside it for the figures.

`rejector.safetensors`: the "not a digit" detector (`digitlab.reject.Rejector`, 80,417
parameters) with its threshold in the metadata. It does not depend on any classifier, so every
run copies it into its checkpoint. Made by `tools/make_rejector.py` (the metadata records the
command, the data and the threshold's false-rejection rate on held-out digits).

`nondigits-v1.safetensors`: 1,000 non-digits as 28×28 uint8 views (tensor `views`), frozen, so
that the "not a digit" figures of `digitlab evaluate` are the same on every machine. Made once
by `tools/make_nondigits.py` (the metadata records the command, the seed and the kinds); a new
set is a new version (`nondigits-v2`), never an edit of this one.
"""

from pathlib import Path

PACKAGED_MODEL = Path(__file__).with_name("model.safetensors")
NONDIGITS_SET = Path(__file__).with_name("nondigits-v1.safetensors")
