"""Re-create the model that ships with digitlab (src/digitlab/pretrained/model.safetensors).

    python scripts/make_pretrained.py           # train it, check it, write it into the package
    python scripts/make_pretrained.py --check   # train it again and compare with the packaged one
    python scripts/make_pretrained.py --embed-rejector  # only put in the current detector
    python scripts/make_pretrained.py --embed-reader RUN  # put in a reader run of READER_COMMAND

It runs one `digitlab train` command (COMMAND below, with `--out` added) on real MNIST
($DIGITLAB_DATA or --data-dir), refuses a model under MIN_TEST_ACCURACY, and copies the run's
checkpoint into the package with a `source` entry in its metadata naming the command. Whatever
else training records goes along: config (recipe, seed), data checksum, test accuracy, and —
where training fits them — the calibration temperature and rejection threshold. So after a
change to training, one run of this script brings the packaged model up to date.

After `tools/make_rejector.py` has made a new "not a digit" detector, `--embed-rejector` puts
it and its threshold into the packaged model as training would have, without training: the
classifier's tensors are copied byte for byte (and checked to be).

Deterministic: on the CPU the same command gives the same weights (`--threads 1` makes the
arithmetic independent of the machine's core count). It lives in scripts/, not bench/: it
builds a file of the package rather than measuring a target, and users never run it.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from digitlab.checkpoint import add_metadata, read_model_file
from digitlab.cli import main as digitlab_main
from digitlab.pretrained import PACKAGED_MODEL

# A compact BatchNorm CNN (26,914 parameters, ~110 kB) trained with random rotation, zoom and
# shift, so that it reads digits cut out of real photos and scans, not only centred MNIST ones.
# One thread: the same arithmetic on every machine, and no slower on a busy one. The `fast`
# recipe's batch, learning rate and label smoothing have changed since; the command names the
# values the model was made with.
COMMAND = (
    "digitlab train --recipe fast --epochs 12 --batch-size 512 --lr 0.03 --label-smoothing 0 "
    "--rotation 10 --scale 0.1 --translate 0.1 --threads 1"
)
MIN_TEST_ACCURACY = 0.993
SCRIPT = "scripts/make_pretrained.py"
# The number reader it carries (tensors `reader.*`): hours of training, so it is trained apart
# and embedded with --embed-reader, which checks that the run was made by this command.
READER_COMMAND = "digitlab train --recipe reader --threads 1"


def train(out_dir: Path, data_dir: Path | None = None) -> Path:
    """Run COMMAND into `out_dir`; the run's checkpoint with `source` added to its metadata."""
    argv = [*COMMAND.split()[1:], "--out", str(out_dir), "--quiet"]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    if digitlab_main(argv) != 0:
        raise SystemExit(f"`{COMMAND}` failed")
    checkpoint = out_dir / "model.safetensors"
    add_metadata(checkpoint, {"source": {"command": COMMAND, "script": SCRIPT}})
    return checkpoint


def same_weights(a: Path, b: Path) -> bool:
    tensors_a, _ = read_model_file(a)
    tensors_b, _ = read_model_file(b)
    return tensors_a.keys() == tensors_b.keys() and all(
        torch.equal(tensors_a[k], tensors_b[k]) for k in tensors_a
    )


def embed_packaged_rejector(data_dir: Path | None = None) -> int:
    """Copy the packaged detector into the packaged model, with the threshold training would
    set (on the model's held-out training digits); the classifier must not change."""
    from digitlab.data import load_mnist, split_validation, to_float
    from digitlab.predict import Predictor
    from digitlab.reject import load_packaged, run_rejection
    from digitlab.synth.rejector import embed_rejector

    packaged = load_packaged()
    if packaged is None:
        print("no pretrained/rejector.safetensors: make it with tools/make_rejector.py")
        return 1
    rejector, detector_metadata = packaged
    before, metadata = read_model_file(PACKAGED_MODEL)
    mnist = load_mnist(data_dir) if data_dir else load_mnist()
    _, (held_out, _) = split_validation(
        mnist.train_images, mnist.train_labels, metadata["config"]["validation"]
    )
    classifier = Predictor.from_checkpoint(PACKAGED_MODEL, "cpu")
    probabilities = classifier.predict_probabilities(to_float(held_out))
    rejection = run_rejection(rejector, detector_metadata, held_out, probabilities)
    embed_rejector(PACKAGED_MODEL, rejector, rejection)
    after, metadata = read_model_file(PACKAGED_MODEL)
    same = before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    print(f"detector embedded (threshold {metadata['rejection']['threshold']:.4f}); classifier "
          + ("unchanged, bit for bit" if same else "CHANGED"))  # fmt: skip
    return 0 if same else 1


