"""Doodles drawn as a pen would: what no digit looks like, for the detector and the reader.

Each drawer takes an ImageDraw on a CANVAS × CANVAS image (white on black), a numpy Generator
and a stroke width, and draws one doodle about the centre: stars, hearts, smileys and faces,
hatching, scribbles and tangles, spirals, polygons, arrows, zigzags, grids, pen loops.
`DOODLES` lists them (tangles weighed up: the detector needs many); `KINDS_OF_DOODLE` once each.
"""

import math
from collections.abc import Callable

import numpy as np
from PIL import ImageDraw

CANVAS = 112  # doodles are drawn at 4× MNIST's size, then reduced like a photo's ink
Draw = ImageDraw.ImageDraw
Point = tuple[float, float]


def _centre_and_radius(rng: np.random.Generator) -> tuple[Point, float]:
    radius = float(rng.uniform(25, 50))
    return (CANVAS / 2 + rng.uniform(-5, 5), CANVAS / 2 + rng.uniform(-5, 5)), radius


def _star(draw: Draw, rng: np.random.Generator, width: int) -> None:
    (cx, cy), radius = _centre_and_radius(rng)
    points = int(rng.integers(4, 9))
    inner = radius * rng.uniform(0.3, 0.6)
    turn = rng.uniform(0, 2 * math.pi)
    corners = [
        (
            cx + (radius if k % 2 == 0 else inner) * math.cos(turn + k * math.pi / points),
            cy + (radius if k % 2 == 0 else inner) * math.sin(turn + k * math.pi / points),
        )
        for k in range(2 * points)
    ]
    if points % 2 == 0 or rng.uniform() < 0.6:
        draw.line([*_jitter(corners, rng, 3), corners[0]], fill=255, width=width, joint="curve")
    else:  # an odd star drawn in one stroke, tip to every second tip (a pentagram)
        tips = corners[::2]
        line = [tips[(2 * k) % points] for k in range(points + 1)]
        draw.line(_jitter(line, rng, 3), fill=255, width=width, joint="curve")


def _heart(draw: Draw, rng: np.random.Generator, width: int) -> None:
    (cx, cy), radius = _centre_and_radius(rng)
    size = radius / 17
    points = [
        (
            cx + size * 16 * math.sin(t) ** 3,
            cy
            - size
            * (13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)),
        )
        for t in np.linspace(0, 2 * math.pi, 60)
    ]
    draw.line(_jitter(points, rng, 2), fill=255, width=width, joint="curve")


def _smiley(draw: Draw, rng: np.random.Generator, width: int) -> None:
    (cx, cy), radius = _centre_and_radius(rng)
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    draw.ellipse(box, outline=255, width=width)
    eye = max(3.0, radius * rng.uniform(0.08, 0.16))
    for side in (-1, 1):
        ex, ey = cx + side * radius * 0.4, cy - radius * rng.uniform(0.2, 0.4)
        draw.ellipse((ex - eye, ey - eye, ex + eye, ey + eye), fill=255)
    mouth = radius * rng.uniform(0.4, 0.65)
    start = float(rng.uniform(10, 40))
    draw.arc(
        (cx - mouth, cy - mouth, cx + mouth, cy + mouth), start, 180 - start, fill=255, width=width
    )


