"""Glyph tasks rendered from real fonts in Debian font packages (notMNIST-style).

Each glyph is drawn white on black at 64 px, cropped to its ink, optionally rotated, scaled so
its longer side is 18-24 px and placed at the centre of a 28x28 grey image, shifted by up to
2 px. The jitter is drawn from a generator seeded by (task, font file, character, variant), so
a task renders to the same bytes on every machine with the same font files.

Fonts are grouped by design (a Helvetica clone from two vendors is one group), and whole groups
are held out: the test and validation splits contain only fonts of designs never seen in
training. The font list is explicit (the table `glyph_fonts.json`, package data) so a task's
size never changes silently; a missing file raises `TaskError` naming its package
(`Family.package_of`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from mu2net.errors import TaskError
from mu2net.tasks.locations import find_share_file

IMAGE_SIZE = 28
RENDER_SIZE = 64
STYLES = ("regular", "bold", "italic", "bold_italic")

FONTS_FILE = "glyph_fonts.json"  # the font table, package data beside this module
_DEJAVU_CORE = "fonts-dejavu-core"
# fonts-dejavu-core ships only the upright Sans, Serif and Mono faces; the rest are in -extra.
DEJAVU_CORE_FILES = frozenset({"DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf",
                               "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf",
                               "DejaVuSansMono-Bold.ttf"})


@dataclass(frozen=True)
class Family:
    """One typeface: its design group, package, folder, the four style files (regular, bold,
    italic, bold italic; empty when the family lacks a full set) and any further files."""

    name: str
    group: str
    package: str
    folder: str
    styles: tuple[str, ...]
    extra: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        return self.styles + self.extra

    def package_of(self, file: str) -> str:
        """The Debian package that installs `file`."""
        if self.package == _DEJAVU_CORE and file not in DEJAVU_CORE_FILES:
            return "fonts-dejavu-extra"
        return self.package


def _load_families() -> tuple[Family, ...]:
    """The font table of `FONTS_FILE`: one entry per family, its folder by its package."""
    doc = json.loads(resources.files("mu2net.tasks").joinpath(FONTS_FILE).read_text("utf-8"))
    folders = doc["folders"]
    return tuple(Family(f["name"], f["group"], f["package"], folders[f["package"]],
                        tuple(f["styles"]), tuple(f.get("extra", ())))
                 for f in doc["families"])


FAMILIES: tuple[Family, ...] = _load_families()

# Whole design groups held out. Test: four designs unlike any training design in some way
# (Palatino, Bookman, a monospace sans, Noto Serif); validation: Century Schoolbook, Avant Garde
# and Zapf Chancery. Chancery (one file, no style set) lifts the character tasks' validation from
# 480 to 540 images (>= 500, prepare.MIN_VALIDATION_EXAMPLES) at a cost of 60 training images;
# glyph_styles stays at 496, since any styled group would add 496 and exceed 25% of its pool.
TEST_GROUPS = ("palatino", "bookman", "dejavu_mono", "noto_serif")
VALIDATION_GROUPS = ("century", "avantgarde", "chancery")


def split_of_group(group: str) -> str:
    if group in TEST_GROUPS:
        return "test"
    if group in VALIDATION_GROUPS:
        return "validation"
    return "train"


@dataclass(frozen=True)
class Jitter:
    """Ranges of the per-image jitter: longer side in px, rotation in degrees, shift in px."""

    box: tuple[float, float] = (18.0, 24.0)
    rotation: float = 10.0
    shift: float = 2.0


class _Renderer:
    """Renders glyphs of one font file at RENDER_SIZE, cropped to ink; detects missing glyphs
    (drawn as the font's .notdef box) by comparing with a private-use code point."""

    def __init__(self, path: str) -> None:
        from PIL import ImageFont

        try:
            self.font = ImageFont.truetype(path, RENDER_SIZE)
        except OSError as exc:
            raise TaskError(f"cannot load font {path!r}: {exc}") from exc
        self.path = path
        self._notdef = self._draw("\U000f0000")

    def _draw(self, char: str):
        from PIL import Image, ImageDraw

        canvas = Image.new("L", (RENDER_SIZE * 2, RENDER_SIZE * 2), 0)
        ImageDraw.Draw(canvas).text((RENDER_SIZE, RENDER_SIZE), char, fill=255, font=self.font,
                                    anchor="mm")
        box = canvas.getbbox()
        return canvas.crop(box) if box else None

    def glyph(self, char: str):
        img = self._draw(char)
        if img is None or (self._notdef is not None and img.size == self._notdef.size
                           and img.tobytes() == self._notdef.tobytes()):
            raise TaskError(f"font {self.path!r} has no glyph for {char!r}")
        return img


def place(glyph, rng: np.random.Generator, jitter: Jitter) -> np.ndarray:
    """One IMAGE_SIZE x IMAGE_SIZE uint8 image of a cropped glyph with random jitter."""
    from PIL import Image

    angle = rng.uniform(-jitter.rotation, jitter.rotation) if jitter.rotation else 0.0
    box = rng.uniform(*jitter.box)
    dx, dy = rng.uniform(-jitter.shift, jitter.shift, size=2)
    if angle:
        glyph = glyph.rotate(angle, resample=Image.BILINEAR, expand=True, fillcolor=0)
    scale = box / max(glyph.size)
    w = max(1, min(IMAGE_SIZE, round(glyph.size[0] * scale)))
    h = max(1, min(IMAGE_SIZE, round(glyph.size[1] * scale)))
    small = glyph.resize((w, h), Image.LANCZOS)
    x = int(np.clip(round((IMAGE_SIZE - w) / 2 + dx), 0, IMAGE_SIZE - w))
    y = int(np.clip(round((IMAGE_SIZE - h) / 2 + dy), 0, IMAGE_SIZE - h))
    canvas = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    canvas.paste(small, (x, y))
    return np.asarray(canvas, np.uint8)


def _seed(*parts: str | int) -> list[int]:
    return [zlib.crc32(str(p).encode()) for p in parts]


def render(task: str, items: Sequence[tuple[Family, str, int]], chars: Sequence[str],
           variants: int, jitter: Jitter) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Render `variants` images of every char for every (family, file, label) item.

    `label` < 0 means "label by character" (the char's index in `chars`); otherwise every
    glyph of that file gets that label (e.g. its style). The split of each item is its family's
    held-out split. Returns {split: (images [N, 28, 28, 1], labels [N])} in a fixed order.
    """
    out: dict[str, tuple[list, list]] = {"train": ([], []), "validation": ([], []),
                                         "test": ([], [])}
    for family, file, label in items:
        path = str(find_share_file(f"{family.folder}/{file}", family.package_of(file)))
        renderer = _Renderer(path)
        images, labels = out[split_of_group(family.group)]
        for c, char in enumerate(chars):
            glyph = renderer.glyph(char)
            for v in range(variants):
                rng = np.random.default_rng(_seed(task, file, char, v))
                images.append(place(glyph, rng, jitter))
                labels.append(c if label < 0 else label)
    empty = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return {split: ((np.stack(imgs) if imgs else empty)[..., None], np.asarray(lbls, np.int64))
            for split, (imgs, lbls) in out.items()}


def all_font_items() -> list[tuple[Family, str, int]]:
    """Every font file of every family, labelled by character."""
    return [(family, file, -1) for family in FAMILIES for file in family.files]


def style_items() -> list[tuple[Family, str, int]]:
    """The four style files of every family that has all four, labelled by style."""
    return [(family, file, s) for family in FAMILIES if family.styles
            for s, file in enumerate(family.styles)]
