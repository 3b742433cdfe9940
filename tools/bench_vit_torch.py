#!/usr/bin/env python3
"""EVA ViT-g (as BLIP-2 / ArtGPT-4 use it: 224 px, patch 14, width 1408, 16 heads, MLP 6144,
39 blocks) in PyTorch with random weights, timed per image: the peer for artflow's vision
path in tools/bench-peers.sh.  Run with Debian's python3-torch:

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 tools/bench_vit_torch.py --threads 2 --batches 1,2,4

fp32 (PyTorch 1.13 has no fast fp16 or bf16 GEMM on a CPU without AVX-512 BF16), inference
mode, threads = cores; each batch: one warm-up pass, then the best of --repeat passes.
"""
import argparse
import time

import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, w, heads, mlp):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(w, eps=1e-6)
        self.qkv = nn.Linear(w, 3 * w)
        self.proj = nn.Linear(w, w)
        self.ln2 = nn.LayerNorm(w, eps=1e-6)
        self.fc1 = nn.Linear(w, mlp)
        self.fc2 = nn.Linear(mlp, w)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(self.ln1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
        x = x + self.proj((a.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    def __init__(self, layers, w=1408, heads=16, mlp=6144, patch=14, size=224):
        super().__init__()
        self.patch = nn.Conv2d(3, w, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, w))
        self.pos = nn.Parameter(torch.zeros(1, (size // patch) ** 2 + 1, w))
        self.blocks = nn.ModuleList(Block(w, heads, mlp) for _ in range(layers))

    def forward(self, img):
        x = self.patch(img).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return x


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="1,2,4")
    p.add_argument("--layers", type=int, default=39)
    p.add_argument("--repeat", type=int, default=2)
    o = p.parse_args()
    torch.set_num_threads(o.threads)
    torch.manual_seed(0)
    m = ViT(o.layers).eval()
    for prm in m.parameters():
        nn.init.normal_(prm, std=0.02)
    res = []
    with torch.inference_mode():
        for b in [int(x) for x in o.batches.split(",")]:
            img = torch.randn(b, 3, 224, 224)
            m(img)
            best = float("inf")
            for _ in range(o.repeat):
                t0 = time.perf_counter()
                m(img)
                best = min(best, time.perf_counter() - t0)
            res.append("batch %d %.3f" % (b, best / b))
    print(", ".join(res) + " s/image (torch %s, %d threads)" % (torch.__version__, o.threads))


if __name__ == "__main__":
    main()
