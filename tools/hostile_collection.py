#!/usr/bin/env python3
"""A reproducible hostile collection, run the way an unattended job runs it.

Generates N files, a given fraction of them hostile, then runs `artflow run`
on them, interrupting it at random moments with kill -9 and with SIGTERM and
resuming (--resume) until a run completes, and checks that every file is in
every sink exactly once (issue 21).  Prints the figures: N, hostile (by
kind), lost, duplicated, peak RSS, interruptions.

Hostile kinds (round-robin over the hostile files):
  truncated     the first 40 % of a JPEG
  zero_byte     an empty .jpg
  pixel_bomb    a PNG header claiming 20000 x 20000 (over max_pixels)
  inflate_bomb  an 8000 x 6000 PNG of zeros: 144 MB of pixels from ~150 KB
  cmyk          a CMYK JPEG (decodes: Pillow's conversion)
  gray16        a 16-bit grayscale PNG (decodes)
  animated      an animated GIF (decodes: first frame)
  wrong_ext     a PNG named .jpg (decodes) or text named .png (error)
  fifo          a FIFO named .jpg (error record, no hang)
  long_name     a 255-byte file name (decodes; npy names are shortened)
  non_utf8      a file name with bytes that are not UTF-8 (decodes)
Good files are copies of examples/images/.  Only the standard library and
the repository's own fixtures are used (no Pillow): the images are written
here with zlib or copied from tests/data/image/.

Usage:
  tools/hostile_collection.py --artflow build/artflow [--n 2000] [--hostile 0.05]
                              [--seed 1] [--kills 10] [--terms 5] [--dir DIR]
Exit status 0 when nothing is lost or duplicated, 1 otherwise."""
import argparse
import csv
import io
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
KINDS = ["truncated", "zero_byte", "pixel_bomb", "inflate_bomb", "cmyk", "gray16", "animated",
         "wrong_ext", "fifo", "long_name", "non_utf8"]


def png(w, h, rows):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def inflate_bomb(w=8000, h=6000):
    c = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * w)
    data = b"".join(c.compress(row) for _ in range(h)) + c.flush()
    return png(w, h, data)


def pixel_bomb():
    return png(20000, 20000, zlib.compress(b"\0" * 64))


def generate(top, n, frac, seed):
    """Writes the collection under top/; returns {id bytes: kind}."""
    rnd = random.Random(seed)
    good = sorted(os.path.join(ROOT, "examples", "images", f)
                  for f in os.listdir(os.path.join(ROOT, "examples", "images")))
    fx = lambda name: os.path.join(ROOT, "tests", "data", "image", name)
    n_bad = int(round(n * frac))
    bad_at = set(rnd.sample(range(n), n_bad))
    made, k = {}, 0
    bomb_png = None
    for i in range(n):
        sub = "d%02d" % (i % 17)
        os.makedirs(os.path.join(top, sub), exist_ok=True)
        kind = KINDS[k % len(KINDS)] if i in bad_at else "good"
        if i in bad_at:
            k += 1
        name = ("f%06d" % i).encode()
        src = good[i % len(good)]
        ext = os.path.splitext(src)[1].encode()
        data = None
        if kind == "good":
            data = open(src, "rb").read()
        elif kind == "truncated":
            b = open(os.path.join(ROOT, "examples", "images", "portrait.jpg"), "rb").read()
            data, ext = b[: len(b) * 2 // 5], b".jpg"
        elif kind == "zero_byte":
            data, ext = b"", b".jpg"
        elif kind == "pixel_bomb":
            data, ext = pixel_bomb(), b".png"
        elif kind == "inflate_bomb":
            bomb_png = bomb_png or inflate_bomb()
            data, ext = bomb_png, b".png"
        elif kind == "cmyk":
            data, ext = open(fx("dec_cmyk.jpg"), "rb").read(), b".jpg"
        elif kind == "gray16":
            data, ext = open(fx("dec_gray16.png"), "rb").read(), b".png"
        elif kind == "animated":
            data, ext = open(fx("dec_anim.gif"), "rb").read(), b".gif"
        elif kind == "wrong_ext":
            if rnd.random() < 0.5:
                data, ext = open(fx("dec_rgba.png"), "rb").read(), b".jpg"
            else:
                data, ext = b"this is not an image\n", b".png"
        elif kind == "long_name":
            name = name + b"-" + b"L" * (255 - len(name) - 1 - 4)
            data, ext = open(src, "rb").read(), b".jpg"
        elif kind == "non_utf8":
            name = name + b"-\xff\xfe\xe9t\xe9"
            data, ext = open(src, "rb").read(), b".jpg"
        rel = sub.encode() + b"/" + name + ext
        path = os.path.join(top.encode(), rel)
        if kind == "fifo":
            rel = sub.encode() + b"/" + name + b".jpg"
            os.mkfifo(os.path.join(top.encode(), rel))
        else:
            with open(path, "wb") as f:
                f.write(data)
        made[rel] = kind
    return made


def rss_of_children():
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child so far


def run_until_done(artflow, yaml_path, kills, terms, rnd, log):
    """Interrupts `kills` runs with SIGKILL and `terms` with SIGTERM at random
    moments, then lets one run finish.  Returns (runs, kills, terms, last rc)."""
    plan = ["KILL"] * kills + ["TERM"] * terms
    rnd.shuffle(plan)
    resume, done_k, done_t, runs = [], 0, 0, 0
    for sig in plan + [None]:
        runs += 1
        p = subprocess.Popen([artflow, "run", yaml_path, "--progress=none"] + resume,
                             stdout=log, stderr=log)
        resume = ["--resume"]
        if sig is None:
            return runs, done_k, done_t, p.wait()
        time.sleep(rnd.uniform(0.2, 3.0))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL if sig == "KILL" else signal.SIGTERM)
            if sig == "KILL":
                done_k += 1
            else:
                done_t += 1
        p.wait()


