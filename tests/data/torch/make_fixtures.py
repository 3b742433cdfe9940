#!/usr/bin/python3
"""Generates the PyTorch / safetensors fixtures for tests/test_torch_*.c.

Run with Debian's python3-torch:  /usr/bin/python3 make_fixtures.py
Real files come from torch.save; safetensors files are written here per the
format spec (no safetensors package); hostile files are crafted byte by byte
(the os.system pickle is only ever written, never loaded).  expected.json holds
torch's own view of every tensor (dtype, shape, float64 sum, first values) for
the C tests to compare against.
"""
import collections
import json
import os
import struct
import sys
import zipfile
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
os.chdir(HERE)
torch.manual_seed(1234)
EXPECTED = {"torch_version": torch.__version__, "python": sys.version.split()[0], "files": {}}

DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
      torch.uint8: "U8", torch.bool: "BOOL"}


def describe(t):
    f = t.detach().to(torch.float64).reshape(-1)
    return {"dtype": DT[t.dtype], "shape": list(t.shape), "sum": float(f.sum()),
            "abs_sum": float(f.abs().sum()),
            "values": [float(v) for v in t.detach().to(torch.float32).reshape(-1)[:64]]}


def flatten(obj, prefix=""):
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


def expect(name, tensors, **extra):
    EXPECTED["files"][name] = dict(extra, tensors={k: describe(v) for k, v in tensors.items()})


def rnd(*shape, dtype=torch.float32):
    return torch.randn(*shape).to(dtype)


# ---- 1. bare fp16 state_dict with EVA-like keys (2 tiny blocks) ----
def eva_sd():
    sd = collections.OrderedDict()
    sd["cls_token"] = rnd(1, 1, 8)
    sd["pos_embed"] = rnd(1, 5, 8)
    sd["patch_embed.proj.weight"] = rnd(8, 3, 2, 2, dtype=torch.float16)
    sd["patch_embed.proj.bias"] = rnd(8, dtype=torch.float16)
    for b in range(2):
        p = f"blocks.{b}."
        for n in ("norm1", "norm2"):
            sd[p + n + ".weight"] = rnd(8, dtype=torch.float16)
            sd[p + n + ".bias"] = rnd(8, dtype=torch.float16)
        sd[p + "attn.q_bias"] = rnd(8, dtype=torch.float16)
        sd[p + "attn.v_bias"] = rnd(8, dtype=torch.float16)
        sd[p + "attn.qkv.weight"] = rnd(24, 8, dtype=torch.float16)
        sd[p + "attn.proj.weight"] = rnd(8, 8, dtype=torch.float16)
        sd[p + "attn.proj.bias"] = rnd(8, dtype=torch.float16)
        sd[p + "mlp.fc1.weight"] = rnd(16, 8, dtype=torch.float16)
        sd[p + "mlp.fc1.bias"] = rnd(16, dtype=torch.float16)
        sd[p + "mlp.fc2.weight"] = rnd(8, 16, dtype=torch.float16)
        sd[p + "mlp.fc2.bias"] = rnd(8, dtype=torch.float16)
    for k in sd:  # the release keeps everything fp16
        sd[k] = sd[k].half()
    return sd


eva = eva_sd()
torch.save(eva, "eva_tiny_fp16.pth")
expect("eva_tiny_fp16.pth", eva)

# ---- 2. ArtGPT-4-like training checkpoint: model + optimizer + config ----
model = torch.nn.ModuleDict({
    "llama_proj": torch.nn.Linear(6, 8),
    "down": torch.nn.Linear(8, 2),
})
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999))
model(torch.zeros(1)) if False else None
loss = model["down"](model["llama_proj"](torch.randn(3, 6))).square().sum()
loss.backward()
opt.step()
msd = collections.OrderedDict()
msd["llama_proj.weight"] = model["llama_proj"].weight.detach().clone()
msd["llama_proj.bias"] = model["llama_proj"].bias.detach().clone()
msd["llama_model.model.layers.0.self_attn.1.down.weight"] = model["down"].weight.detach().clone()
msd["llama_model.model.layers.0.self_attn.1.down.bias"] = model["down"].bias.detach().clone()
msd["llama_model.model.layers.0.post_attention_layernorm.weight"] = rnd(8)
msd["llama_model.model.layers.0.self_attn.0.rotary_emb.inv_freq"] = rnd(2)
msd["Qformer.bert.embeddings.position_ids"] = torch.arange(12).reshape(1, 12)
ckpt = {"model": msd, "optimizer": opt.state_dict(),
        "config": {"model": {"arch": "mini_gpt4", "vit_precision": "fp16", "freeze_vit": True,
                             "num_query_token": 32, "prompt_template": "###Human: {} ###Assistant: "},
                   "run": {"lr_sched": "linear_warmup_cosine_lr", "init_lr": 3e-5,
                           "betas": [0.9, 0.999], "seed": 42, "device": None}},
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                   "growth_interval": 2000, "_growth_tracker": 0},
        "epoch": 3}
