"""digitlab: train, evaluate, explain and serve handwritten-digit recognizers with PyTorch.

The Python API, as `notebooks/walkthrough.ipynb` uses it:

    import digitlab

    mnist = digitlab.load_mnist()                         # $DIGITLAB_DATA or ~/.cache/digitlab
    config = digitlab.make_config("default", epochs=2)    # a recipe, fields overridden
    result = digitlab.train(config, mnist, "runs/mine")   # train, checkpoint, write the run
    report = digitlab.write_run_report("runs/mine", mnist)   # evaluation, plots, report.md
    predictor = digitlab.Predictor.from_checkpoint()      # the newest run, else the packaged
    digitlab.predict_paths(predictor, ["photo.jpg"])      # photos and scans of single digits
    reader = digitlab.NumberReader.from_checkpoint()      # the newest reader run, else packaged
    digitlab.read_paths(reader, ["meter.jpg"])            # numbers: "2026", lines, boxes
    bundle = digitlab.load_bundle("runs/mine")            # one checkpoint's models, read once
    digitlab.export_checkpoint(checkpoint, "model.onnx", "onnx")

Importing the package stays light: each name below is imported from its module on first use
(PEP 562), so `import digitlab` loads neither torch nor matplotlib.
"""

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name → the module that defines it (and its name there, when different).
_API: dict[str, tuple[str, str]] = {
    "load_mnist": ("digitlab.data", "load_mnist"),
    "make_config": ("digitlab.config", "make_config"),
    "list_recipes": ("digitlab.config", "list_recipes"),
    "list_models": ("digitlab.models", "list_models"),
    "train": ("digitlab.training", "train"),
    "evaluate": ("digitlab.evaluation", "evaluate"),
    "write_run_report": ("digitlab.report", "write_run_report"),
    "load_model": ("digitlab.checkpoint", "load_model"),
    "default_checkpoint": ("digitlab.runs", "default_checkpoint"),
    "load_bundle": ("digitlab.bundle", "load_bundle"),
    "Predictor": ("digitlab.predict", "Predictor"),
    "predict_paths": ("digitlab.predict", "predict_paths"),
    "NumberReader": ("digitlab.read", "NumberReader"),
    "read_image": ("digitlab.read", "read_image"),
    "read_images": ("digitlab.read", "read_images"),
    "read_paths": ("digitlab.read", "read_paths"),
    "export_checkpoint": ("digitlab.export", "export_checkpoint"),
}

__all__ = [
    "__version__",
    "load_mnist",
    "make_config",
    "list_recipes",
    "list_models",
    "train",
    "evaluate",
    "write_run_report",
    "load_model",
    "default_checkpoint",
    "load_bundle",
    "Predictor",
    "predict_paths",
    "NumberReader",
    "read_image",
    "read_images",
    "read_paths",
    "export_checkpoint",
]

if TYPE_CHECKING:
    from digitlab.bundle import load_bundle
    from digitlab.checkpoint import load_model
    from digitlab.config import list_recipes, make_config
    from digitlab.data import load_mnist
    from digitlab.evaluation import evaluate
    from digitlab.export import export_checkpoint
    from digitlab.models import list_models
    from digitlab.predict import Predictor, predict_paths
    from digitlab.read import NumberReader, read_image, read_images, read_paths
    from digitlab.report import write_run_report
    from digitlab.runs import default_checkpoint
    from digitlab.training import train


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'digitlab' has no attribute {name!r}")
    module, attribute = _API[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # once imported, found without __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
