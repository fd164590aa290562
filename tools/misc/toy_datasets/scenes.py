"""What every toy dataset shares: scenes of 1-3 non-overlapping shapes on a
textured, noisy background. A shape's class is its form (circle, square,
triangle, cross), and every form has a hue of its own, so the task is
learnable but not a lookup: the background is noisy, sizes, aspect ratios
and shades vary, and JPEG blurs the edges."""
import colorsys
import os
import os.path as osp
import shutil
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

# One form per class, each with a hue of its own (degrees).
FORM_HUES = {'circle': 0, 'square': 120, 'triangle': 230, 'cross': 55}
FORMS = tuple(FORM_HUES)  # circle, square, triangle, cross
MARKER = '.mmadapter_toy_dataset'
MIN_BOX = 36  # mmdet drops boxes under 32 px (after its VOC minus-one)

ImgSize = Union[int, Tuple[int, int], Sequence[int], str]


@dataclass
class Shape:
    form: str
    polygon: List[Tuple[float, float]]
    mask: np.ndarray  # bool, H x W

    @property
    def box(self) -> Tuple[int, int, int, int]:
        """Tight box of the drawn pixels: x0, y0, x1, y1 (x1, y1 exclusive)."""
        ys, xs = np.nonzero(self.mask)
        return (int(xs.min()), int(ys.min()), int(xs.max()) + 1,
                int(ys.max()) + 1)


def parse_img_size(size: ImgSize) -> Tuple[int, int]:
    """``128`` / ``'128'`` -> (128, 128); ``'192x128'`` or (192, 128) ->
    width 192, height 128."""
    text = size
    try:
        if isinstance(size, str):
            size = [int(p) for p in size.lower().split('x')]
        if isinstance(size, int):
            size = [size]
        size = [int(s) for s in size]
        width, height = size * 2 if len(size) == 1 else size
    except ValueError:
        raise ValueError(f'Image size {text!r} is not understood: give one '
                         "integer (square) or WIDTHxHEIGHT, e.g. '192x128'."
                         ) from None
    if min(width, height) < 2 * MIN_BOX:
        raise ValueError(
            f'Image size {width}x{height} is too small: shapes are at least '
            f'{MIN_BOX} px, so both sides must be >= {2 * MIN_BOX}.')
    return width, height


def textured_background(rng: np.random.Generator, width: int,
                        height: int) -> np.ndarray:
    """Low-saturation colour field: a random tint, smooth blotches and a
    few soft stripes."""
    tint = rng.uniform(70, 170) + rng.uniform(-20, 20, size=3)
    grid = (height // 16 + 2, width // 16 + 2)
    coarse = (rng.normal(0, 25, size=(*grid, 1)) +
              rng.normal(0, 12, size=(*grid, 3)))
    blotches = np.asarray(
        Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8))
        .resize((width, height), Image.BILINEAR), dtype=np.float32) - 128
    period, phase = rng.uniform(8, 30), rng.uniform(0, 2 * np.pi)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[:height, :width]
    stripes = 12 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) /
                          period * 2 * np.pi + phase)
    return tint + blotches + stripes[..., None]


def form_polygon(form: str, x0: float, y0: float, w: float, h: float,
                 rng: np.random.Generator) -> List[Tuple[float, float]]:
    """Vertices of ``form`` filling the box (x0, y0, w, h)."""
    if form == 'circle':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        return list(zip(x0 + w / 2 + (w - 1) / 2 * np.cos(t),
                        y0 + h / 2 + (h - 1) / 2 * np.sin(t)))
    if form == 'square':
        return [(x0, y0), (x0 + w - 1, y0), (x0 + w - 1, y0 + h - 1),
                (x0, y0 + h - 1)]
    if form == 'triangle':
        apex = x0 + rng.uniform(0.25, 0.75) * (w - 1)
        if rng.random() < 0.5:  # pointing up
            return [(apex, y0), (x0 + w - 1, y0 + h - 1), (x0, y0 + h - 1)]
        return [(x0, y0), (x0 + w - 1, y0), (apex, y0 + h - 1)]
    if form == 'cross':
        ax, ay = w / 3, h / 3  # arm thickness
        xs = (x0, x0 + ax, x0 + w - 1 - ax, x0 + w - 1)
        ys = (y0, y0 + ay, y0 + h - 1 - ay, y0 + h - 1)
        return [(xs[1], ys[0]), (xs[2], ys[0]), (xs[2], ys[1]), (xs[3], ys[1]),
                (xs[3], ys[2]), (xs[2], ys[2]), (xs[2], ys[3]), (xs[1], ys[3]),
                (xs[1], ys[2]), (xs[0], ys[2]), (xs[0], ys[1]), (xs[1], ys[1])]
    raise ValueError(f'Unknown form {form!r}; known: {", ".join(FORM_HUES)}')


