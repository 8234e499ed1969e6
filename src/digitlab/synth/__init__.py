"""Generated data: what only training, tests and benchmarks import, never the runtime path.

- `fonts`: the handwriting fonts, split by family into those that train and those held out;
- `numbers`: numbers as ink, from MNIST digits or typed in a font;
- `doodles`, `clutter`: doodles, words, printed lines, boxes and comb fields;
- `photos`: ink drawn as a photo or a scan (and single test digits: tight, blurred, low-res);
- `reader_data`: the sequence reader's training stream;
- `nondigits`, `rejector`: marks that are not one digit, and the "not a digit" detector's
  training;
- `pictures`, `marks`, `clean_numbers`: what tests and benchmarks score on, from MNIST test
  digits, held-out fonts, and marks drawn apart from anything that trains.
"""
