"""`digitlab.reader`: the CRNN's shapes, CTC decoding, string probabilities; the training data."""

import numpy as np
import torch
import torch.nn.functional as F

from digitlab.lines import LINE_HEIGHT, find_numbers
from digitlab.reader import (
    BLANK,
    CRNN,
    FRAME_WIDTH,
    SYMBOLS,
    batch_lines,
    greedy_decode,
    padded_width,
    string_log_probability,
)
from digitlab.synth.numbers import write_digits


def frames_for(symbols: list[int], confidence: float = 0.9) -> torch.Tensor:
    """(T, 11) log-probabilities whose best symbol per frame is the given one."""
    probabilities = torch.full((len(symbols), SYMBOLS), (1 - confidence) / (SYMBOLS - 1))
    probabilities[torch.arange(len(symbols)), torch.tensor(symbols)] = confidence
    return probabilities.log()


def test_greedy_decoding_merges_repeats_and_keeps_them_across_a_blank():
    one, zero, seven = 2, 1, 8  # digit d is symbol d + 1
    assert [
        d.digit for d in greedy_decode(frames_for([one, one, BLANK, one, zero, BLANK, zero]))
    ] == [1, 1, 0, 0]
    sevens = [seven, BLANK, seven, seven, BLANK, seven, BLANK, BLANK, seven]
    decoded = greedy_decode(frames_for(sevens))
    assert [d.digit for d in decoded] == [7, 7, 7, 7]
    assert decoded[1].first_frame == 2 and decoded[1].last_frame == 3
    assert decoded[1].columns == (2 * FRAME_WIDTH, 4 * FRAME_WIDTH - 1)


def test_string_probability_sums_alignments_and_allows_the_empty_string():
    log_probs = frames_for([2, 2, BLANK, 2], confidence=0.7)[None]
    p11 = string_log_probability(log_probs, [[1, 1]]).exp().item()
    p1 = string_log_probability(log_probs, [[1]]).exp().item()
    empty = string_log_probability(log_probs, [[]]).exp().item()
    assert p11 > p1 > 0 and 0 < empty < p1
    # Every string's probability together is at most 1.
    assert p11 + p1 + empty <= 1.0


def test_the_model_gives_one_frame_per_four_columns():
    model = CRNN().eval()
    with torch.no_grad():
        out = model(torch.rand(3, 1, LINE_HEIGHT, 64))
    assert out.shape == (3, 64 // FRAME_WIDTH, SYMBOLS)
    assert torch.allclose(out.exp().sum(dim=2), torch.ones(3, 16), atol=1e-5)
    assert sum(p.numel() * 4 for p in model.parameters()) <= 2_000_000  # ≤ 2 MB of float32


def test_padding_a_batch_does_not_change_an_images_frames():
    model = CRNN().eval()
    short, long = torch.rand(LINE_HEIGHT, 40), torch.rand(LINE_HEIGHT, 100)
    alone, _ = batch_lines([short])
    batch, widths = batch_lines([short, long])
    assert widths.tolist() == [padded_width(40), padded_width(100)]
    with torch.no_grad():
        by_itself = model(alone, torch.tensor([padded_width(40)]))[0]
        in_batch = model(batch, widths)[0, : by_itself.shape[0]]
    # Only the GRU is packed; the convolutions of the last frames see a wider zero margin.
    assert torch.allclose(by_itself[:-2], in_batch[:-2], atol=1e-4)


def test_the_longest_narrowest_number_has_frames_for_ctc(mnist):
    """Ten touching 1s need 19 frames (a blank between repeats): the line image gives them."""
    ones = mnist.test_images[mnist.test_labels == 1][:10].numpy()
    line = write_digits(list(ones), [-0.05] * 9, np.random.default_rng(0))
    found = find_numbers(np.pad(line, 10))
    assert len(found) == 1
    assert padded_width(found[0].pixels.shape[1]) // FRAME_WIDTH >= 2 * 10 - 1


def test_an_empty_target_trains_towards_blank():
    torch.manual_seed(0)
    model = CRNN((8, 8, 8, 8), hidden=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    images, widths = torch.rand(4, 1, LINE_HEIGHT, 32), torch.full((4,), 32)
    losses = []
    for _ in range(30):
        log_probs = model(images, widths)
        loss = F.ctc_loss(
            log_probs.transpose(0, 1), torch.zeros(0, dtype=torch.long),
            widths // FRAME_WIDTH, torch.zeros(4, dtype=torch.long),
        )  # fmt: skip
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0] / 4
    assert greedy_decode(model.eval()(images[:1])[0]) == []
