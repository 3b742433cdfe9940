#!/usr/bin/env python3
"""artflow against llama.cpp on the same files, same machine, same run (issue 20).
Driven by tools/bench-peers.sh, which makes the models and the virtual environment
(llama-cpp-python, gguf, numpy from PyPI: benchmark-time dependencies only).

    bench_peers.py extract SRC.gguf OUT.gguf
        the LLM of an artflow model file (token_embd, blk.*, output_norm, output), its
        tensors copied byte for byte, with the llama.* and tokenizer.ggml.* keys, into a
        GGUF that llama.cpp loads (general.architecture = llama, 128-byte alignment so
        that artflow still uses the tensors in place).  artflow.rope_layout is kept: artflow
        reads the q/k rows in Hugging Face order, llama.cpp in its own; on random weights
        each engine runs a valid LLaMA, and each is compared only with itself.
    bench_peers.py speed --artflow BIN --model M.gguf [--reps 3] [--prompt 100] [--decode 16]
        A/B/A/B...: `artflow bench --model M --llm-only --batch 8 --json`, then llama.cpp's
        prompt processing (one eval of the prompt) and decode (one token per eval after the
        prompt), threads = cores; prints min and median of each and the JSON of the runs.
    bench_peers.py quality --ids IDS.txt --model Q.gguf --reference R.gguf
        llama.cpp's logits of every position for both files: NMSE, KL divergence and top-1
        agreement, computed as `artflow bench --reference` does (cli/bench_quality.c).
"""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def arg(name, default=None, conv=str):
    if name in sys.argv:
        return conv(sys.argv[sys.argv.index(name) + 1])
    if default is None:
        sys.exit(f"bench_peers.py: {name} is required")
    return default


def extract(src, out):
    import gguf
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(out, "llama")
    w.add_custom_alignment(128)
    for f in r.fields.values():
        k = f.name
        if not (k.startswith("llama.") or k.startswith("tokenizer.ggml.") or k == "artflow.rope_layout"
                or k == "general.file_type" or k == "general.name"):
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            sub = f.types[1]
            if sub == gguf.GGUFValueType.STRING:
                val = [bytes(f.parts[i]) for i in f.data]
            else:
                val = [f.parts[i].tolist()[0] for i in f.data]
            w.add_array(k, val)
        elif vt == gguf.GGUFValueType.STRING:
            w.add_string(k, bytes(f.parts[f.data[0]]).decode("utf-8"))
        else:
            w.add_key_value(k, f.parts[f.data[0]].tolist()[0], vt)
    n = 0
    for t in r.tensors:
        if not (t.name.startswith("blk.") or t.name in ("token_embd.weight", "output_norm.weight",
                                                          "output.weight")):
            continue
        if t.name.startswith("blk.") and "adapter" in t.name:
            continue
        w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)  # quantised: rows x bytes, as read
        n += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"extract: {n} tensors of {src} -> {out}")


def llama(model, **kw):
    from llama_cpp import Llama
    threads = os.cpu_count()
    return Llama(model_path=model, n_threads=threads, n_threads_batch=threads, verbose=False, **kw)


def llama_speed(model, n_prompt, n_decode):
    """(prompt tokens/s, decode ms/token) of one run, after a warm-up eval"""
    ll = llama(model, n_ctx=n_prompt + n_decode + 8, n_batch=512, n_ubatch=512)
    toks = [1] + [(i * 7919) % 30000 + 100 for i in range(n_prompt - 1)]
    ll.eval(toks[:8])  # warm-up (weights paged in, buffers made)
    ll.reset()
    t0 = time.perf_counter()
    ll.eval(toks)
    pp = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(n_decode):
        ll.eval([(i * 31) % 30000 + 100])
    dec = (time.perf_counter() - t0) / n_decode
    del ll
    return n_prompt / pp, dec * 1e3


def artflow_speed(binary, model, n_batch):
    p = subprocess.run([binary, "bench", "--model", model, "--llm-only", "--batch", str(n_batch), "--repeat", "1",
                        "--json"], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"artflow bench failed: {p.stderr.strip()}")
    return json.loads(p.stdout)


def mm(xs):
    return f"{min(xs):.2f} / {statistics.median(xs):.2f}"


