"""Comparing answers whose floats come from forward passes of different batches."""

import math


def same(a: object, b: object, rel_tol: float = 1e-5) -> bool:
    """JSON-like answers alike, floats up to their last bits: a batch's composition and torch's
    thread count change the rounding of a forward pass, nothing more."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel_tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key], rel_tol) for key in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y, rel_tol) for x, y in zip(a, b, strict=True))
    return a == b
