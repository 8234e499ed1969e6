"""The sequence reader: a line image → CTC frames → the digits, with probabilities and columns.

A small CRNN (Shi et al. 2015): convolutions turn a grey line image LINE_HEIGHT (32) pixels
high into one feature vector per 4 columns (a frame), a bidirectional GRU reads the frames in
both directions, and a linear layer scores each frame as one of the 10 digits or "blank"
(nothing new here). Trained with CTC (Graves et al. 2006) on generated numbers, it needs no
cut between digits: touching and overlapping digits are read as they come.

Decoding is greedy: the best symbol of each frame, repeats merged, blanks dropped. Each digit
keeps the frames that emitted it (its columns in the picture) and its probability; the whole
string's probability is the CTC probability of the decoded string, summed over every
alignment of it to the frames, after the temperature fitted on held-out strings.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BLANK = 0  # CTC's "no new symbol"; digit d is symbol d + 1
SYMBOLS = 11
FRAME_WIDTH = 4  # line-image columns per frame (two 2× poolings across)
WIDTH_MULTIPLE = 16  # line images are padded to a multiple of this many columns


def _conv_bn_relu(c_in: int, c_out: int, kernel: tuple[int, int] | int = 3) -> nn.Sequential:
    padding = 1 if kernel == 3 else 0
    # Bias-free: BatchNorm's shift right after makes a conv bias redundant.
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class CRNN(nn.Module):
    """Convolutions down to one row of frames, a BiGRU, a linear layer to 11 symbols.

    Input (N, 1, 32, W) float in [0, 1], white ink on black, W a multiple of 16; output
    (N, W / 4, 11) log-probabilities. `lengths` (N,), each image's own width before batch
    padding, keeps a short image's frames from seeing its neighbours' padding in the GRU.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (32, 64, 96, 128), hidden: int = 96):
        super().__init__()
        c1, c2, c3, c4 = widths
        self.features = nn.Sequential(
            _conv_bn_relu(1, c1),
            nn.MaxPool2d(2),  # (N, c1, 16, W/2)
            _conv_bn_relu(c1, c2),
            nn.MaxPool2d(2),  # (N, c2, 8, W/4)
            _conv_bn_relu(c2, c3),
            _conv_bn_relu(c3, c3),
            nn.MaxPool2d((2, 1)),  # (N, c3, 4, W/4): the height shrinks, the frames stay
            _conv_bn_relu(c3, c4),
            _conv_bn_relu(c4, c4, (4, 1)),  # (N, c4, 1, W/4): one feature vector per frame
        )
        self.rnn = nn.GRU(c4, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, SYMBOLS)

    def forward(self, images: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        frames = self.features(images).squeeze(2).transpose(1, 2)  # (N, T, c4)
        if lengths is None:
            hidden, _ = self.rnn(frames)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(
                frames, (lengths // FRAME_WIDTH).cpu(), batch_first=True, enforce_sorted=False
            )
            out, _ = self.rnn(packed)
            hidden, _ = nn.utils.rnn.pad_packed_sequence(
                out, batch_first=True, total_length=frames.shape[1]
            )
        return F.log_softmax(self.head(hidden), dim=2)  # (N, T, 11)


def padded_width(width: int) -> int:
    """The width a line image of `width` columns is padded to (by itself, whatever its batch)."""
    return max(WIDTH_MULTIPLE, -(-width // WIDTH_MULTIPLE) * WIDTH_MULTIPLE)


def batch_lines(lines: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Line images (32, W_i) → a batch (N, 1, 32, W_max) padded with paper on the right, and
    each image's padded width (N,)."""
    widths = torch.tensor([padded_width(line.shape[1]) for line in lines])
    batch = torch.zeros(len(lines), 1, lines[0].shape[0], int(widths.max()))
    for index, line in enumerate(lines):
        batch[index, 0, :, : line.shape[1]] = line
    return batch, widths


@dataclass(frozen=True)
class DecodedDigit:
    digit: int
    probability: float  # the best frame's probability of this digit
    first_frame: int
    last_frame: int  # inclusive

    @property
    def columns(self) -> tuple[int, int]:
        """First and last line-image column of the frames that emitted it."""
        return self.first_frame * FRAME_WIDTH, (self.last_frame + 1) * FRAME_WIDTH - 1


def greedy_decode(log_probs: torch.Tensor) -> list[DecodedDigit]:
    """One image's (T, 11) log-probabilities → its digits: best symbol per frame, runs of the
    same symbol merged, blanks dropped ("1 1 _ 1" is "11"; "1 _ 1" too)."""
    probabilities, best = log_probs.exp().max(dim=1)
    digits: list[DecodedDigit] = []
    previous = BLANK
    frames = zip(best.tolist(), probabilities.tolist(), strict=True)
    for frame, (symbol, probability) in enumerate(frames):
        if symbol != BLANK and symbol == previous:
            last = digits[-1]
            digits[-1] = DecodedDigit(
                last.digit, max(last.probability, probability), last.first_frame, frame
            )
        elif symbol != BLANK:
            digits.append(DecodedDigit(symbol - 1, probability, frame, frame))
        previous = symbol
    return digits


def string_log_probability(
    log_probs: torch.Tensor, digits: list[list[int]], frames: torch.Tensor | None = None
) -> torch.Tensor:
    """log P(string) under CTC for each image: (N, T, 11) log-probabilities and each image's
    digits → (N,), summed over every alignment (an empty string: every frame blank). `frames`
    gives each image's own frame count when the batch is padded (default: all T)."""
    if frames is None:
        frames = torch.full((len(digits),), log_probs.shape[1], dtype=torch.long)
    targets = torch.tensor([d + 1 for string in digits for d in string], dtype=torch.long)
    target_lengths = torch.tensor([len(string) for string in digits], dtype=torch.long)
    loss = F.ctc_loss(
        log_probs.transpose(0, 1).double(),
        targets,
        frames,
        target_lengths,
        blank=BLANK,
        reduction="none",
        zero_infinity=False,
    )
    return -loss.float()


def scale_log_probs(log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Log-probabilities with the logits divided by `temperature` (the calibration)."""
    if temperature == 1.0:
        return log_probs
    return F.log_softmax(log_probs / temperature, dim=-1)
