"""Which files a command reads: the paths, folders and globs given on its command line."""

import glob
from collections.abc import Sequence
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def expand_paths(patterns: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders as their image files (recursively), globs as their matches.

    A pattern that matches nothing is kept as it is, so that it is reported as missing.
    """
    found: list[Path] = []
    for pattern in map(str, patterns):
        path = Path(pattern)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif not path.exists() and glob.has_magic(pattern):
            found += sorted(Path(p) for p in glob.glob(pattern, recursive=True)) or [path]
        else:
            found.append(path)
    return found
