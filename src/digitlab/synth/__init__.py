"""Generated data: what only training, tests, benchmarks and tools import, never the runtime path.

- `fonts`: the handwriting fonts, split into those that train and those held out to score;
- `numbers`: numbers as ink, from MNIST digits or typed in a font;
- `clutter`: words, doodles, printed lines, boxes and comb fields;
- `photos`: ink drawn as a photo or a scan; single MNIST digits as photos, and the hard kinds;
- `nondigits`: marks that are not one digit, for the "not a digit" detector's training;
- `rejector`: the "not a digit" detector's training set and loop;
- `reader_data`: the sequence reader's training stream;
- `marks`: marks that are not numbers, drawn apart from what training sees (tests, benchmarks,
  and the frozen set `digitlab evaluate` scores);
- `pictures`: pictures of numbers of every kind from MNIST test digits and held-out fonts;
- `clean_numbers`: plain scans of numbers, for the tests of the plumbing.
"""
