#!/usr/bin/env python3
"""What PyPI's `gguf` reader (gguf-py, the reader llama.cpp ships) sees in artflow's GGUF files.

Writes gguf-py-view.json next to this script, which tests/convert/test_gguf_py_view.c compares
on every run with what artflow's own reader sees in the same files written afresh, and asserts
on the way the facts other tools rely on (issue 18, item 7):

  * regular model files (`artflow convert` of tests/data/artgpt4-tiny at f16 and q8_0,
    `artflow mkmodel` of config/models/tiny-test.yaml at q4_0): general.file_type read as
    llama.cpp's LlamaFileType is the --type (MOSTLY_F16 / MOSTLY_Q8_0 / MOSTLY_Q4_0, not the
    ggml tensor type id, which gguf-py would read as MOSTLY_Q5_0 for q8_0); the LLM's
    hyper-parameters under llama.* with llama.cpp's value types; clip.vision.* equal to
    vision.*; the LLM matrices of --type where their rows fit the block, else F16;
  * `artflow export --llm-only` of those two converted files: general.architecture "llama",
    general.file_type, exactly the tensors llama.cpp's converter writes in its order
    (tests/data/artgpt4-tiny/vicuna-llamacpp-f16.gguf, make_llamacpp_gguf.py), their types and
    shapes, the values: f16 matrices byte-equal to the reference (q/k rows included, i.e. in
    llama.cpp's interleaved RoPE order), q8_0 matrices equal to the reference within q8_0's
    rounding and byte-equal to the model file's rows permuted as llama.cpp permutes, the norm
    gains ArtGPT-4 re-trained equal to the model file's, the others equal to the reference's
    (rounded to fp16 as artflow stores the LLM's small tensors); the tokenizer arrays equal to
    the reference's; no adapter, vision or Q-Former tensor.

Requirements (not needed by CI): python3 with numpy and `pip install gguf` (0.19.0 used), and a
built artflow:

    python3 tests/data/gguf/gguf_py_view.py [build/artflow]
"""
import hashlib
import importlib.metadata
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
TINY = os.path.join(SRC, "tests", "data", "artgpt4-tiny")
REF = os.path.join(TINY, "vicuna-llamacpp-f16.gguf")
ARTFLOW = sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build", "artflow")
OUT = os.path.join(HERE, "gguf-py-view.json")

# the files, as test_gguf_py_view.c writes them again (name: how)
CONVERT = ["convert", "--arch", f"{TINY}/arch.yaml", "--vit", f"{TINY}/eva_vit_g.pth",
           "--qformer", f"{TINY}/blip2_pretrained_flant5xxl.pth", "--llm", f"{TINY}/vicuna",
           "--adapter", f"{TINY}/ArtGPT-4.pth"]
FILES = [
    ("artgpt4-tiny-f16.gguf", CONVERT + ["--type", "f16"], "MOSTLY_F16", "F16"),
    ("artgpt4-tiny-q8_0.gguf", CONVERT + ["--type", "q8_0"], "MOSTLY_Q8_0", "Q8_0"),
    ("tiny-test-q4_0.gguf", ["mkmodel", "--arch", f"{SRC}/config/models/tiny-test.yaml", "--random",
                             "--seed", "7", "--type", "q4_0"], "MOSTLY_Q4_0", "Q4_0"),
]
EXPORTS = [("export-f16.gguf", "artgpt4-tiny-f16.gguf", "MOSTLY_F16"),
           ("export-q8_0.gguf", "artgpt4-tiny-q8_0.gguf", "MOSTLY_Q8_0")]
LLAMA_U32 = ["context_length", "embedding_length", "block_count", "feed_forward_length",
             "attention.head_count", "attention.head_count_kv", "rope.dimension_count"]
LLAMA_F32 = ["attention.layer_norm_rms_epsilon"]
# llama.cpp's CLIP names whose artflow key is spelled differently
CLIP = {"clip.vision.attention.head_count": "vision.head_count"}


