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
        A/B, B/A, A/B...: `artflow bench --model M --llm-only --batch 8 --json` and llama.cpp's
        prompt processing (one eval of the prompt) and decode (one token per eval after the
        prompt), each warmed up the same way, threads = cores; prints min and median of each,
        the load average around each pair and the JSON of the runs.
    bench_peers.py table SPEED.txt
        the tables again from the JSON line of a speed run's output.
    bench_peers.py quality --ids IDS.txt --model Q.gguf --reference R.gguf
        llama.cpp's logits of every position for both files: NMSE, KL divergence and top-1
        agreement, computed as `artflow bench --reference` does (cli/bench_quality.c); the
        reference's logits are kept next to IDS.txt (logits-llama-*.npy) for the next file.
"""
import hashlib
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
    """(prompt tokens/s, decode ms/token) of one run, warmed up as `artflow bench` is: one
    untimed eval of the whole prompt (weights paged in, buffers made), the timed one, one
    untimed decode step, then n_decode timed steps of one token each"""
    ll = llama(model, n_ctx=n_prompt + n_decode + 8, n_batch=512, n_ubatch=512)
    toks = [1] + [(i * 7919) % 30000 + 100 for i in range(n_prompt - 1)]
    ll.eval(toks)  # warm-up
    ll.reset()
    t0 = time.perf_counter()
    ll.eval(toks)
    pp = time.perf_counter() - t0
    ll.eval([99])  # warm-up of the one-token graph
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


def load():
    """the 1-, 5- and 15-minute load averages (other jobs on the machine move every number)"""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def bm(xs, best=max):
    """best / median of one engine's runs (best: max for rates, min for times)"""
    return f"{best(xs):.2f} / {statistics.median(xs):.2f}"


def rng(xs):
    return f"{min(xs):.2f}-{max(xs):.2f}x"


def report(d):
    """the table of one speed run, from its JSON (also `bench_peers.py table speed-T.txt`)"""
    runs, l_pp, l_dec, loads = d["artflow"], d["llama_prefill_tokens_s"], d["llama_decode_ms"], d["loadavg"]
    reps, size, n_prompt = len(runs), runs[0]["model_file_bytes"], runs[0]["prefill_tokens"]
    a_pp = [j["prefill_tokens_s"] for j in runs]
    a_dec = [j["decode_ms_per_token"] for j in runs]
    a_b8 = [j.get("decode_batch_tokens_s", 0) for j in runs]
    a_read = [j["read_gb_s"] for j in runs]
    med = statistics.median
    # ratios pair by pair (the two engines ran back to back) and within one artflow process
    r_pp = [a / b for a, b in zip(a_pp, l_pp)]
    r_dec = [b / a for a, b in zip(a_dec, l_dec)]
    share = [size / (dd * 1e-3) / 1e9 / rd for dd, rd in zip(a_dec, a_read)]
    lshare = [size / (dd * 1e-3) / 1e9 / rd for dd, rd in zip(l_dec, a_read)]
    b8 = [b * dd * 1e-3 for b, dd in zip(a_b8, a_dec)]
    quiet = min(range(reps), key=lambda i: float(loads[2 * i].split()[0]) + float(loads[2 * i + 1].split()[0]))
    print(f"\n{os.path.basename(d['model'])}: {size / 1e9:.2f} GB; {reps} alternating pairs (A/B, B/A, ...), "
          f"best / median; load average (1, 5, 15 min) {loads[0]} at the start, {loads[-1]} at the end\n")
    print("| pair | load before -> after (1 min) | artflow prefill t/s | llama.cpp prefill t/s | artflow decode ms "
          "| llama.cpp decode ms | artflow batch-8 t/s | streaming read GB/s |")
    print("|---|---|---|---|---|---|---|---|")
    for i in range(reps):
        print(f"| {i + 1}{' (quietest)' if i == quiet else ''} | {loads[2 * i].split()[0]} -> "
              f"{loads[2 * i + 1].split()[0]} | {a_pp[i]:.2f} | {l_pp[i]:.2f} | {a_dec[i]:.1f} | {l_dec[i]:.1f} | "
              f"{a_b8[i]:.2f} | {a_read[i]:.2f} |")
    print()
    print("| | artflow | llama.cpp | artflow / llama.cpp: medians; pairs; quietest pair |")
    print("|---|---|---|---|")
    print(f"| prompt processing, {n_prompt} tokens (tokens/s) | {bm(a_pp)} | {bm(l_pp)} | "
          f"{med(a_pp) / med(l_pp):.2f}x; {rng(r_pp)}; {r_pp[quiet]:.2f}x |")
    print(f"| decode after the prompt, batch 1 (ms/token) | {bm(a_dec, min)} | {bm(l_dec, min)} | "
          f"{med(l_dec) / med(a_dec):.2f}x; {rng(r_dec)}; {r_dec[quiet]:.2f}x |")
    print(f"| decode: file bytes / time, share of the streaming read of the same artflow run (median; pairs) "
          f"| {100 * med(share):.0f} %; {100 * min(share):.0f}-{100 * max(share):.0f} % "
          f"| {100 * med(lshare):.0f} %; {100 * min(lshare):.0f}-{100 * max(lshare):.0f} % | |")
    print(f"| batch-8 aggregate decode / batch 1, same artflow run (median; runs) | {med(b8):.2f}x; {rng(b8)} | | |")