def read_jsonl(path):
    ids = []
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                continue
            o = json.loads(line.decode("utf-8", "surrogateescape"))
            ids.append(o["id"].encode("utf-8", "surrogateescape"))
    return ids


def read_csv_ids(path):
    text = open(path, "rb").read().decode("utf-8", "surrogateescape")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return [r[0].encode("utf-8", "surrogateescape") for r in rows[1:]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--artflow", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--hostile", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--terms", type=int, default=5)
    ap.add_argument("--dir", help="work folder (default: a new temporary one, removed on success)")
    a = ap.parse_args()
    top = a.dir or tempfile.mkdtemp(prefix="af-hostile-")
    col = os.path.join(top, "col")
    shutil.rmtree(col, ignore_errors=True)
    shutil.rmtree(os.path.join(top, "out"), ignore_errors=True)
    os.makedirs(col)
    t0 = time.time()
    made = generate(col, a.n, a.hostile, a.seed)
    kinds = {}
    for k in made.values():
        kinds[k] = kinds.get(k, 0) + 1
    print("generated %d files in %.1f s under %s" % (len(made), time.time() - t0, col))
    yaml_path = os.path.join(top, "hostile.yaml")
    with open(yaml_path, "w") as f:
        f.write("source: {stage: dir, path: col, extensions: []}\n"
                "stages:\n"
                "  - stage: decode\n"
                "    resize: 32\n"
                "    deadline: 30\n"
                "  - stage: checksum\n"
                "    tensor: rgb\n"
                "sinks:\n"
                "  - stage: npy\n"
                "    path: out/npy\n"
                "  - stage: jsonl\n"
                "    path: out/records.jsonl\n"
                "    fsync: none\n"
                "  - stage: csv\n"
                "    path: out/records.csv\n"
                "    fsync: none\n"
                "    columns: [id, status, error]\n")
    rnd = random.Random(a.seed)
    t0 = time.time()
    with open(os.path.join(top, "runs.log"), "ab") as log:
        runs, kills, terms, rc = run_until_done(a.artflow, yaml_path, a.kills, a.terms, rnd, log)
    wall = time.time() - t0
    ids = read_jsonl(os.path.join(top, "out", "records.jsonl"))
    cids = read_csv_ids(os.path.join(top, "out", "records.csv"))
    want = set(made)
    lost = sorted(want - set(ids))
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(ids) != len(set(ids)) else []
    lost_csv = sorted(want - set(cids))
    dup_csv = len(cids) - len(set(cids))
    extra = sorted(set(ids) - want)
    oks = sum(1 for line in open(os.path.join(top, "out", "records.jsonl"), "rb")
              if b'"status":"ok"' in line)
    npys = len(os.listdir(os.path.join(top, "out", "npy")))
    print("N %d, hostile %d (%s)" % (len(made), sum(v for k, v in kinds.items() if k != "good"),
                                      ", ".join("%s %d" % (k, kinds[k]) for k in KINDS if k in kinds)))
    print("runs %d: %d kill -9, %d SIGTERM, last exit %d, %.0f s" % (runs, kills, terms, rc, wall))
    print("records %d (ok %d, error %d), npy files %d" % (len(ids), oks, len(ids) - oks, npys))
    print("lost %d, duplicated %d (jsonl); lost %d, duplicated %d (csv); unexpected %d"
          % (len(lost), len(dup), len(lost_csv), dup_csv, len(extra)))
    print("peak RSS %.1f MiB (largest of the runs)" % (rss_of_children() / 1024.0))
    for i in (lost + dup + lost_csv)[:10]:
        print("  e.g. %r" % i)
    ok = rc == 0 and not lost and not dup and not lost_csv and not dup_csv and not extra and npys == oks
    if ok and not a.dir:
        shutil.rmtree(top)
    elif not ok:
        print("kept %s" % top)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