def run(args, out):
    subprocess.run([ARTFLOW] + args + ["-o", out], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def vtype(t):
    return gguf.GGUFValueType(t).name


def field_view(f):
    """one key as JSON: gguf-py's value type and value (arrays: element type, length, the
    SHA-256 of the elements as the file serialises them, the values when short)"""
    t = vtype(f.types[0])
    if t != "ARRAY":
        v = f.contents()
        if t == "FLOAT32" or t == "FLOAT64":
            v = float(v)
        return {"type": t, "value": v}
    elem = vtype(f.types[1])
    h = hashlib.sha256()
    for i in f.data:
        part = bytes(f.parts[i])
        h.update(struct.pack("<Q", len(part)) + part if elem == "STRING" else part)
    d = {"type": "ARRAY", "elem": elem, "n": len(f.data), "sha256": h.hexdigest()}
    if len(f.data) <= 16:
        d["value"] = [float(x) if elem.startswith("FLOAT") else x for x in f.contents()]
    return d


def view(path):
    r = gguf.GGUFReader(path)
    kv = {k: field_view(f) for k, f in r.fields.items() if not k.startswith("GGUF.")}
    tensors = [{"name": t.name, "type": t.tensor_type.name, "type_id": int(t.tensor_type),
                "shape": [int(x) for x in t.shape], "n_bytes": int(t.n_bytes),
                "sha256": hashlib.sha256(t.data.tobytes()).hexdigest()} for t in r.tensors]
    return r, {"kv": kv, "tensors": tensors}


def f32(r, key):
    return float(r.fields[key].contents())


def check_model(r, ftype, qtype):
    assert gguf.LlamaFileType(r.fields["general.file_type"].contents()).name == ftype, ftype
    assert r.fields["general.architecture"].contents() in ("artgpt4", "minigpt4")
    for k in LLAMA_U32:
        assert vtype(r.fields["llama." + k].types[0]) == "UINT32", k
    for k in LLAMA_F32:
        assert vtype(r.fields["llama." + k].types[0]) == "FLOAT32", k
    for k, f in r.fields.items():
        if k.startswith("clip.vision."):
            ours = CLIP.get(k, "vision." + k[len("clip.vision."):])
            assert f.contents() == r.fields[ours].contents(), k
    assert "clip.vision.image_size" in r.fields
    llm = ("token_embd.", "blk.", "output")
    for t in r.tensors:
        if t.name.startswith(llm) and len(t.shape) == 2 and ".adapter_" not in t.name:
            want = qtype if t.shape[0] % 32 == 0 else "F16"
            assert t.tensor_type.name == want, (t.name, t.tensor_type.name, want)


def permute(w, n_head):
    """llama.cpp's converter's q/k permutation (rows of HF order -> interleaved pairs)"""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check_export(e, m, ref, ftype):
    assert e.fields["general.architecture"].contents() == "llama"
    assert gguf.LlamaFileType(e.fields["general.file_type"].contents()).name == ftype
    assert not any(k.startswith(("artflow.rope", "vision.", "clip.", "qformer.")) for k in e.fields)
    for k in LLAMA_U32 + LLAMA_F32:
        assert e.fields["llama." + k].contents() == ref.fields["llama." + k].contents(), k
    for k in ["tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
              "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id",
              "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
              "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"]:
        assert e.fields[k].contents() == ref.fields[k].contents(), k
    assert [t.name for t in e.tensors] == [t.name for t in ref.tensors]
    heads = ref.fields["llama.attention.head_count"].contents()
    kv_heads = ref.fields["llama.attention.head_count_kv"].contents()
    layers = ref.fields["llama.block_count"].contents()
    retrained = {f"blk.{i}.ffn_norm.weight" for i in range(layers)} | \
                {f"blk.{i}.attn_norm.weight" for i in range(0, layers, 2)}
    mt = {t.name: t for t in m.tensors}
    for t, rt in zip(e.tensors, ref.tensors):
        assert list(t.shape) == list(rt.shape), t.name
        src = mt[t.name]
        assert t.tensor_type == src.tensor_type, t.name  # stored types kept
        if len(t.shape) == 1:
            assert t.tensor_type.name == "F32"
            want = src.data if t.name in retrained else rt.data.astype(np.float16).astype(np.float32)
            assert np.array_equal(t.data, want), t.name
            continue
        raw = src.data
        if t.name.endswith(("attn_q.weight", "attn_k.weight")):
            raw = permute(raw, heads if "attn_q" in t.name else kv_heads)
        assert np.array_equal(t.data, raw), t.name  # bytes: q/k rows as llama.cpp permutes them
        x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        y = rt.data.astype(np.float64)
        err = np.linalg.norm(x - y) / np.linalg.norm(y)
        assert err == 0 if t.tensor_type.name == "F16" else err < 1e-2, (t.name, err)


def main():
    out = {"generated_by": f"tests/data/gguf/gguf_py_view.py with gguf {importlib.metadata.version('gguf')}",
           "files": {}}
    readers = {}
    ref = gguf.GGUFReader(REF)
    with tempfile.TemporaryDirectory() as tmp:
        for name, args, ftype, qtype in FILES:
            run(args, os.path.join(tmp, name))
            r, v = view(os.path.join(tmp, name))
            check_model(r, ftype, qtype)
            for t in v["tensors"]:
                del t["sha256"]  # the model files' values are test_gguf_convert's business
            out["files"][name] = {"made_by": "artflow " + " ".join(a.replace(SRC + "/", "") for a in args), **v}
            readers[name] = r
        for name, model, ftype in EXPORTS:
            run(["export", "--llm-only", "--model", os.path.join(tmp, model)], os.path.join(tmp, name))
            r, v = view(os.path.join(tmp, name))
            check_export(r, readers[model], ref, ftype)
            out["files"][name] = {"made_by": f"artflow export --llm-only --model {model}", **v}
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(OUT, "written:", ", ".join(out["files"]))


main()
