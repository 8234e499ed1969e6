"""Refit a finished reader run's calibration with the current code, in place.

    python tools/recalibrate_reader.py RUN

For reader runs trained before `training.reading.calibrate_reader` changed: the temperature,
the "not a number" threshold and the ECE are fitted again on the same 2,000 numbers of the
run's held-out training digits, exactly as the end of `digitlab train --recipe reader` fits
them now, and written into the run's metadata (`reader`); the weights are not touched. The
run's report is then written again with it.
"""

import argparse
import json
from pathlib import Path

from digitlab.bundle import load_bundle
from digitlab.checkpoint import add_metadata
from digitlab.data import load_mnist
from digitlab.reading_report import write_reader_report
from digitlab.runs import RunPaths
from digitlab.training import load_run_config
from digitlab.training.reading import reader_calibration


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished `digitlab train --recipe reader` run")
    args = parser.parse_args()
    bundle = load_bundle(args.run, device="cpu", task="numbers")
    if bundle.metadata.get("model") != "crnn":
        parser.error(f"{args.run} is not a reader run (its model is {bundle.metadata['model']})")
    config, mnist = load_run_config(args.run), load_mnist()
    entry = reader_calibration(config, mnist, bundle.reader.model, bundle.device)
    print("before:", json.dumps(bundle.metadata.get("reader")))
    print("after: ", json.dumps(entry))
    add_metadata(RunPaths(args.run).model, {"reader": entry})
    write_reader_report(args.run, mnist)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
