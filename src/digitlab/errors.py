"""The one exception type users see.

Every error a user can cause (missing or corrupt data, an unknown model or recipe, a bad flag
value, a missing or tampered checkpoint, an unreadable image) raises a subclass of
`DigitlabError` whose message says what to do. The CLI prints it as one line and exits non-zero.
"""


class DigitlabError(Exception):
    """Base class for errors caused by user input or the environment, not by bugs."""


class DataError(DigitlabError):
    """MNIST files are missing, corrupt or cannot be downloaded."""


class ConfigError(DigitlabError):
    """An unknown model or recipe name, or an invalid setting."""


class CheckpointError(DigitlabError):
    """A checkpoint or run folder is missing, unreadable or tampered with."""


class ImageError(DigitlabError):
    """An image file cannot be read or is outside the accepted limits."""