def form_colour(form: str, rng: np.random.Generator) -> np.ndarray:
    hue = (FORM_HUES[form] + rng.uniform(-10, 10)) % 360 / 360
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1.0),
                              rng.uniform(0.65, 1.0))
    return np.array(rgb) * 255


def place_boxes(rng: np.random.Generator, width: int, height: int,
                count: int) -> List[Tuple[int, int, int, int]]:
    """Up to ``count`` boxes (x0, y0, w, h), at least MIN_BOX wide and high,
    that do not touch each other."""
    max_side = max(MIN_BOX, int(0.55 * min(width, height)))
    boxes: List[Tuple[int, int, int, int]] = []
    for _ in range(50 * count):
        if len(boxes) == count:
            break
        side = rng.integers(MIN_BOX, max_side + 1)
        w = int(np.clip(side * rng.uniform(0.8, 1.25), MIN_BOX, width - 2))
        h = int(np.clip(side * rng.uniform(0.8, 1.25), MIN_BOX, height - 2))
        x0 = int(rng.integers(1, width - w))
        y0 = int(rng.integers(1, height - h))
        gap = 4
        if all(x0 >= bx + bw + gap or bx >= x0 + w + gap or y0 >= by + bh + gap
               or by >= y0 + h + gap for bx, by, bw, bh in boxes):
            boxes.append((x0, y0, w, h))
    return boxes


def draw_scene(rng: np.random.Generator, width: int, height: int,
               forms: Sequence[str],
               count: Optional[int] = None) -> Tuple[Image.Image, List[Shape]]:
    """An RGB image with ``count`` (default: 1-3) shapes of ``forms`` and
    the shapes drawn."""
    canvas = textured_background(rng, width, height)
    shapes = []
    if count is None:
        count = rng.integers(1, 4)
    for x0, y0, w, h in place_boxes(rng, width, height, count):
        form = forms[rng.integers(len(forms))]
        polygon = form_polygon(form, x0, y0, w, h, rng)
        mask_img = Image.new('L', (width, height), 0)
        ImageDraw.Draw(mask_img).polygon(polygon, fill=1)
        mask = np.asarray(mask_img, dtype=bool)
        canvas[mask] = form_colour(form, rng)
        shapes.append(Shape(form, polygon, mask))
    canvas += rng.normal(0, 10, size=canvas.shape)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    return image, shapes


def prepare_root(root: str) -> None:
    """Create ``root`` for a generated dataset, replacing an earlier
    generated one; never delete a directory this script did not write."""
    if osp.isdir(root) and os.listdir(root):
        if not osp.isfile(osp.join(root, MARKER)):
            raise FileExistsError(
                f'{root} exists and was not written by make_toy_data.py; '
                'refusing to overwrite it. Choose another --out-dir.')
        shutil.rmtree(root)
    os.makedirs(root, exist_ok=True)
    with open(osp.join(root, MARKER), 'w') as f:
        f.write('Generated by tools/misc/make_toy_data.py; safe to delete.\n')


def split_rng(seed: int, dataset: str, split: str) -> np.random.Generator:
    """An independent, reproducible stream per dataset and split."""
    key = [seed] + [ord(c) for c in f'{dataset}/{split}']
    return np.random.default_rng(key)


def scenes(rng, count, size, forms):
    width, height = parse_img_size(size)
    for _ in range(count):
        yield draw_scene(rng, width, height, forms)