torch.save(ckpt, "artgpt4_tiny_fp32.pth")
expect("artgpt4_tiny_fp32.pth", msd, root="model",
       all_tensors=len(flatten(ckpt)))

# ---- 3. a module state_dict: OrderedDict carrying _metadata (BUILD) ----
mod = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
osd = mod.state_dict()
assert hasattr(osd, "_metadata")
torch.save(osd, "ordered.pth")
expect("ordered.pth", osd)

# ---- 4. views: transposed, stride-0 expand, sliced with offset, scalars ----
base = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1
views = {
    "base": base,
    "transposed": base.t(),
    "expanded": torch.tensor([[1.5, -2.0, 3.25, 4.0]]).expand(3, 4),
    "sliced": base[1:, 1:3],
    "scalar": torch.tensor(5.0),
    "i64": torch.arange(-3, 5, dtype=torch.int64),
    "bf16": rnd(2, 3, dtype=torch.bfloat16),
    "f64": rnd(3, dtype=torch.float64),
    "empty": torch.zeros(0, 3),
    "permuted3d": torch.arange(24, dtype=torch.float16).reshape(2, 3, 4).permute(2, 0, 1),
    "strided1d": base.reshape(-1)[1::3],
    "param": torch.nn.Parameter(rnd(2, 2)),  # pickled through _rebuild_parameter
}
assert not views["transposed"].is_contiguous() and views["expanded"].stride()[0] == 0
torch.save(views, "views.pth")
expect("views.pth", views)

# legacy (pre-1.6) serialization: must be refused with a clear message
torch.save({"a": torch.zeros(2)}, "legacy.pth", _use_new_zipfile_serialization=False)


# ---- 5. sharded Hugging Face folder (tiny LLaMA keys), torch .bin shards ----
def llama_sd(layers=2, hidden=8, inter=12, vocab=11):
    sd = collections.OrderedDict()
    sd["model.embed_tokens.weight"] = rnd(vocab, hidden, dtype=torch.float16)
    for i in range(layers):
        p = f"model.layers.{i}."
        for n in ("q", "k", "v", "o"):
            sd[p + f"self_attn.{n}_proj.weight"] = rnd(hidden, hidden, dtype=torch.float16)
        sd[p + "mlp.gate_proj.weight"] = rnd(inter, hidden, dtype=torch.float16)
        sd[p + "mlp.up_proj.weight"] = rnd(inter, hidden, dtype=torch.float16)
        sd[p + "mlp.down_proj.weight"] = rnd(hidden, inter, dtype=torch.float16)
        sd[p + "input_layernorm.weight"] = rnd(hidden, dtype=torch.float16)
        sd[p + "post_attention_layernorm.weight"] = rnd(hidden, dtype=torch.float16)
        sd[p + "self_attn.rotary_emb.inv_freq"] = rnd(2)
    sd["model.norm.weight"] = rnd(hidden, dtype=torch.float16)
    sd["lm_head.weight"] = rnd(vocab, hidden, dtype=torch.float16)
    return sd


# Vicuna v0's config quirk: bos 0 / eos 1 (tokenizer.model says 1 / 2)
HF_CONFIG = {"architectures": ["LlamaForCausalLM"], "bos_token_id": 0, "eos_token_id": 1,
             "hidden_act": "silu", "hidden_size": 8, "initializer_range": 0.02,
             "intermediate_size": 12, "max_position_embeddings": 2048, "model_type": "llama",
             "num_attention_heads": 2, "num_hidden_layers": 2, "pad_token_id": -1,
             "rms_norm_eps": 1e-06, "tie_word_embeddings": False, "torch_dtype": "float16",
             "transformers_version": "4.28.0.dev0", "use_cache": True, "vocab_size": 11}


def write_sharded(folder, sd, fmt):
    os.makedirs(folder, exist_ok=True)
    keys = list(sd)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
    wm = {}
    for i, ks in enumerate(halves):
        if fmt == "bin":
            fn = f"pytorch_model-{i + 1:05d}-of-00002.bin"
            torch.save({k: sd[k] for k in ks}, os.path.join(folder, fn))
        else:
            fn = f"model-{i + 1:05d}-of-00002.safetensors"
            write_safetensors(os.path.join(folder, fn), {k: sd[k] for k in ks})
        wm.update({k: fn for k in ks})
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in sd.values())},
             "weight_map": wm}
    name = "pytorch_model.bin.index.json" if fmt == "bin" else "model.safetensors.index.json"
    with open(os.path.join(folder, name), "w") as f:
        json.dump(index, f, indent=2)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(HF_CONFIG, f, indent=2)