def speed():
    binary, model = arg("--artflow"), arg("--model")
    reps, n_prompt, n_decode = arg("--reps", 3, int), arg("--prompt", 100, int), arg("--decode", 16, int)
    a_pp, a_dec, a_b8, a_read, l_pp, l_dec, runs = [], [], [], [], [], [], []
    for rep in range(reps):
        j = artflow_speed(binary, model, 8)
        runs.append(j)
        a_pp.append(j["prefill_tokens_s"])
        a_dec.append(j["decode_ms_per_token"])
        a_b8.append(j.get("decode_batch_tokens_s", 0))
        a_read.append(j["read_gb_s"])
        pp, dec = llama_speed(model, n_prompt, n_decode)
        l_pp.append(pp)
        l_dec.append(dec)
        print(f"rep {rep + 1}: artflow prefill {a_pp[-1]:.2f} t/s, decode {a_dec[-1]:.1f} ms, batch-8 "
              f"{a_b8[-1]:.2f} t/s, read {a_read[-1]:.1f} GB/s | llama.cpp prefill {pp:.2f} t/s, decode {dec:.1f} ms",
              flush=True)
    size = os.path.getsize(model)
    gbs = [size / (d * 1e-3) / 1e9 for d in a_dec]
    lgbs = [size / (d * 1e-3) / 1e9 for d in l_dec]
    read = statistics.median(a_read)
    print(f"\n{os.path.basename(model)}: {size / 1e9:.2f} GB, streaming read (artflow bench, same runs) "
          f"min/median {mm(a_read)} GB/s; {reps} alternating runs, min / median\n")
    print("| | artflow | llama.cpp | artflow / llama.cpp (medians) |")
    print("|---|---|---|---|")
    print(f"| prompt processing, {n_prompt} tokens (tokens/s) | {mm(a_pp)} | {mm(l_pp)} | "
          f"{statistics.median(a_pp) / statistics.median(l_pp):.2f}x |")
    print(f"| decode after the prompt, batch 1 (ms/token) | {mm(a_dec)} | {mm(l_dec)} | "
          f"{statistics.median(l_dec) / statistics.median(a_dec):.2f}x |")
    print(f"| decode as GB/s of the file (share of the streaming read) | {statistics.median(gbs):.1f} "
          f"({100 * statistics.median(gbs) / read:.0f} %) | {statistics.median(lgbs):.1f} "
          f"({100 * statistics.median(lgbs) / read:.0f} %) | |")
    b1 = [1e3 / d for d in a_dec]
    print(f"| batch-8 aggregate decode (tokens/s) | {mm(a_b8)} ({statistics.median(a_b8) / statistics.median(b1):.2f}x "
          f"batch 1) | | |")
    print("\nJSON " + json.dumps({"model": model, "artflow": runs, "llama_prefill_tokens_s": l_pp,
                                  "llama_decode_ms": l_dec}))


def metrics(q, r):
    q = q.astype(np.float64)
    r = r.astype(np.float64)
    nmse = float(((q - r) ** 2).sum() / (r ** 2).sum())
    lr = r - r.max(axis=1, keepdims=True)
    lr -= np.log(np.exp(lr).sum(axis=1, keepdims=True))
    lq = q - q.max(axis=1, keepdims=True)
    lq -= np.log(np.exp(lq).sum(axis=1, keepdims=True))
    kl = (np.exp(lr) * (lr - lq)).sum(axis=1)
    top1 = float((q.argmax(axis=1) == r.argmax(axis=1)).mean())
    return nmse, float(kl.mean()), float(kl.max()), top1


def quality():
    ids = [int(x) for x in open(arg("--ids")).read().split()]
    out = {}
    for key in ("--reference", "--model"):
        ll = llama(arg(key), n_ctx=len(ids) + 8, n_batch=512, n_ubatch=512, logits_all=True)
        ll.eval(ids)
        out[key] = np.array(ll.scores[: len(ids)], dtype=np.float32)
        del ll
    nmse, kl, klmax, top1 = metrics(out["--model"], out["--reference"])
    print(f"llama.cpp: quality of {arg('--model')} against {arg('--reference')} over {len(ids)} positions:\n"
          f"  logits NMSE {nmse:.4g}, KL divergence mean {kl:.4g} (max {klmax:.4g}), top-1 agreement "
          f"{100 * top1:.2f} % ({round(top1 * len(ids))} of {len(ids)})")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "extract":
        extract(sys.argv[2], sys.argv[3])
    elif cmd == "speed":
        speed()
    elif cmd == "quality":
        quality()
    else:
        sys.exit(__doc__)
