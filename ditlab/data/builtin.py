"""Built-in datasets that need no download: `digits` and `shapes`.

Both are generated on the fly from a fixed seed, so anyone gets the same tensors:
  * digits: the ten digits rendered from the fonts that ship with matplotlib, with random
    rotation, slant, scale, shift, elastic wobble and stroke width -- white on black, like MNIST.
  * shapes: ten coloured shapes (circle, square, star, ...) on a dark background, RGB.
Recipe: draw every template once at high resolution (R x R), then make N samples with one batched
random affine warp (`F.affine_grid` + `F.grid_sample`) and an antialiased downsample to S x S.
`ditlab.data.load_dataset` caches the result on disk.
"""
import hashlib
import math
import os
from functools import lru_cache

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

DIGIT_CLASSES = [str(d) for d in range(10)]
SHAPE_CLASSES = ["circle", "ring", "square", "triangle", "star",
                 "cross", "heart", "crescent", "semicircle", "arrow"]
DEFAULT_SIZES = {"train": 20000, "test": 2000}
DEFAULT_IMAGE_SIZE = 32  # patch sizes 2, 4 and 8 all divide it
VERSION = 1  # bump when the recipe changes (invalidates caches)
_CHUNK = 256  # samples per RNG chunk, always made whole: the first k samples do not depend on n
_FONT_PREFIXES = ("DejaVu", "STIXGeneral", "cmr10", "cmb10", "cmss10", "cmti10", "cmtt10")


def font_files():
    """The text fonts shipped inside matplotlib's own data dir (sorted paths)."""
    font_dir = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    paths = font_manager.findSystemFonts(fontpaths=[font_dir], fontext="ttf")
    return sorted(p for p in paths if os.path.basename(p).startswith(_FONT_PREFIXES))