def _carried_reader(path: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The reader tensors (without their prefix) and metadata a checkpoint carries, if any."""
    from safetensors.torch import load_file

    _, metadata = read_model_file(path)
    tensors = {
        k[len("reader.") :]: v for k, v in load_file(str(path)).items() if k.startswith("reader.")
    }
    return (tensors, metadata["reader"]) if tensors and "reader" in metadata else None


def embed_reader(run_dir: Path) -> int:
    """Put a reader run's weights and calibration into the packaged model, after checking the
    run is READER_COMMAND's, finished and calibrated; the classifier must not change."""
    from digitlab.checkpoint import embed_tensors
    from digitlab.config import TrainConfig, make_config
    from digitlab.runs import RunPaths

    checkpoint = RunPaths(run_dir).model
    tensors, metadata = read_model_file(checkpoint)
    made_with = TrainConfig.from_dict(metadata["config"])
    differences = make_config("reader").result_differences(made_with)
    problems = [
        f"its settings differ from `{READER_COMMAND}` in {', '.join(differences)}"
        if differences
        else "",
        "" if metadata.get("complete") else "it did not finish training",
        "" if (metadata.get("reader") or {}).get("temperature") else "it is not calibrated",
    ]
    problems = [p for p in problems if p]
    if problems:
        print(f"not embedded: {run_dir}: {'; '.join(problems)}", file=sys.stderr)
        return 1
    before, _ = read_model_file(PACKAGED_MODEL)
    entry = metadata["reader"] | {
        "config": metadata["config"],
        "metrics": metadata.get("metrics", {}),
        "source": {"command": READER_COMMAND, "script": f"{SCRIPT} --embed-reader"},
    }
    embed_tensors(PACKAGED_MODEL, "reader.", tensors, "reader", entry)
    after, _ = read_model_file(PACKAGED_MODEL)
    same = before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    print(
        f"reader embedded from {run_dir}; classifier "
        + ("unchanged, bit for bit" if same else "CHANGED")
    )
    return 0 if same else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, don't write")
    parser.add_argument("--data-dir", type=Path, help="MNIST folder (default: $DIGITLAB_DATA)")
    parser.add_argument(
        "--embed-rejector",
        action="store_true",
        help="only replace the packaged model's detector with pretrained/rejector.safetensors",
    )
    parser.add_argument(
        "--embed-reader",
        type=Path,
        metavar="RUN",
        help=f"only put the number reader of RUN (made by `{READER_COMMAND}`) into the package",
    )
    args = parser.parse_args()
    if args.embed_reader:
        return embed_reader(args.embed_reader)
    if args.embed_rejector:
        return embed_packaged_rejector(args.data_dir)
    with tempfile.TemporaryDirectory(prefix="digitlab-pretrained-") as tmp:
        started = time.perf_counter()
        checkpoint = train(Path(tmp) / "run", args.data_dir)
        seconds = time.perf_counter() - started
        _, metadata = read_model_file(checkpoint)
        accuracy = metadata["metrics"]["test_accuracy"]
        print(f"{COMMAND}: test accuracy {accuracy:.2%} in {seconds:.0f} s")
        print(f"metadata: {', '.join(sorted(metadata))}")  # e.g. whether calibration is there
        if args.check:
            same = same_weights(checkpoint, PACKAGED_MODEL)
            print("same weights as the packaged model" if same else "DIFFERENT weights")
            return 0 if same else 1
        if accuracy < MIN_TEST_ACCURACY:
            print(f"not written: below {MIN_TEST_ACCURACY:.1%}", file=sys.stderr)
            return 1
        reader = _carried_reader(PACKAGED_MODEL)
        shutil.copyfile(checkpoint, PACKAGED_MODEL)
        if reader is not None:  # the new classifier carries the reader the old one did
            from digitlab.checkpoint import embed_tensors

            embed_tensors(PACKAGED_MODEL, "reader.", reader[0], "reader", reader[1])
        print(f"wrote {PACKAGED_MODEL} ({PACKAGED_MODEL.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
