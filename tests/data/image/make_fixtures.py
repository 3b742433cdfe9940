#!/usr/bin/python3
"""Generates the image fixtures of tests/test_image_*.c with Debian's python3-pil.

Run from anywhere:  /usr/bin/python3 tests/data/image/make_fixtures.py
Writes into this script's folder:

resize_cases.txt + resize_<name>.png
    Source images are procedural (pattern() below, replicated exactly in
    tests/image/test_image_resize.c, so no large source is committed).  Each is
    resized with Image.resize((S, S), Image.BICUBIC) -- what torchvision 0.13's
    Resize((S, S)) does on a PIL image -- and the result stored losslessly.
    Line format: name src_w src_h S pattern seed source_byte_sum

decode_cases.txt + dec_* sources + dec_*.expect.png
    Small files in many layouts, and the RGB that
    Image.open(path).convert('RGB') gives for each (the reference code path).
    Line format: source expect max_abs_diff   (0 = must be exact)

pipe_cases.txt + pipe_*.png
    End-to-end references for the decode -> preprocess stages:
    Image.open(src).convert('RGB').resize((S, S), Image.BICUBIC).
    Line format: source expect S

resize_sweep.txt
    A wider sweep kept tiny: 400 random (w, h, S_w, S_h, pattern, seed) with
    sides 1..400 (Python's random, seed 2024), non-square targets included,
    each with the zlib CRC-32 of Pillow's resized bytes (RGB, row-major).
    Line format: w h out_w out_h pattern seed crc32_hex

dec_smoke.avif
    Written by the libvips CLI (`vips copy dec_rgb_jpg.expect.png dec_smoke.avif`)
    because Pillow 9.4 has no AVIF support: a smoke test only (decodes, right
    size, close to the source), not a parity check.

versions.txt: the Python, Pillow and numpy versions used.
"""
import os
import random
import struct
import subprocess
import sys
import zlib

import numpy as np
import PIL
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
M32 = 0xFFFFFFFF


