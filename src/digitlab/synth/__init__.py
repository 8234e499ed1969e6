"""Generated data: what only training, tests and benchmarks import, never the runtime path.

- `fonts`: the handwriting fonts, split into those that train and those held out to score;
- `numbers`: numbers as ink, from MNIST digits or typed in a font;
- `clutter`: words, doodles, printed lines, boxes and comb fields;
- `photos`: ink drawn as a photo or a scan;
- `nondigits`: marks that are not one digit, for the "not a digit" detector;
- `reader_data`: the sequence reader's training stream.
"""
