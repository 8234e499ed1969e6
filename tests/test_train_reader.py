"""`digitlab train --recipe reader`, shortened: a real run on MNIST training digits learns to
read, and ends calibrated and loadable by `read`.

Two epochs of 4,000 generated numbers (the recipe has four of 80,000): on the developers' 2-core
machine the loss fell from 12.5 to 3.4 and 59 of 100 clean three-digit numbers of test digits
were read whole (a run that learned nothing reads none).
"""

import numpy as np
import pytest
from PIL import Image

from digitlab.config import make_config
from digitlab.data import MNIST
from digitlab.read import NumberReader, read_images
from digitlab.synth.clean_numbers import number_picture
from digitlab.training import train

pytestmark = pytest.mark.slow  # about three minutes of training


@pytest.fixture(scope="module")
def short_run(mnist: MNIST, tmp_path_factory: pytest.TempPathFactory):
    config = make_config("reader", epochs=2, epoch_size=4000, loaders=0, threads=2)
    run = tmp_path_factory.mktemp("runs") / "reader"
    return train(config, mnist, run), run


def test_its_loss_falls(short_run):
    result, _ = short_run
    first, last = result.history[0], result.history[-1]
    assert last.train_loss < first.train_loss / 2
    assert last.val_loss < first.val_loss


def test_it_reads_clean_numbers_of_test_digits(mnist: MNIST, short_run):
    _, run = short_run
    reader = NumberReader.from_checkpoint(run, "cpu")
    rng = np.random.default_rng(0)
    images, labels = mnist.test_images.numpy(), mnist.test_labels.numpy()
    chosen = [rng.integers(0, len(labels), 3) for _ in range(100)]
    pictures = [Image.fromarray(number_picture([images[i] for i in idx])) for idx in chosen]
    texts = ["".join(str(labels[i]) for i in idx) for idx in chosen]
    read = [reading.text for reading in read_images(reader, pictures)]
    right = sum(got == text for got, text in zip(read, texts, strict=True))
    assert right >= 40, f"{right}/100 read whole; e.g. {read[:5]} for {texts[:5]}"


def test_it_is_calibrated_and_says_what_it_is(short_run):
    _, run = short_run
    reader = NumberReader.from_checkpoint(run, "cpu")
    fitted = reader.metadata["reader"]
    assert fitted["fitted_on"] == 2000
    # Fitted inside the search range, not at its edge, and honest where the raw one is not.
    assert 0.1 < fitted["temperature"] < 10
    assert 0 < fitted["threshold"] < 1
    assert fitted["ece"] < fitted["ece_uncalibrated"]
    assert reader.model_name == "crnn"
