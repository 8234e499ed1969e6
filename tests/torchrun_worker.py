"""Started under torchrun by tests/test_distributed.py: trains each run it is given, in order.

    torchrun --standalone --nproc_per_node=2 tests/torchrun_worker.py OUT_DIR RUNS_JSON

RUNS_JSON maps a folder name (under OUT_DIR) to a TrainConfig as a dict. One launch trains
them all, so the tests pay torchrun's start-up (Python, torch, the process group) once.
"""

import json
import sys
from pathlib import Path

from digitlab import distributed
from digitlab.config import TrainConfig
from digitlab.data import load_mnist
from digitlab.training import train


def main() -> None:
    out, runs = Path(sys.argv[1]), json.loads(sys.argv[2])
    mnist = load_mnist()
    with distributed.launched("cpu"):
        for name, values in runs.items():
            train(TrainConfig.from_dict(values), mnist, out / name)


if __name__ == "__main__":
    main()
