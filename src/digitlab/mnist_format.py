"""The MNIST format, named once: what every classifier reads and every picture is made into.

A digit is a grey image IMAGE_SIZE × IMAGE_SIZE, white ink on black, its longest side scaled to
BOX_SIZE and its centre of mass at the centre (LeCun et al.); it is one of NUM_CLASSES digits.
Plain numbers, no torch: anything may import them.
"""

IMAGE_SIZE = 28  # pixels on a side
BOX_SIZE = 20  # a digit's longest side inside the image
NUM_CLASSES = 10  # the digits 0-9