# ---- 6. safetensors, written per the spec ----
def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for k, t in tensors.items():
        t = t.contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[k] = {"dtype": DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the spec allows space padding; keeps data 8-aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


llama = llama_sd()
write_sharded("hf_llama_bin", llama, "bin")
expect("hf_llama_bin", llama, config=HF_CONFIG)
write_sharded("hf_llama_st", llama, "st")
expect("hf_llama_st", llama, config=HF_CONFIG)
single = {"w16": rnd(3, 5, dtype=torch.float16), "w32": rnd(4), "wbf": rnd(2, 2, dtype=torch.bfloat16),
          "ids": torch.arange(6, dtype=torch.int64).reshape(2, 3), "odd": rnd(3, dtype=torch.float16),
          "scalar": torch.tensor(2.5)}
write_safetensors("single.safetensors", single, {"format": "pt"})
expect("single.safetensors", single)


# ---- hand-made zips: zip64 directory, deflated storages ----
def write_zip(path, entries, zip64=False, deflate=(), align=64):
    """entries: list of (name, bytes).  zip64 writes every size/offset through
    zip64 extra fields plus an EOCD64 record and locator."""
    out, cd = bytearray(), bytearray()
    for name, data in entries:
        nb = name.encode()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        method = 8 if name in deflate else 0
        comp = data
        if method:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            comp = c.compress(data) + c.flush()
        off = len(out)
        extra = b""
        pad = (-(off + 30 + len(nb)) % align) if method == 0 else 0
        if zip64:
            extra = struct.pack("<HHQQ", 1, 16, len(data), len(comp))
            pad = (-(off + 30 + len(nb) + len(extra) + 4) % align) if method == 0 else 0
            extra += struct.pack("<HH", 0xCAFE, pad) + b"\0" * pad
        elif pad:
            pad = (-(off + 30 + len(nb) + 4) % align)
            extra = struct.pack("<HH", 0xCAFE, pad) + b"\0" * pad
        s32 = 0xFFFFFFFF if zip64 else None
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if zip64 else 20, 0, method, 0, 0, crc,
                           s32 or len(comp), s32 or len(data), len(nb), len(extra)) + nb + extra + comp
        cx = struct.pack("<HHQQQ", 1, 24, len(data), len(comp), off) if zip64 else b""
        cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45 if zip64 else 20, 0, method, 0, 0,
                          crc, s32 or len(comp), s32 or len(data), len(nb), len(cx), 0, 0, 0, 0,
                          s32 or off) + nb + cx
    cd_off = len(out)
    out += cd
    n = len(entries)
    if zip64:
        e64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(cd), cd_off)
        out += struct.pack("<IIQI", 0x07064B50, 0, e64, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(cd), cd_off, 0)
    with open(path, "wb") as f:
        f.write(out)
    return bytes(out)


