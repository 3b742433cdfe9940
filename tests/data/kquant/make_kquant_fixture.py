#!/usr/bin/env python3
"""K-quant fixture for tests/formats/test_kquant.c: a GGUF with Q4_K, Q5_K and Q6_K tensors of
random super-blocks (3 rows of 512 values each: 2 super-blocks per row) and, next to each, the
float32 values that gguf-py (PyPI's `gguf`, the package llama.cpp ships; 0.19.0 used) dequantises
them to.  The block bytes are random except the fp16 scales (d, dmin), which are drawn from a
sane range (with one subnormal d) so that no value is infinite or NaN.

    pip install gguf==0.19.0 numpy
    python make_kquant_fixture.py [OUT.gguf]      (default: kquant.gguf next to this script)
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "kquant.gguf")
ROWS, COLS = 3, 512
rng = np.random.default_rng(20)

# (type, block bytes, offsets of the fp16 d / dmin fields)
SPECS = [(T.Q4_K, 144, (0, 2)), (T.Q5_K, 176, (0, 2)), (T.Q6_K, 210, (208,))]

w = gguf.GGUFWriter(OUT, "kquant-fixture")
for qt, bsz, offs in SPECS:
    nblk = ROWS * COLS // 256
    raw = rng.integers(0, 256, size=(nblk, bsz), dtype=np.uint8)
    for b in range(nblk):
        for k, o in enumerate(offs):
            v = rng.uniform(0.001, 0.05) * (1 if k == 0 else 0.5)
            if b == 1 and k == 0:
                v = 3e-6  # a subnormal fp16 scale
            raw[b, o:o + 2] = np.frombuffer(np.float16(v).tobytes(), dtype=np.uint8)
    raw = raw.reshape(ROWS, COLS // 256 * bsz)
    name = qt.name.lower()
    w.add_tensor(name, raw, raw_dtype=qt)  # byte shape: ROWS x (2 blocks)
    w.add_tensor(name + ".f32", dequantize(raw, qt).astype(np.float32).reshape(ROWS, COLS))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", OUT)
