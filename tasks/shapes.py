"""Shapes: a procedural captioning dataset that needs no download and trains on a laptop CPU.

Each 64x64 image shows one to three coloured shapes (circle, square, triangle, diamond) of two sizes,
placed in cells of a 3x3 grid, on a background of a random light tint (a nuisance factor, as lighting
is in photographs: retrieval by raw pixels cannot simply match scenes, a model must learn to see). Five reference captions per image describe the shapes with their
attributes, absolute positions and pairwise spatial relations, in templates of different detail, so
caption lengths spread over about 5 to 20 words and grow with the number of shapes: quality by caption
length can be measured on it as on COCO.

Generation is deterministic from (seed, sizes, version) and cached under the cache folder
(`BENCH_CACHE`, default `.cache/` in the working directory) in the Karpathy JSON + image folder format,
so it goes through the same loader as COCO and Flickr30k.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.api import TaskInfo
from tasks.karpathy import KarpathyTask

VERSION = "2"
IMAGE_SIZE = 64
KINDS = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (150, 60, 190),
}
SIZES = {"small": 7, "large": 12}  # half-width in pixels
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
NUMBERS = {1: "one", 2: "two", 3: "three"}


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    size: str
    row: int
    col: int

    def noun(self, with_size: bool = True) -> str:
        size = f"{self.size} " if with_size else ""
        return f"a {size}{self.colour} {self.kind}"

    def place(self) -> str:
        if (self.row, self.col) == (1, 1):
            return "in the center"
        if self.row == 1:
            return f"on the {COLS[self.col]}"
        if self.col == 1:
            return f"at the {ROWS[self.row]}"
        return f"in the {ROWS[self.row]} {COLS[self.col]} corner"


def relation(a: Shape, b: Shape) -> str:
    """Where `a` is relative to `b`, by grid cells (columns first, as people read left to right)."""
    if a.col < b.col:
        return "to the left of"
    if a.col > b.col:
        return "to the right of"
    return "above" if a.row < b.row else "below"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def captions_for(shapes: list[Shape], rng: random.Random, n: int = 5) -> list[str]:
    """`n` distinct reference captions of varying detail for one image."""
    first = shapes[0]
    count = NUMBERS[len(shapes)]
    plural = "shape" if len(shapes) == 1 else "shapes"
    pool = [
        f"{count} {plural} : " + _join([s.noun(False) for s in shapes]),
        "a picture of " + _join([s.noun() for s in shapes]),
        _join([f"{s.noun(len(shapes) < 3)} {s.place()}" for s in shapes]),
        f"there {'is' if len(shapes) == 1 else 'are'} {count} {plural} on a plain background : "
        + _join([s.noun(False) for s in shapes]),
    ]
    if len(shapes) == 1:
        pool += [
            f"{first.noun()} {first.place()} of the image",
            f"a single {first.colour} {first.kind} on a plain background",
        ]
    else:
        a, b = shapes[0], shapes[1]
        pool += [
            f"{a.noun()} {relation(a, b)} {b.noun()}",
            f"{a.noun(False)} is {relation(a, b)} {b.noun(False)}",
        ]
        if len(shapes) == 3:
            c = shapes[2]
            pool.append(f"{a.noun(False)} {relation(a, b)} {b.noun(False)} and {c.noun()} {c.place()}")
    rng.shuffle(pool)
    return pool[:n]


def random_scene(rng: random.Random) -> list[Shape]:
    count = rng.choices((1, 2, 3), weights=(3, 4, 3))[0]
    cells = rng.sample([(r, c) for r in range(3) for c in range(3)], count)
    cells.sort(key=lambda rc: (rc[1], rc[0]))  # left to right: captions name shapes in reading order
    return [
        Shape(rng.choice(KINDS), rng.choice(list(COLOURS)), rng.choice(list(SIZES)), row, col)
        for row, col in cells
    ]


def draw(shapes: list[Shape], rng: random.Random):
    from PIL import Image, ImageDraw

    background = tuple(rng.randint(185, 255) for _ in range(3))
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    pen = ImageDraw.Draw(image)
    cell = IMAGE_SIZE / 3
    for s in shapes:
        half = SIZES[s.size] + rng.randint(-1, 1)
        cx = int((s.col + 0.5) * cell) + rng.randint(-2, 2)
        cy = int((s.row + 0.5) * cell) + rng.randint(-2, 2)
        box = (cx - half, cy - half, cx + half, cy + half)
        colour = tuple(min(255, max(0, v + rng.randint(-15, 15))) for v in COLOURS[s.colour])
        if s.kind == "circle":
            pen.ellipse(box, fill=colour)
        elif s.kind == "square":
            pen.rectangle(box, fill=colour)
        elif s.kind == "triangle":
            pen.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=colour)
        else:  # diamond
            pen.polygon([(cx, cy - half), (cx + half, cy), (cx, cy + half), (cx - half, cy)], fill=colour)
    return image


def generate(root: Path, seed: int, sizes: dict[str, int]) -> None:
    """Write images/ and dataset_shapes.json under `root` (atomically: built aside, then renamed)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=root.parent))
    try:
        (staging / "images").mkdir()
        rng = random.Random(seed)
        entries, sentid, imgid = [], 0, 0
        for split in ("train", "val", "test"):
            for _ in range(sizes[split]):
                shapes = random_scene(rng)
                filename = f"shapes_{imgid:06d}.png"
                draw(shapes, rng).save(staging / "images" / filename)
                sentences = []
                for raw in captions_for(shapes, rng):
                    sentences.append({"raw": raw, "tokens": raw.split(), "imgid": imgid, "sentid": sentid})
                    sentid += 1
                entries.append({
                    "filepath": "images", "filename": filename, "imgid": imgid, "split": split,
                    "sentences": sentences, "sentids": [s["sentid"] for s in sentences],
                })
                imgid += 1
        payload = {"dataset": "shapes", "version": VERSION, "seed": seed, "images": entries}
        (staging / "dataset_shapes.json").write_text(json.dumps(payload))
        try:
            os.rename(staging, root)
        except OSError:
            if not (root / "dataset_shapes.json").is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE", ".cache")).expanduser()


class ShapesTask(KarpathyTask):
    """Procedural coloured-shapes captioning, offline and deterministic; lengths ~5-20 words."""

    name = "shapes"

    def __init__(self, seed: int = 0, train: int = 2000, val: int = 200, test: int = 300,
                 root: str | Path | None = None, max_images: dict[str, int] | None = None):
        self.seed = seed
        self.sizes = {"train": int(train), "val": int(val), "test": int(test)}
        base = Path(root) if root else cache_dir() / "shapes"
        self.root = base / f"v{VERSION}-seed{seed}-{train}-{val}-{test}"
        super().__init__(self.root / "dataset_shapes.json", self.root, max_images=max_images)

    def ensure_files(self) -> None:
        if not self.split_file.is_file():
            generate(self.root, self.seed, self.sizes)

    def word_classes(self) -> dict[str, str]:
        """Word -> role, for the errprop phase's wrong words: a colour for a colour, a shape for a shape."""
        return {**{c: "colour" for c in COLOURS}, **{k: "shape" for k in KINDS}}

    def info(self) -> TaskInfo:
        return TaskInfo(
            name="shapes",
            version=VERSION,
            description=self.__doc__.splitlines()[0],
            licence="MIT (generated by this project)",
            source=f"generated from seed {self.seed} into {self.root}",
            sizes=dict(self.sizes),
        )