def zip_entries(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


eva_entries = zip_entries("eva_tiny_fp16.pth")
write_zip("zip64.pth", [(n.replace("eva_tiny_fp16/", "renamed_prefix/"), d) for n, d in eva_entries],
          zip64=True)
expect("zip64.pth", eva)
write_zip("deflated.pth", eva_entries, deflate={n for n, _ in eva_entries if "/data/" in n or n.endswith(".pkl")})
expect("deflated.pth", eva)

# ---- hostile files ----
HOSTILE = {}
raw = open("eva_tiny_fp16.pth", "rb").read()
open("truncated.pth", "wb").write(raw[: len(raw) // 2])
HOSTILE["truncated.pth"] = "truncated"

# flip a byte inside a storage: the CRC check on first read must notice
with zipfile.ZipFile("eva_tiny_fp16.pth") as z:
    info = z.getinfo("eva_tiny_fp16/data/5")
hdr = raw[info.header_offset: info.header_offset + 30]  # local extra differs from the directory's
data_off = info.header_offset + 30 + struct.unpack("<H", hdr[26:28])[0] + struct.unpack("<H", hdr[28:30])[0]
bad = bytearray(raw)
bad[data_off + 3] ^= 0x55
open("badcrc.pth", "wb").write(bytes(bad))
HOSTILE["badcrc.pth"] = "bad CRC"


def pk_str(s):
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def pk_int(i):
    return b"K" + bytes([i]) if 0 <= i < 256 else b"J" + struct.pack("<i", i)


# PROTO 2; GLOBAL os.system; ('echo pwned',); REDUCE; STOP -- never loaded here
evil = b"\x80\x02" + b"cos\nsystem\n" + pk_str("echo pwned") + b"\x85" + b"R" + b"."
write_zip("evil_os_system.pth", [("evil/data.pkl", evil), ("evil/version", b"3\n")])
HOSTILE["evil_os_system.pth"] = "refusing to load global 'os.system'"
evil2 = b"\x80\x04" + pk_str("builtins") + pk_str("eval") + b"\x93" + pk_str("1+1") + b"\x85R."
write_zip("evil_eval.pth", [("archive/data.pkl", evil2)])
HOSTILE["evil_eval.pth"] = "refusing to load global 'builtins.eval'"


def tensor_pickle(storage_numel, offset, size, stride, storage_key="0"):
    """{'w': _rebuild_tensor_v2(<storage>, offset, size, stride, False, OrderedDict())}"""
    tup = lambda xs: b"(" + b"".join(pk_int(x) for x in xs) + b"t"
    pid = (b"(" + pk_str("storage") + b"ctorch\nFloatStorage\n" + pk_str(storage_key) +
           pk_str("cpu") + pk_int(storage_numel) + b"tQ")
    return (b"\x80\x02}(" + pk_str("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid +
            pk_int(offset) + tup(size) + tup(stride) + b"\x89ccollections\nOrderedDict\n)R" +
            b"tRu.")


four = struct.pack("<4f", 1, 2, 3, 4)
write_zip("past_end.pth", [("archive/data.pkl", tensor_pickle(4, 2, [4], [1])),
                           ("archive/data/0", four), ("archive/version", b"3\n")])
HOSTILE["past_end.pth"] = "tensor 'w' reads past the end of storage '0'"
write_zip("lying_storage.pth", [("archive/data.pkl", tensor_pickle(400, 0, [4], [1])),
                                ("archive/data/0", four), ("archive/version", b"3\n")])
HOSTILE["lying_storage.pth"] = "declares 400 elements"
write_zip("handmade_ok.pth", [("archive/data.pkl", tensor_pickle(4, 1, [2], [2])),
                              ("archive/data/0", four), ("archive/version", b"3\n")])
EXPECTED["files"]["handmade_ok.pth"] = {"tensors": {"w": {"dtype": "F32", "shape": [2], "sum": 6.0,
                                                          "abs_sum": 6.0, "values": [2.0, 4.0]}}}

# zip bomb 1: 64 MiB of zeros deflated, declared as 100 bytes
big = bytes(64 << 20)
write_zip("bomb_small_claim.pth", [("archive/data.pkl", big)], deflate={"archive/data.pkl"})
b = bytearray(open("bomb_small_claim.pth", "rb").read())
lh = b.find(b"PK\x03\x04")
struct.pack_into("<I", b, lh + 22, 100)
cdh = b.find(b"PK\x01\x02")
struct.pack_into("<I", b, cdh + 24, 100)
open("bomb_small_claim.pth", "wb").write(bytes(b))
HOSTILE["bomb_small_claim.pth"] = "past its declared size"
# zip bomb 2: a tiny entry claiming 4 GiB - 2
struct.pack_into("<I", b, lh + 22, 0xFFFFFFFE)
struct.pack_into("<I", b, cdh + 24, 0xFFFFFFFE)
struct.pack_into("<I", b, lh + 18, 64)
struct.pack_into("<I", b, cdh + 20, 64)
open("bomb_huge_claim.pth", "wb").write(bytes(b))
HOSTILE["bomb_huge_claim.pth"] = "more than deflate can produce"

open("not_a_model.bin", "wb").write(b"hello world, this is not a checkpoint\n")
HOSTILE["not_a_model.bin"] = "not a PyTorch or safetensors file"
st = bytearray(open("single.safetensors", "rb").read())
open("st_truncated.safetensors", "wb").write(bytes(st[: len(st) - 7]))
HOSTILE["st_truncated.safetensors"] = "outside the"
HOSTILE["legacy.pth"] = "legacy PyTorch"
EXPECTED["hostile"] = HOSTILE

# seed corpus for the pickle fuzzer: every data.pkl above
os.makedirs("pkl", exist_ok=True)
for fn in sorted(os.listdir(".")):
    if fn.endswith(".pth") and zipfile.is_zipfile(fn) and not fn.startswith("bomb"):
        try:
            with zipfile.ZipFile(fn) as z:
                for n in z.namelist():
                    if n.endswith("data.pkl"):
                        open(os.path.join("pkl", fn[:-4] + ".pkl"), "wb").write(z.read(n))
        except (zipfile.BadZipFile, zlib.error):
            pass

with open("expected.json", "w") as f:
    json.dump(EXPECTED, f, indent=1, sort_keys=True)
print("ok", torch.__version__)