def speed():
    binary, model = arg("--artflow"), arg("--model")
    reps, n_prompt, n_decode = arg("--reps", 3, int), arg("--prompt", 100, int), arg("--decode", 16, int)
    l_pp, l_dec, runs, loads = [], [], [], []
    for rep in range(reps):
        loads.append(load())
        if rep % 2:  # A/B, then B/A: neither engine always runs right after the other
            pp, dec = llama_speed(model, n_prompt, n_decode)
        j = artflow_speed(binary, model, 8)
        runs.append(j)
        if not rep % 2:
            pp, dec = llama_speed(model, n_prompt, n_decode)
        l_pp.append(pp)
        l_dec.append(dec)
        loads.append(load())
        print(f"rep {rep + 1} (load {loads[-2]} -> {loads[-1]}): artflow prefill {j['prefill_tokens_s']:.2f} t/s, "
              f"decode {j['decode_ms_per_token']:.1f} ms, batch-8 {j.get('decode_batch_tokens_s', 0):.2f} t/s, "
              f"read {j['read_gb_s']:.1f} GB/s | llama.cpp prefill {pp:.2f} t/s, decode {dec:.1f} ms", flush=True)
    d = {"model": model, "artflow": runs, "llama_prefill_tokens_s": l_pp, "llama_decode_ms": l_dec, "loadavg": loads}
    report(d)
    print("\nJSON " + json.dumps(d))


def table(path):
    for line in open(path):
        if line.startswith("JSON "):
            report(json.loads(line[5:]))


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


def llama_logits(path, ids):
    """llama.cpp's logits of every position of ids"""
    ll = llama(path, n_ctx=len(ids) + 8, n_batch=512, n_ubatch=512, logits_all=True)
    ll.eval(ids)
    return np.array(ll.scores[: len(ids)], dtype=np.float32)


def reference_logits(path, ids):
    """llama_logits of the reference, computed once for every quantised file: kept next to the
    ids, named by the reference file, its size and mtime, the llama.cpp version and the ids"""
    import llama_cpp
    st = os.stat(path)
    tag = hashlib.sha1(repr((os.path.abspath(path), st.st_size, st.st_mtime_ns, llama_cpp.__version__,
                             ids)).encode()).hexdigest()[:16]
    cache = os.path.join(os.path.dirname(os.path.abspath(arg("--ids"))), f"logits-llama-{tag}.npy")
    if os.path.exists(cache):
        return np.load(cache)
    r = llama_logits(path, ids)
    np.save(cache, r)
    return r


def quality():
    ids = [int(x) for x in open(arg("--ids")).read().split()]
    out = {"--reference": reference_logits(arg("--reference"), ids), "--model": llama_logits(arg("--model"), ids)}
    nmse, kl, klmax, top1 = metrics(out["--model"], out["--reference"])
    print(f"llama.cpp (load {load()}): quality of {arg('--model')} against {arg('--reference')} over {len(ids)} positions:\n"
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
    elif cmd == "table":
        table(sys.argv[2])
    else:
        sys.exit(__doc__)