def _fit(mask, res, height):
    """Crop a glyph mask to its bounding box, scale it to `height` px tall, centre it in res x res."""
    ys, xs = np.nonzero(mask > 32)
    crop = Image.fromarray(mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    w, h = crop.size
    scale = height / h
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if new_w > res - 2:  # very wide glyph: fit the width instead
        new_w, new_h = res - 2, max(1, round(h * (res - 2) / w))
    crop = crop.resize((new_w, new_h), Image.LANCZOS)
    out = Image.new("L", (res, res), 0)
    out.paste(crop, ((res - new_w) // 2, (res - new_h) // 2))
    return np.asarray(out, dtype=np.float32) / 255.0


@lru_cache(maxsize=4)
def digit_glyphs(res=64):
    """Digit templates: ((G, 1, res, res) float in [0, 1], (G,) digit labels, (G,) stroke widths in px)."""
    glyphs, labels = [], []
    for path in font_files():
        font = ImageFont.truetype(path, res)
        for d in range(10):
            im = Image.new("L", (2 * res, 2 * res), 0)
            ImageDraw.Draw(im).text((res, res), str(d), fill=255, font=font, anchor="mm")
            mask = np.asarray(im)
            if mask.max() < 128:  # font without digit glyphs (e.g. DejaVu "Display")
                continue
            glyphs.append(_fit(mask, res, round(0.68 * res)))
            labels.append(d)
    g = torch.from_numpy(np.stack(glyphs))[:, None]  # (G, 1, R, R)
    # mean stroke width: a pixel's depth = 3x3 erosions it survives; a stroke of width w has mean depth ~ w / 4
    cur = (g > 0.5).float()
    area, depth = cur.flatten(1).sum(1), torch.zeros(len(g))
    while cur.sum() > 0:
        depth += cur.flatten(1).sum(1)
        cur = -F.max_pool2d(-cur, 3, 1, 1)
    return g, torch.tensor(labels), 4 * depth / area


@lru_cache(maxsize=4)
def shape_templates(res=64):
    """Shape masks (10, 1, res, res) in [0, 1], in `SHAPE_CLASSES` order, drawn 4x larger then downsampled."""
    big, c = 4 * res, 2 * res  # canvas size and centre
    r = 0.4 * big  # radius of a shape of scale 1

    def poly(pts):
        return [(c + r * x, c - r * y) for x, y in pts]

    def ngon(n, radius=1.0, phase=math.pi / 2):
        return [(radius * math.cos(phase + 2 * math.pi * k / n), radius * math.sin(phase + 2 * math.pi * k / n))
                for k in range(n)]

    masks = []
    for name in SHAPE_CLASSES:
        im = Image.new("L", (big, big), 0)
        dr = ImageDraw.Draw(im)
        box = [c - r, c - r, c + r, c + r]
        if name == "circle":
            dr.ellipse(box, fill=255)
        elif name == "ring":
            dr.ellipse(box, fill=255)
            dr.ellipse([c - 0.55 * r, c - 0.55 * r, c + 0.55 * r, c + 0.55 * r], fill=0)
        elif name == "square":
            dr.polygon(poly(ngon(4, 1.15, math.pi / 4)), fill=255)
        elif name == "triangle":
            dr.polygon(poly([(x, y - 0.2) for x, y in ngon(3, 1.2)]), fill=255)
        elif name == "star":
            outer, inner = ngon(5, 1.05), ngon(5, 0.42, math.pi / 2 + math.pi / 5)
            dr.polygon(poly([p for pair in zip(outer, inner) for p in pair]), fill=255)
        elif name == "cross":
            a = 0.32
            dr.polygon(poly([(a, 1), (a, a), (1, a), (1, -a), (a, -a), (a, -1), (-a, -1), (-a, -a),
                             (-1, -a), (-1, a), (-a, a), (-a, 1)]), fill=255)
        elif name == "heart":  # the classic parametric heart curve
            t = np.linspace(0, 2 * math.pi, 200)
            x, y = 16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
            dr.polygon(poly(list(zip(x / 16, (y + 2.5) / 15))), fill=255)
        elif name == "crescent":
            dr.ellipse(box, fill=255)
            dr.ellipse([c - 0.55 * r, c - 1.0 * r, c + 1.25 * r, c + 0.8 * r], fill=0)
        elif name == "semicircle":
            dr.pieslice([c - r, c - 0.6 * r, c + r, c + 1.4 * r], 180, 360, fill=255)
        elif name == "arrow":
            dr.polygon(poly([(-1, 0.22), (0.2, 0.22), (0.2, 0.6), (1, 0), (0.2, -0.6), (0.2, -0.22),
                             (-1, -0.22)]), fill=255)
        masks.append(np.asarray(im.resize((res, res), Image.BOX), dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(masks))[:, None]


def _generator(name, split, seed, chunk):
    key = f"{name}/{split}/{seed}/{chunk}/v{VERSION}".encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))


def _uniform(g, n, lo, hi):
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _warp(src, angle, scale_x, scale_y, shear, shift, out_res):
    """Place each template: output = shift + Rot(angle) @ Shear(shear) @ diag(scale) @ template.

    src (N, C, R, R); angle, scale_*, shear (N,); shift (N, 2) in [-1, 1] units -> (N, C, out_res, out_res).
    """
    n = src.shape[0]
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (N, 2, 2)
    shr = torch.eye(2).repeat(n, 1, 1)
    shr[:, 0, 1] = shear
    fwd = rot @ shr @ torch.diag_embed(torch.stack([scale_x, scale_y], -1))
    inv = torch.linalg.inv(fwd)  # affine_grid maps output coords -> input coords
    theta = torch.cat([inv, -(inv @ shift[:, :, None])], dim=2)  # (N, 2, 3)
    return F.affine_grid(theta, [n, src.shape[1], out_res, out_res], align_corners=False)


def _to_uint8(x, image_size):
    """(N, C, R, R) float in [0, 1] -> (N, C, S, S) uint8, antialiased downsample."""
    if x.shape[-1] != image_size:  # antialiased when downsampling
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _check(n, image_size):
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")


def _canvas(image_size):
    """Template resolution: >= 2x the output below 64 px; larger outputs are upsampled from 128 px."""
    return 64 if image_size <= 32 else 128


def _digits_chunk(g, n, image_size):
    res = _canvas(image_size)
    glyphs, glyph_labels, widths = digit_glyphs(res)
    pick = torch.randint(len(glyphs), (n,), generator=g)
    # stroke width: target 8-16 % of the canvas, reached by k 3x3 dilations (k = -1: one erosion)
    target = _uniform(g, n, 0.08, 0.16) * res
    k = ((target - widths[pick]) / 2).round().clamp(-1, 6).long()
    src = glyphs[pick]
    for step in range(1, 7):
        grow = k >= step
        if grow.any():
            src[grow] = F.max_pool2d(src[grow], 3, 1, 1)
        shrink = k <= -step
        if shrink.any():
            src[shrink] = -F.max_pool2d(-src[shrink], 3, 1, 1)
    scale = _uniform(g, n, 0.85, 1.1)
    grid = _warp(src, angle=_uniform(g, n, -15, 15) * math.pi / 180,
                        scale_x=scale * _uniform(g, n, 0.8, 1.15), scale_y=scale,
                        shear=_uniform(g, n, -0.3, 0.3), shift=_uniform(g, 2 * n, -0.08, 0.08).view(n, 2),
                        out_res=res)
    # elastic wobble: a smooth random displacement field (4x4 control points, bicubic upsampled)
    wobble = 0.035 * torch.randn(n, 2, 4, 4, generator=g)
    grid = grid + F.interpolate(wobble, size=(res, res), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    x = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _to_uint8(x, image_size), glyph_labels[pick]


def _hsv_to_rgb(h, s, v):
    """h, s, v (N,) in [0, 1] -> (N, 3) rgb in [0, 1]."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + h[:, None] * 6) % 6
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def _shapes_chunk(g, n, image_size):
    res = _canvas(image_size)
    masks = shape_templates(res)
    labels = torch.randint(len(masks), (n,), generator=g)
    scale = _uniform(g, n, 0.5, 0.9)
    room = (1 - scale * 0.95).clamp(min=0)[:, None]  # keep the shape inside the frame
    grid = _warp(masks[labels], angle=_uniform(g, n, -math.pi, math.pi),
                    scale_x=scale * _uniform(g, n, 0.85, 1.15), scale_y=scale, shear=_uniform(g, n, -0.15, 0.15),
                    shift=room * _uniform(g, 2 * n, -1, 1).view(n, 2), out_res=res)
    m = F.grid_sample(masks[labels], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    fg = _hsv_to_rgb(torch.rand(n, generator=g), _uniform(g, n, 0.55, 1), _uniform(g, n, 0.75, 1))
    bg = _hsv_to_rgb(torch.rand(n, generator=g), _uniform(g, n, 0, 0.6), _uniform(g, n, 0.05, 0.3))
    # background: a gentle linear gradient
    ramp = torch.linspace(-1, 1, res)
    direction = _uniform(g, n, -math.pi, math.pi)[:, None, None]
    grad = torch.cos(direction) * ramp[None, None, :] + torch.sin(direction) * ramp[None, :, None]  # (N, R, R)
    bg_img = bg[:, :, None, None] * (1 + 0.25 * grad[:, None])  # (N, 3, R, R)
    x = bg_img * (1 - m) + fg[:, :, None, None] * m
    return _to_uint8(x, image_size), labels


def _make(name, chunk_fn, n, seed, split, image_size):
    _check(n, image_size)
    images, labels = [], []
    for c in range(math.ceil(n / _CHUNK)):
        x, y = chunk_fn(_generator(name, split, seed, c), _CHUNK, image_size)
        keep = min(_CHUNK, n - c * _CHUNK)
        images.append(x[:keep])
        labels.append(y[:keep])
    if not images:
        channels = 1 if name == "digits" else 3
        return torch.zeros(0, channels, image_size, image_size, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    return torch.cat(images), torch.cat(labels).long()


def make_digits(n=20000, seed=0, split="train", image_size=DEFAULT_IMAGE_SIZE):
    """n digit images -> (uint8 (n, 1, S, S), int64 (n,) labels 0-9). Deterministic in (seed, split)."""
    return _make("digits", _digits_chunk, n, seed, split, image_size)


def make_shapes(n=20000, seed=0, split="train", image_size=DEFAULT_IMAGE_SIZE):
    """n shape images -> (uint8 (n, 3, S, S), int64 (n,) labels indexing SHAPE_CLASSES)."""
    return _make("shapes", _shapes_chunk, n, seed, split, image_size)


BUILTINS = {"digits": (make_digits, DIGIT_CLASSES), "shapes": (make_shapes, SHAPE_CLASSES)}


def recipe_id(name):
    """A string that changes when the generator for `name` would produce different data."""
    fonts = ",".join(os.path.basename(p) for p in font_files()) if name == "digits" else ""
    return f"{name}-v{VERSION}-{hashlib.sha1(fonts.encode()).hexdigest()[:8]}"
