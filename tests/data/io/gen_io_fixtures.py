#!/usr/bin/python3
"""Fixtures for tests/core/test_io_files.c and tests/test_csv.c, made with real
tools so artflow's own writers are checked against them:
  npy_f32_3x2.npy, npy_u8_5.npy, npy_i32_2x1x3.npy   numpy.save
  quoting.csv    Python's csv.writer (QUOTE_MINIMAL, CRLF) over the rows in
  quoting.json   (the same rows as JSON, the expected parse)
Run: /usr/bin/python3 tests/data/io/gen_io_fixtures.py (prints tool versions)."""
import csv
import json
import os
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
np.save(os.path.join(here, "npy_f32_3x2.npy"), (np.arange(6, dtype="<f4") * 0.5 - 1).reshape(3, 2))
np.save(os.path.join(here, "npy_u8_5.npy"), np.array([0, 1, 127, 128, 255], dtype="u1"))
np.save(os.path.join(here, "npy_i32_2x1x3.npy"), np.array([-3, -2, -1, 0, 1, 2**31 - 1], dtype="<i4").reshape(2, 1, 3))

rows = [
    ["id", "path", "title", "notes"],
    ["a1", "img/a.jpg", "Plain", "x"],
    ["a,2", "img/b c.png", "Comma, inside", "quote \" inside"],
    ["a3", "img/ü.jpg", "Line\nbreak", "CR\r\nLF"],
    ["a4", "img/d.jpg", "", "trailing empty"],
    ["\"q\"", "img/e.jpg", "\"\"", ","],
]
with open(os.path.join(here, "quoting.csv"), "w", newline="", encoding="utf-8") as f:
    csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n").writerows(rows)
with open(os.path.join(here, "quoting.json"), "w", encoding="utf-8") as f:
    json.dump(rows, f, ensure_ascii=False)
print("python", sys.version.split()[0], "numpy", np.__version__)