def _hatching(draw: Draw, rng: np.random.Generator, width: int) -> None:
    directions = 2 if rng.uniform() < 0.4 else 1
    for _ in range(directions):
        angle = rng.uniform(0, math.pi)
        lines = int(rng.integers(4, 10))
        spacing = rng.uniform(8, 16)
        length = rng.uniform(50, 90)
        dx, dy = math.cos(angle), math.sin(angle)
        for k in range(lines):
            offset = (k - (lines - 1) / 2) * spacing
            mx, my = CANVAS / 2 - dy * offset, CANVAS / 2 + dx * offset
            half = length / 2 * rng.uniform(0.8, 1.0)
            draw.line(
                [(mx - dx * half, my - dy * half), (mx + dx * half, my + dy * half)],
                fill=255,
                width=max(2, width // 2),
            )


def _scribble(draw: Draw, rng: np.random.Generator, width: int) -> None:
    knots = rng.uniform(15, CANVAS - 15, size=(int(rng.integers(7, 16)), 2))
    draw.line(_smooth(knots), fill=255, width=width, joint="curve")


def _tangle(draw: Draw, rng: np.random.Generator, width: int) -> None:
    """A scribble as a pen crossing something out: a random walk that keeps turning."""
    x, y, heading = CANVAS / 2, CANVAS / 2, rng.uniform(0, 2 * math.pi)
    step, turn = rng.uniform(2, 5), rng.uniform(0.2, 0.8)
    points: list[Point] = [(x, y)]
    for _ in range(int(rng.integers(50, 200))):
        heading += rng.normal(0, turn)
        x = float(np.clip(x + step * math.cos(heading), 12, CANVAS - 12))
        y = float(np.clip(y + step * math.sin(heading), 12, CANVAS - 12))
        points.append((x, y))
    draw.line(points, fill=255, width=width, joint="curve")


def _face(draw: Draw, rng: np.random.Generator, width: int) -> None:
    """A smiley drawn differently: an oval, eyes as dots or dashes, a smile or a frown."""
    (cx, cy), radius = _centre_and_radius(rng)
    squash = rng.uniform(0.8, 1.15)
    draw.ellipse(
        (cx - radius, cy - radius * squash, cx + radius, cy + radius * squash),
        outline=255,
        width=width,
    )
    for side in (-1, 1):
        ex, ey = cx + side * radius * rng.uniform(0.25, 0.5), cy - radius * rng.uniform(0.15, 0.45)
        size = radius * rng.uniform(0.06, 0.18)
        if rng.uniform() < 0.5:
            draw.ellipse((ex - size, ey - size, ex + size, ey + size), fill=255)
        else:
            draw.line([(ex, ey - size * 1.5), (ex, ey + size * 1.5)], fill=255, width=width)
    mouth = radius * rng.uniform(0.35, 0.7)
    top = cy + radius * rng.uniform(-0.2, 0.2)
    frown = rng.uniform() < 0.25
    start, end = (
        (200.0, 340.0) if frown else (float(rng.uniform(5, 40)), float(rng.uniform(140, 175)))
    )
    box = (
        cx - mouth,
        top - mouth * 0.8 + (mouth if frown else 0),
        cx + mouth,
        top + mouth * 0.8 + (mouth if frown else 0),
    )
    draw.arc(box, start, end, fill=255, width=width)


def _spiral(draw: Draw, rng: np.random.Generator, width: int) -> None:
    (cx, cy), radius = _centre_and_radius(rng)
    turns = rng.uniform(2.2, 4.0)
    ts = np.linspace(0, turns * 2 * math.pi, 200)
    sign = 1 if rng.uniform() < 0.5 else -1
    points = [
        (
            cx + radius * t / ts[-1] * math.cos(sign * t),
            cy + radius * t / ts[-1] * math.sin(sign * t),
        )
        for t in ts
    ]
    draw.line(points, fill=255, width=max(3, width // 2), joint="curve")


def _polygon(draw: Draw, rng: np.random.Generator, width: int) -> None:
    (cx, cy), radius = _centre_and_radius(rng)
    sides = int(rng.choice([3, 4, 5, 6]))
    turn = rng.uniform(0, 2 * math.pi)
    corners = [
        (
            cx + radius * math.cos(turn + 2 * math.pi * k / sides),
            cy + radius * math.sin(turn + 2 * math.pi * k / sides),
        )
        for k in range(sides)
    ]
    draw.line([*_jitter(corners, rng, 3), corners[0]], fill=255, width=width, joint="curve")
    if rng.uniform() < 0.5:  # a mark inside: a cross, a dot or a diagonal
        draw.line([corners[0], corners[sides // 2]], fill=255, width=width)


def _arrow(draw: Draw, rng: np.random.Generator, width: int) -> None:
    angle = rng.uniform(0, 2 * math.pi)
    length = rng.uniform(35, 50)
    dx, dy = math.cos(angle), math.sin(angle)
    c = CANVAS / 2
    head = (c + dx * length, c + dy * length)
    draw.line([(c - dx * length, c - dy * length), head], fill=255, width=width)
    for side in (-1, 1):
        back = angle + math.pi + side * rng.uniform(0.4, 0.7)
        size = length * rng.uniform(0.4, 0.6)
        draw.line(
            [head, (head[0] + size * math.cos(back), head[1] + size * math.sin(back))],
            fill=255,
            width=width,
        )


def _zigzag(draw: Draw, rng: np.random.Generator, width: int) -> None:
    teeth = int(rng.integers(4, 9))
    height = rng.uniform(15, 35)
    xs = np.linspace(15, CANVAS - 15, teeth + 1)
    top = CANVAS / 2 + rng.uniform(-10, 10)
    points = [(float(x), top + (height if k % 2 else -height) / 2) for k, x in enumerate(xs)]
    if rng.uniform() < 0.5:  # a wave instead of a zigzag
        points = _smooth(np.array(points))
    draw.line(points, fill=255, width=width, joint="curve")


def _grid(draw: Draw, rng: np.random.Generator, width: int) -> None:
    lines = int(rng.integers(2, 5))
    for k in range(lines):
        at = 25 + k * (CANVAS - 50) / max(1, lines - 1) + rng.uniform(-4, 4)
        draw.line([(at, 15), (at + rng.uniform(-8, 8), CANVAS - 15)], fill=255, width=width)
        draw.line([(15, at), (CANVAS - 15, at + rng.uniform(-8, 8))], fill=255, width=width)


def _loops(draw: Draw, rng: np.random.Generator, width: int) -> None:
    """A row of pen loops (a prolate cycloid), as cursive writing or a doodled coil, tilted."""
    loops = rng.uniform(1.0, 3.0)
    size = rng.uniform(12, 30)
    reach = rng.uniform(1.5, 3.0)  # above 1, the pen turns back on itself: loops
    ts = np.linspace(0, loops * 2 * math.pi, 240)
    xs, ys = size * (ts - reach * np.sin(ts)), size * reach * np.cos(ts)
    xs = xs - xs.mean()
    angle = rng.uniform(-0.6, 0.6)
    scale = min(1.0, (CANVAS - 24) / max(float(np.ptp(xs)), 1.0))
    points = [
        (
            CANVAS / 2 + scale * (x * math.cos(angle) - y * math.sin(angle)),
            CANVAS / 2 + scale * (x * math.sin(angle) + y * math.cos(angle)),
        )
        for x, y in zip(xs, ys, strict=True)
    ]
    draw.line(points, fill=255, width=width, joint="curve")


DOODLES: list[Callable[[Draw, np.random.Generator, int], None]] = [
    _star, _heart, _smiley, _face, _hatching, _scribble, _scribble, _spiral, _polygon, _arrow,
    _zigzag, _grid, _loops, _loops, *[_tangle] * 9,
]  # fmt: skip


def _jitter(points: list[Point], rng: np.random.Generator, amount: float) -> list[Point]:
    return [(x + rng.uniform(-amount, amount), y + rng.uniform(-amount, amount)) for x, y in points]


def _smooth(knots: np.ndarray, samples: int = 12) -> list[Point]:
    """A Catmull-Rom curve through the knots (a pen's path rather than straight segments)."""
    padded = np.vstack([knots[:1], knots, knots[-1:]])
    points: list[Point] = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1], padded[i], padded[i + 1], padded[i + 2]
        for t in np.linspace(0, 1, samples, endpoint=False):
            point = 0.5 * (
                2 * p1
                + (p2 - p0) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (3 * p1 - p0 - 3 * p2 + p3) * t**3
            )
            points.append((float(point[0]), float(point[1])))
    points.append((float(knots[-1][0]), float(knots[-1][1])))
    return points


KINDS_OF_DOODLE = list(dict.fromkeys(DOODLES))
