"""Fixtures shared by every test module: the real MNIST folder and the dataset loaded once."""

import os

# Plots are drawn off-screen in tests; set before anything imports matplotlib.
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from digitlab.data import ENV_VAR, MNIST, load_mnist  # noqa: E402

# The project's tests read the shared, read-only copy of MNIST next to the repository.
# A folder of a finished `digitlab train --recipe default` run to use as `trained_run` instead of
# training one in every session (when the CPU is shared and slow). Unset: trained here.
REUSE_TRAINED_RUN = "DIGITLAB_TEST_TRAINED_RUN"
SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


# Session fixtures that train a model before their first test: every test that uses one, directly
# or through another fixture, is marked slow (`make test-fast` leaves it out) by the hook below.
# Tests that train by themselves, or through a fixture of their own module, say so with
# @pytest.mark.slow.
TRAINING_FIXTURES = {"trained_run"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST folder: $DIGITLAB_DATA if set, else <repo>/../shared/data/mnist."""
    path = (
        Path(os.environ[ENV_VAR]).expanduser().resolve()
        if os.environ.get(ENV_VAR)
        else SHARED_MNIST
    )
    if not path.is_dir():
        pytest.fail(
            f"MNIST folder {path} not found; set {ENV_VAR} to a folder holding the four "
            "MNIST files (e.g. train-images-idx3-ubyte.gz)"
        )
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path) -> MNIST:
    return load_mnist(mnist_dir)


@pytest.fixture(scope="session")
def trained_run(mnist: MNIST, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding lenet trained with the `default` recipe on real MNIST (~99%).

    Trained once per session and shared by the tests that need a good model (prediction on
    images, the server, the browser); tests must not modify it.
    """
    from digitlab.config import make_config
    from digitlab.training import train

    if os.environ.get(REUSE_TRAINED_RUN):  # a busy machine: reuse a finished default run
        return Path(os.environ[REUSE_TRAINED_RUN])
    run_dir = tmp_path_factory.mktemp("trained") / "default"
    train(make_config("default"), mnist, run_dir)
    return run_dir


@pytest.fixture(scope="session")
def reader_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder as `digitlab train --recipe reader` writes it (metadata "model": "crnn",
    the reader's own tensors without a prefix), holding the packaged model's reader."""
    from digitlab.bundle import READER_PREFIX
    from digitlab.checkpoint import read_checkpoint, save_model, tensors_under
    from digitlab.pretrained import PACKAGED_MODEL
    from digitlab.reader import CRNN

    tensors, metadata = read_checkpoint(PACKAGED_MODEL)
    model = CRNN()
    model.load_state_dict(tensors_under(tensors, READER_PREFIX))
    run = tmp_path_factory.mktemp("runs") / "reader"
    info = {"temperature": 1.0, "threshold": None}
    save_model(run / "model.safetensors", model, {"model": "crnn", "members": 1, "reader": info})
    return run


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding a lenet with fixed random weights and no reader: for tests of which
    checkpoint is used and what is said about it, not of what it answers."""
    import torch

    from digitlab.checkpoint import save_model
    from digitlab.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model("lenet")
    run = tmp_path_factory.mktemp("runs") / "lenet"
    save_model(run / "model.safetensors", model, {"model": "lenet", "members": 1, "epoch": 1})
    return run
