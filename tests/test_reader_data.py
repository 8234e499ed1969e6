"""The sequence reader's generated training data: deterministic, from the training split only."""

import numpy as np
import pytest

from digitlab.lines import LINE_HEIGHT
from digitlab.synth.fonts import HELD_OUT_FAMILIES, TRAINING_FAMILIES, held_out_fonts
from digitlab.synth.reader_data import reader_source, sample


@pytest.fixture(scope="module")
def source(mnist):
    return reader_source(mnist.train_images, mnist.train_labels, held_out=5000)


def test_samples_are_the_same_for_the_same_seed_and_index(source):
    first = [sample(source, 3, i) for i in range(6)]
    again = [sample(source, 3, i) for i in range(6)]
    other = [sample(source, 4, i) for i in range(6)]
    for (a, text_a), (b, text_b) in zip(first, again, strict=True):
        assert text_a == text_b and np.array_equal(a, b)
    assert [t for _, t in first] != [t for _, t in other]


def test_samples_are_line_images_of_digits_or_nothing(source):
    made = [sample(source, 0, i) for i in range(60)]
    assert all(image.shape[0] == LINE_HEIGHT and image.dtype == np.float32 for image, _ in made)
    texts = [text for _, text in made]
    assert all(text == "" or text.isdigit() for text in texts)
    assert 0 < texts.count("") < 30  # some non-numbers, mostly numbers
    assert max(len(t) for t in texts) >= 7  # long numbers too


def test_the_source_holds_training_digits_only_less_the_held_out(mnist, source):
    assert len(source.digits) == len(mnist.train_images) - 5000
    # The held-out digits are the ones calibration uses: none of them is in the source.
    from digitlab.data import split_validation

    _, (held_out, _) = split_validation(mnist.train_images, mnist.train_labels, 5000)
    source_rows = {row.tobytes() for row in source.digits[::1]}
    assert not any(image.numpy().tobytes() in source_rows for image in held_out[:500])


def test_fonts_are_split_by_family_and_training_never_uses_a_held_out_one(source):
    assert not set(HELD_OUT_FAMILIES) & set(TRAINING_FAMILIES)
    held_out = {font for family in held_out_fonts() for font in family}
    assert held_out and not held_out & {font for family in source.fonts for font in family}
