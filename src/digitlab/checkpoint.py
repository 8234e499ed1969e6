"""Saving and loading models and training state, safely and atomically.

Two files per run, neither of which can execute code when loaded:

- `model.safetensors`: the weights plus JSON metadata (model name, config, metrics, versions,
  data checksum). This is what `predict`, `evaluate`, `serve` and `export` read.
- `train_state.pt`: everything needed to continue training (optimizer, schedule, RNG states,
  position in the epoch). Loaded with `torch.load(weights_only=True)`, which refuses pickled code.

Every write goes to a temporary file in the same folder and is renamed into place, so a crash
or Ctrl-C never leaves a half-written checkpoint. A process killed between the two leaves the
temporary file behind (nothing reads it; `remove_leftovers` does, when the run is resumed) and the
previous file in place. A resumed run relies on `train_state.pt` alone, which is written first.
"""

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from digitlab.errors import CheckpointError

if TYPE_CHECKING:
    from digitlab.config import TrainConfig

METADATA_KEY = "digitlab"
# Tensors under these names are stored with a model but are not its weights (see save_model).
EXTRA_PREFIXES = ("rejector.", "reader.")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes files private, and some writers (safetensors) replace the file with
        # one of their own: set the mode of what was written, as run folders are shared.
        os.chmod(tmp, 0o644)
        _flush_to_disk(Path(tmp))  # else a lost machine may keep the new name but not the data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _flush_to_disk(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_leftovers(folder: Path) -> None:
    """Delete the temporary files of writes that a killed process left in `folder`."""
    for leftover in folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"{path} is missing") from err
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not readable JSON ({err})") from err


def save_model(
    path: Path,
    model: nn.Module,
    metadata: dict[str, Any],
    *,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """`extra_tensors`: more tensors stored beside the model's (e.g. the "not a digit"
    detector's, named `rejector.*`); `load_model` leaves them out of the model."""
    from safetensors.torch import save_file

    # safetensors wants contiguous, unshared tensors (channels_last weights are not contiguous).
    tensors = {
        k: v.detach().cpu().contiguous()
        for k, v in (model.state_dict() | (extra_tensors or {})).items()
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata)})


def checkpoint_metadata(
    config: "TrainConfig",
    epoch: int,
    metrics: dict[str, float],
    *,
    world_size: int = 1,
    backend: str | None = None,
    resumed: list[dict[str, int]] | None = None,
) -> dict[str, Any]:
    """What a `model.safetensors` says about itself: how it was made and how far it got.

    `world_size` is the number of processes that trained it (torchrun), `backend` their
    torch.distributed backend (None for one process), `resumed` where the run was resumed
    (`resume.Resumed.record()`s)."""
    import digitlab
    from digitlab.data import DATA_CHECKSUM

    return {
        "model": config.model,
        "members": config.members,
        "config": config.to_dict(),
        "epoch": epoch,
        "complete": epoch == config.epochs,
        "metrics": metrics,
        "world_size": world_size,
        "backend": backend,
        "resumed": resumed or [],
        "digitlab_version": digitlab.__version__,
        "torch_version": torch.__version__,
        "data_checksum": DATA_CHECKSUM,
    }


def read_model_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model's weights (not the extra tensors) and the metadata of a `model.safetensors`,
    or a CheckpointError saying why not."""
    tensors, metadata = read_checkpoint(path)
    return {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIXES)}, metadata


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every tensor of a `model.safetensors` (the extra ones too) and its metadata, read in one
    pass; or a CheckpointError saying why not."""
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train one with `digitlab train`")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = json.loads((f.metadata() or {})[METADATA_KEY])
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as err:  # safetensors raises several types for damaged files
        raise CheckpointError(
            f"{path} is not a valid digitlab checkpoint (damaged, tampered with, or not a "
            f"safetensors file written by digitlab): {err}"
        ) from err
    if not isinstance(metadata, dict) or "model" not in metadata:
        raise CheckpointError(f"{path} has no digitlab metadata; it was not written by digitlab")
    return tensors, metadata


def tensors_under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named `prefix` + name, by name (e.g. the detector's under "rejector.")."""
    return {name[len(prefix) :]: t for name, t in tensors.items() if name.startswith(prefix)}


def add_metadata(path: Path, entries: dict[str, Any]) -> None:
    """Add `entries` to a checkpoint's metadata, keeping every tensor (the extra ones too)."""
    from safetensors.torch import load_file, save_file

    _, metadata = read_model_file(path)  # checks it is a digitlab checkpoint
    tensors = load_file(str(path))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata | entries)})


def embed_tensors(
    path: Path, prefix: str, tensors: dict[str, torch.Tensor], key: str, entry: dict[str, Any]
) -> None:
    """Put `tensors` into an existing checkpoint under names `prefix` + name, in place of
    those it had under that prefix, and `entry` into its metadata under `key` (the "not a
    digit" detector: "rejector.", "rejection"; a number reader: "reader.", "reader"). Every
    other tensor is copied byte for byte, so the model stays exactly as it was."""
    from safetensors.torch import load_file, save_file

    _, metadata = read_model_file(path)  # checks it is a digitlab checkpoint
    kept = {name: t for name, t in load_file(str(path)).items() if not name.startswith(prefix)}
    added = {prefix + name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    with atomic_path(path) as tmp:
        entries = {METADATA_KEY: json.dumps(metadata | {key: entry})}
        save_file(kept | added, str(tmp), metadata=entries)


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint names and load its weights: (model in eval mode, metadata)."""
    tensors, metadata = read_model_file(path)
    return build_checkpoint_model(path, metadata, tensors).to(device).eval(), metadata


def build_checkpoint_model(
    path: Path, metadata: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> nn.Module:
    """The model `metadata` names (an ensemble of `members` of it), with the weights among
    `tensors` (the extra ones are left out); a CheckpointError if they do not fit. `path`
    only names the checkpoint in the error."""
    from digitlab.models import build_model

    members = metadata.get("members", 1)
    if not isinstance(members, int) or members < 1:
        raise CheckpointError(f"{path} has invalid metadata: members = {members!r}")
    model = build_model(metadata["model"], members)
    weights = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIXES)}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first_line = str(err).splitlines()[0]
        raise CheckpointError(
            f"{path} does not fit model {metadata['model']!r}: {first_line}"
        ) from err
    return model


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no training state at {path}; is this a digitlab run folder?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors, damaged zip archives
        raise CheckpointError(
            f"refusing to load {path}: it is damaged or holds something other than tensors "
            f"and plain values ({str(err).splitlines()[0]})"
        ) from err
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a digitlab training state")
    return state