def pattern(w, h, pat, seed):
    """uint8 [h, w, 3] image; integer formula mirrored in C (wrapping uint32)."""
    y, x, c = np.meshgrid(np.arange(h, dtype=np.uint64), np.arange(w, dtype=np.uint64),
                          np.arange(3, dtype=np.uint64), indexing="ij")
    hs = ((x * 73856093) ^ (y * 19349663) ^ (c * 83492791) ^ np.uint64((seed * 2654435761) & M32)) & M32
    hs = (hs * 2246822519) & M32
    hs ^= hs >> np.uint64(15)
    noise = hs & np.uint64(255)
    wm = max(w - 1, 1)
    hm = max(h - 1, 1)
    smooth = (x * 200 // wm + y * 55 // hm + c * 40 + ((x * y) >> np.uint64(6))) & np.uint64(255)
    if pat == 0:
        v = noise
    elif pat == 1:
        v = smooth
    elif pat == 2:
        v = (smooth * 3 + noise) >> np.uint64(2)
    else:  # hard edges: a checkerboard of 0 / 255 (overshoot -> clamping)
        v = (((x // 7) + (y // 5) + c) & np.uint64(1)) * np.uint64(255)
    return v.astype(np.uint8)


RESIZE_CASES = [
    # name, w, h, S, pattern, seed
    ("photo_down", 640, 480, 224, 2, 1),
    ("big_down", 4000, 3000, 224, 2, 2),
    ("big_noise", 2000, 1500, 96, 0, 3),
    ("identity", 224, 224, 224, 1, 4),
    ("near_up", 127, 129, 128, 0, 5),
    ("up_noise", 50, 40, 160, 0, 6),
    ("up_edges", 37, 29, 160, 3, 7),
    ("down_edges", 900, 700, 128, 3, 8),
    ("col_1xN", 1, 300, 64, 2, 9),
    ("row_Nx1", 300, 1, 64, 0, 10),
    ("one_px", 1, 1, 32, 0, 11),
    ("tiny", 3, 3, 5, 0, 12),
    ("wide", 1000, 50, 64, 2, 13),
    ("tall_mixed", 50, 2000, 96, 0, 14),
    ("odd_down", 333, 777, 96, 0, 15),
    ("same_w", 64, 300, 64, 2, 16),
    ("same_h", 300, 64, 64, 2, 17),
    ("smooth_down", 1024, 768, 224, 1, 18),
]

PIPE_CASES = [("dec_rgb.jpg", 64), ("dec_cmyk.jpg", 64), ("dec_rgba.png", 48),
              ("dec_gray16.png", 64), ("dec_anim.gif", 33)]


def png_raw(path, arr, ctype, depth):
    """Minimal PNG writer for 16-bit layouts Pillow cannot save."""
    h, w = arr.shape[:2]
    dt = ">u2" if depth == 16 else "u1"
    raw = b"".join(b"\x00" + arr[r].astype(dt).tobytes() for r in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & M32)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n"
                + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def decode_sources():
    """Yields (file name, writer(path), tolerance)."""
    W, H = 40, 30
    rgb = pattern(W, H, 2, 100)
    smooth = pattern(W, H, 1, 101)
    noise = pattern(W, H, 0, 102)
    im = Image.fromarray(rgb, "RGB")
    gray = Image.fromarray(rgb[..., 0], "L")
    alpha = Image.fromarray(noise[..., 1], "L")
    rgba = im.copy()
    rgba.putalpha(alpha)
    la = gray.copy()
    la.putalpha(alpha)
    pal = Image.fromarray(smooth, "RGB").quantize(colors=37)
    g16 = (pattern(W, H, 0, 103)[..., :2].astype(np.uint16) * np.array([256, 1], np.uint16)).sum(-1)
    g16 = (g16 // 8).astype(np.uint16)  # many values below 256, many above
    rgb16 = pattern(W, H, 0, 104).astype(np.uint16) * 257 + np.uint16(3)
    cmyk = np.concatenate([smooth, noise[..., :1]], axis=-1)
    yield "dec_gray.png", lambda p: gray.save(p), 0
    yield "dec_bw1.png", lambda p: gray.convert("1").save(p), 0
    yield "dec_la.png", lambda p: la.save(p), 0
    yield "dec_rgba.png", lambda p: rgba.save(p), 0
    yield "dec_pal.png", lambda p: pal.save(p), 0
    yield "dec_pal_trns.png", lambda p: pal.save(p, transparency=3), 0
    yield "dec_gray16.png", lambda p: png_raw(p, g16, 0, 16), 0
    yield "dec_rgb16.png", lambda p: png_raw(p, rgb16, 2, 16), 0
    yield "dec_la16.png", lambda p: png_raw(p, np.stack([g16, g16 * 2], -1), 4, 16), 0
    yield "dec_rgba16.png", lambda p: png_raw(p, np.concatenate([rgb16, g16[..., None]], -1), 6, 16), 0
    yield "dec_rgb.jpg", lambda p: im.save(p, quality=90), 0
    yield "dec_gray.jpg", lambda p: gray.save(p, quality=90), 0
    yield "dec_cmyk.jpg", lambda p: Image.fromarray(cmyk, "CMYK").save(p, quality=95), 0

    def orient(p):
        ex = Image.Exif()
        ex[0x0112] = 6  # rotate 90: Pillow's open() ignores it, so must we
        im.save(p, quality=90, exif=ex.tobytes())
    yield "dec_orient6.jpg", orient, 0

    def gif(p):
        f1 = Image.fromarray(smooth, "RGB").quantize(colors=64)
        f2 = Image.fromarray(noise, "RGB").quantize(colors=64)
        f1.save(p, save_all=True, append_images=[f2], duration=100, loop=0)
    yield "dec_anim.gif", gif, 0

    def gif_trns(p):
        f1 = Image.fromarray(smooth, "RGB").quantize(colors=16)
        f1.save(p, transparency=5)  # palette entry 5 transparent: its colour must survive
    yield "dec_trns.gif", gif_trns, 0
    yield "dec_lossless.webp", lambda p: im.save(p, lossless=True), 0
    yield "dec_lossy.webp", lambda p: im.save(p, quality=80), 0
    yield "dec_rgba.webp", lambda p: rgba.save(p, lossless=True), 0
    yield "dec_rgb.tif", lambda p: im.save(p), 0
    yield "dec_gray_lzw.tif", lambda p: gray.save(p, compression="tiff_lzw"), 0
    yield "dec_cmyk.tif", lambda p: Image.fromarray(cmyk, "CMYK").save(p), 0
    yield "dec_rgb.ppm", lambda p: im.save(p), 0


def main():
    os.chdir(HERE)
    with open("resize_cases.txt", "w") as f:
        f.write("# name src_w src_h S pattern seed source_byte_sum  (see make_fixtures.py)\n")
        for name, w, h, s, pat, seed in RESIZE_CASES:
            arr = pattern(w, h, pat, seed)
            src = Image.fromarray(arr, "RGB")
            out = src.resize((s, s), Image.BICUBIC)
            out.save("resize_%s.png" % name, optimize=True)
            f.write("%s %d %d %d %d %d %d\n" % (name, w, h, s, pat, seed, int(arr.sum(dtype=np.uint64))))
    with open("decode_cases.txt", "w") as f:
        f.write("# source expect max_abs_diff  (see make_fixtures.py)\n")
        for name, write, tol in decode_sources():
            write(name)
            ref = Image.open(name).convert("RGB")
            exp = name.replace(".", "_") + ".expect.png"
            ref.save(exp)
            f.write("%s %s %d\n" % (name, exp, tol))
    rnd = random.Random(2024)
    with open("resize_sweep.txt", "w") as f:
        f.write("# w h out_w out_h pattern seed crc32  (see make_fixtures.py)\n")
        for i in range(400):
            w, h = rnd.randint(1, 400), rnd.randint(1, 400)
            ow, oh = rnd.randint(1, 400), rnd.randint(1, 400)
            if i % 4 == 0:
                oh = ow  # square targets, as preprocess uses
            pat = rnd.randint(0, 3)
            arr = pattern(w, h, pat, 1000 + i)
            out = Image.fromarray(arr, "RGB").resize((ow, oh), Image.BICUBIC)
            crc = zlib.crc32(np.asarray(out).tobytes()) & M32
            f.write("%d %d %d %d %d %d %08x\n" % (w, h, ow, oh, pat, 1000 + i, crc))
    with open("pipe_cases.txt", "w") as f:
        f.write("# source expect S  (see make_fixtures.py)\n")
        for name, s in PIPE_CASES:
            exp = "pipe_%s_%d.png" % (name.replace(".", "_"), s)
            Image.open(name).convert("RGB").resize((s, s), Image.BICUBIC).save(exp)
            f.write("%s %s %d\n" % (name, exp, s))
    subprocess.run(["vips", "copy", "dec_rgb_jpg.expect.png", "dec_smoke.avif"], check=True)
    vips_version = subprocess.run(["vips", "--version"], check=True, capture_output=True,
                                  text=True).stdout.strip()
    with open("versions.txt", "w") as f:
        f.write("%s (AVIF smoke file only)\n" % vips_version)
        f.write("python %s\nPillow %s\nnumpy %s\n" % (sys.version.split()[0], PIL.__version__,
                                                     np.__version__))


if __name__ == "__main__":
    main()
