"""The model that ships with digitlab, so that a fresh install reads digits without training.

`model.safetensors` here is an ordinary digitlab checkpoint: its metadata holds the config
(recipe, seed), the data checksum, the test accuracy, and under `source` the exact
`digitlab train` command that made it. `scripts/make_pretrained.py` re-creates it; see the
README beside it for the figures.
"""

from pathlib import Path

PACKAGED_MODEL = Path(__file__).with_name("model.safetensors")
