"""cos/sin of HF transformers 4.28's LlamaRotaryEmbedding cache (fp32, head size
128, base 10000, 2048 positions) at a few positions, as float32 bit patterns:
tests/cl/test_ops.c checks af_rope_table against them.  Run with a Python that
has torch:  python3 make_rope.py  (writes rope.json)."""
import json, os
import numpy as np
import torch

d, base, n = 128, 10000, 2048
inv_freq = 1.0 / (base ** (torch.arange(0, d, 2).float() / d))  # as LlamaRotaryEmbedding.__init__
t = torch.arange(n).type_as(inv_freq)
freqs = torch.einsum("i,j->ij", t, inv_freq)
cos, sin = freqs.cos(), freqs.sin()  # the cache holds cat(freqs, freqs): the same d/2 values twice
positions = [0, 1, 2, 31, 100, 511, 1000, 1999, 2047]
bits = lambda x: [int(v) for v in np.asarray(x, dtype=np.float32).view(np.uint32)]
out = {"torch": torch.__version__, "d": d, "base": base, "positions": positions,
       "cos": [bits(cos[p].numpy()) for p in positions], "sin": [bits(sin[p].numpy()) for p in positions]}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "rope.json"), "w") as f:
    json.dump(out, f)
    f.write("\n")
