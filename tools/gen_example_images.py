#!/usr/bin/python3
"""Generates the sample images in examples/images/: procedural "paintings"
(no third-party artwork, so no licence question), plus one grayscale PNG, one
RGBA PNG and one non-square JPEG, so the example pipeline exercises the
decoder's conversions.  Deterministic (fixed seeds).

Usage: /usr/bin/python3 tools/gen_example_images.py [OUTDIR]
Made with Debian python3-pil (see the printed version)."""
import math
import os
import random
import sys

import PIL
from PIL import Image, ImageDraw, ImageFilter

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "examples", "images")
os.makedirs(out, exist_ok=True)


def landscape(w, h, seed):
    """Sky gradient, layered hills, a sun: a naive landscape painting."""
    rnd = random.Random(seed)
    img = Image.new("RGB", (w, h))
    px = img.load()
    top = (rnd.randint(40, 120), rnd.randint(80, 160), rnd.randint(160, 255))
    bot = (rnd.randint(200, 255), rnd.randint(150, 220), rnd.randint(100, 180))
    for y in range(h):
        t = y / (h - 1)
        c = tuple(int(top[i] * (1 - t) + bot[i] * t) for i in range(3))
        for x in range(w):
            px[x, y] = c
    d = ImageDraw.Draw(img)
    sx, sy, r = rnd.randint(w // 5, 4 * w // 5), rnd.randint(h // 8, h // 3), h // 10
    d.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(255, 230, 150))
    for layer in range(4):
        base = h * (0.45 + 0.13 * layer)
        amp, freq, ph = h * 0.08, rnd.uniform(1.5, 4.0), rnd.uniform(0, 6.28)
        g = 60 + 40 * layer
        col = (rnd.randint(20, 70), g + rnd.randint(-20, 20), rnd.randint(20, 80))
        pts = [(x, base + amp * math.sin(ph + freq * x / w * 6.28)) for x in range(0, w + 8, 8)]
        d.polygon(pts + [(w, h), (0, h)], fill=col)
    return img.filter(ImageFilter.SMOOTH_MORE)


def abstract(w, h, seed):
    """Overlapping translucent rectangles and circles (a colour-field study)."""
    rnd = random.Random(seed)
    img = Image.new("RGB", (w, h), (rnd.randint(200, 255),) * 3)
    for _ in range(40):
        layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        d = ImageDraw.Draw(layer)
        x0, y0 = rnd.randint(-w // 4, w), rnd.randint(-h // 4, h)
        x1, y1 = x0 + rnd.randint(w // 10, w // 2), y0 + rnd.randint(h // 10, h // 2)
        col = (rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(80, 200))
        (d.rectangle if rnd.random() < 0.5 else d.ellipse)([x0, y0, x1, y1], fill=col)
        img = Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")
    return img


def portrait(w, h, seed):
    """An oval 'face' on a dark background with brush-like noise."""
    rnd = random.Random(seed)
    img = Image.new("RGB", (w, h), (30, 25, 20))
    d = ImageDraw.Draw(img)
    d.ellipse([w * 0.25, h * 0.15, w * 0.75, h * 0.75], fill=(220, 180, 150))
    d.rectangle([w * 0.15, h * 0.75, w * 0.85, h], fill=(90, 20, 30))
    for e in (0.4, 0.6):
        d.ellipse([w * e - 8, h * 0.38, w * e + 8, h * 0.44], fill=(40, 30, 30))
    d.arc([w * 0.4, h * 0.5, w * 0.6, h * 0.62], 20, 160, fill=(120, 40, 40), width=3)
    px = img.load()
    for _ in range(w * h // 6):
        x, y = rnd.randrange(w), rnd.randrange(h)
        c = px[x, y]
        n = rnd.randint(-18, 18)
        px[x, y] = tuple(max(0, min(255, v + n)) for v in c)
    return img.filter(ImageFilter.SMOOTH)


landscape(480, 320, 1).save(os.path.join(out, "landscape.jpg"), quality=88)
abstract(400, 400, 2).save(os.path.join(out, "colour_field.png"), optimize=True)
portrait(300, 420, 3).save(os.path.join(out, "portrait.jpg"), quality=88)
# grayscale (mode L) PNG: the decoder must replicate it to three channels
landscape(320, 240, 4).convert("L").save(os.path.join(out, "etching_gray.png"), optimize=True)
# RGBA PNG with a transparent border: alpha is dropped without compositing
rgba = abstract(256, 256, 5).convert("RGBA")
alpha = Image.new("L", rgba.size, 0)
ImageDraw.Draw(alpha).ellipse([16, 16, 240, 240], fill=255)
rgba.putalpha(alpha)
rgba.save(os.path.join(out, "cutout_rgba.png"), optimize=True)
# a wide, small JPEG (non-square, upscaled by preprocessing)
abstract(200, 90, 6).save(os.path.join(out, "banner.jpg"), quality=90)
print("python3-pil", PIL.__version__, "->", os.path.abspath(out))
