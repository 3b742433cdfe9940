#!/usr/bin/env python3
"""Golden data for artflow's numerical-fidelity tests, produced by the ORIGINAL code.

Builds a tiny ArtGPT-4 (same structure, small widths), writes it in the four release
file formats (eva_vit_g.pth, blip2_pretrained_flant5xxl.pth, a Vicuna-v0-style HF folder,
ArtGPT-4.pth), assembles the model exactly as the original MiniGPT4.__init__ does, and
records every intermediate tensor and the greedy tokens for one image and the demo prompt.

The model code is NOT part of artflow: it is imported at generation time from a checkout of
the original repository (DLYuanGod/ArtGPT-4 at commit 113cffc), given as ARTGPT4_SRC.
Only the outputs (a few hundred KB) are committed.

Requirements (not needed by CI): Debian's python3-torch (1.13), python3-pil, python3-numpy,
python3-sentencepiece, the `spm_train` tool, and transformers==4.28.0 from PyPI (the
version the original pins), e.g. in a venv made with --system-site-packages.
timm and torchvision are not needed: the three timm helpers eva_vit.py imports are
training-time utilities (drop_path, to_2tuple, trunc_normal_) and are provided below.

    ARTGPT4_SRC=/path/to/ArtGPT-4 python make_golden.py [OUT_DIR]
"""
import ast
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import types
import zipfile  # noqa: F401  (torch.save uses it; imported for clarity of requirements)

import numpy as np
import torch
from PIL import Image

SRC = os.environ.get("ARTGPT4_SRC")
if not SRC or not os.path.isdir(os.path.join(SRC, "minigpt4")):
    sys.exit("set ARTGPT4_SRC to a checkout of the original ArtGPT-4 repository")
OUT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))
SEED = 1234

# ---------------------------------------------------------------- tiny architecture
IMG = 56            # image_size (patch 14 -> 4x4 grid, 17 tokens)
PATCH = 14
VW = 64             # vision width
VHEADS = 4
VLAYERS = 2         # used; the file stores VLAYERS + 1 like the release
MLP_RATIO = 4.3637  # int(64 * 4.3637) = 279: an odd MLP width, as in the release's ratio
QW, QLAYERS, QHEADS, QFFN, NQ = 32, 4, 4, 64, 8
LW, LLAYERS, LHEADS, LFFN = 64, 2, 4, 172
QUESTION = "Describe this image in detail."
MAX_NEW = 12

# ---------------------------------------------------------------- import the original modules
def stub(name, **attrs):
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def _drop_path(x, drop_prob=0.0, training=False):
    return x  # identity at inference (drop_path_rate 0)


def _to_2tuple(x):
    return x if isinstance(x, tuple) else (x, x)


stub("timm")
stub("timm.models")
stub("timm.models.layers", drop_path=_drop_path, to_2tuple=_to_2tuple,
     trunc_normal_=torch.nn.init.trunc_normal_)
stub("timm.models.registry", register_model=lambda f: f)
stub("minigpt4")
stub("minigpt4.common")
stub("minigpt4.common.dist_utils", download_cached_file=lambda *a, **k: None)
stub("minigpt4.common.registry", registry=None)


def load(name, rel):
    spec = importlib.util.spec_from_file_location(name, os.path.join(SRC, rel))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


eva = load("minigpt4.models.eva_vit", "minigpt4/models/eva_vit.py")
qf = load("minigpt4.models.Qformer", "minigpt4/models/Qformer.py")
ml = load("minigpt4.models.modeling_llama", "minigpt4/models/modeling_llama.py")
conv_mod = load("minigpt4.conversation.conversation", "minigpt4/conversation/conversation.py")

# ImageAdapter and blip2.LayerNorm are executed from the original source text (their
# modules import the whole training stack).
def exec_class(rel, cls_name, env):
    tree = ast.parse(open(os.path.join(SRC, rel)).read())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name)
    exec(compile(ast.Module(body=[node], type_ignores=[]), rel, "exec"), env)
    return env[cls_name]


nn = torch.nn
ImageAdapter = exec_class("minigpt4/models/mini_gpt4.py", "ImageAdapter", {"nn": nn, "torch": torch})
LNfp32 = exec_class("minigpt4/models/blip2.py", "LayerNorm", {"nn": nn, "torch": torch})

torch.manual_seed(SEED)
np.random.seed(SEED)
os.makedirs(OUT, exist_ok=True)


def randomize(module, scale):
    """Random weights everywhere (the original inits leave LN gains at 1 and biases at 0,
    which would hide mistakes); LayerNorm/RMSNorm gains near 1."""
    g = torch.Generator().manual_seed(SEED + 7)
    for name, p in module.named_parameters():
        with torch.no_grad():
            if "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=g))


# ---------------------------------------------------------------- tokenizer (LLaMA options)
tokdir = os.path.join(OUT, "vicuna")
os.makedirs(tokdir, exist_ok=True)
corpus = os.path.join(OUT, "corpus.tmp.txt")
with open(corpus, "w") as f:
    lines = [
        "Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it to you. Please answer my questions.",
        "###Human: <Img><ImageHere></Img> Describe this image in detail.###Assistant:",
        "The painting shows a quiet landscape with soft light, a river and distant mountains.",
        "Brushstrokes of blue and gold evoke calm; the viewer may feel awe, contentment or nostalgia.",
        "A portrait of a woman in a red dress, painted in oil on canvas around 1890.",
        "Impressionism, cubism, baroque, renaissance, abstract expressionism, ukiyo-e, art nouveau.",
        "Take a look at this image and describe what you notice. Could you describe the contents?",
        "Numbers like 1889, 2023 and 42 appear in museum catalogues and inventories.",
    ]
    for i in range(60):
        f.write(lines[i % len(lines)] + "\n")
subprocess.run(["spm_train", f"--input={corpus}", f"--model_prefix={tokdir}/tokenizer",
                "--model_type=bpe", "--vocab_size=420", "--byte_fallback=true", "--split_digits=true",
                "--add_dummy_prefix=true", "--remove_extra_whitespaces=false",
                "--normalization_rule_name=identity", "--character_coverage=1.0",
                "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=-1", "--minloglevel=2"],
               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
os.remove(corpus)
os.remove(os.path.join(tokdir, "tokenizer.vocab"))
import sentencepiece as spm  # noqa: E402

sp = spm.SentencePieceProcessor(model_file=os.path.join(tokdir, "tokenizer.model"))
NPIECES = sp.get_piece_size()
VOCAB = NPIECES + 1  # FastChat's merge adds [PAD]: one more embedding/lm_head row than pieces

# ---------------------------------------------------------------- vision: eva_vit_g.pth
def make_vit(depth):
    return eva.VisionTransformer(img_size=IMG, patch_size=PATCH, use_mean_pooling=False, embed_dim=VW,
                                 depth=depth, num_heads=VHEADS, mlp_ratio=MLP_RATIO, qkv_bias=True,
                                 drop_path_rate=0.0, norm_layer=lambda d: nn.LayerNorm(d, eps=1e-6))


vit_file = make_vit(VLAYERS + 1)  # the release file stores one block more than is used
randomize(vit_file, 0.05)
sd = {k: v.half() for k, v in vit_file.state_dict().items()}  # released as fp16
torch.save(sd, os.path.join(OUT, "eva_vit_g.pth"))

# ---------------------------------------------------------------- Q-Former: blip2 checkpoint
bert_cfg = qf.BertConfig(vocab_size=64, hidden_size=QW, num_hidden_layers=QLAYERS, num_attention_heads=QHEADS,
                         intermediate_size=QFFN, hidden_act="gelu", layer_norm_eps=1e-12,
                         max_position_embeddings=64)
bert_cfg.encoder_width = VW
bert_cfg.add_cross_attention = True
bert_cfg.cross_attention_freq = 2
bert_cfg.query_length = NQ
qformer_file = qf.BertLMHeadModel(config=bert_cfg)
randomize(qformer_file, 0.08)
query_tokens_file = 0.5 * torch.randn(1, NQ, QW)
ln_vision_file = LNfp32(VW)
randomize(ln_vision_file, 0.05)
blip = {f"Qformer.{k}": v.float() for k, v in qformer_file.state_dict().items()}
blip["query_tokens"] = query_tokens_file
blip.update({f"ln_vision.{k}": v for k, v in ln_vision_file.state_dict().items()})
blip["t5_proj.weight"] = torch.randn(16, QW)  # unused by MiniGPT-4/ArtGPT-4
blip["t5_proj.bias"] = torch.randn(16)
torch.save({"model": blip}, os.path.join(OUT, "blip2_pretrained_flant5xxl.pth"))

# ---------------------------------------------------------------- LLM: Vicuna v0 HF folder
lcfg = ml.LlamaConfig(vocab_size=VOCAB, hidden_size=LW, intermediate_size=LFFN, num_hidden_layers=LLAYERS,
                      num_attention_heads=LHEADS, rms_norm_eps=1e-6, max_position_embeddings=256,
                      bos_token_id=0, eos_token_id=1)  # the v0 config.json quirk: wrong special ids
llama_file = ml.LlamaForCausalLM(lcfg)
randomize(llama_file, 0.08)
llama_file.save_pretrained(tokdir, max_shard_size="100KB")  # sharded .bin + index json, fp32
# the release's shards are fp16: rewrite them in fp16 (same names and index)
for fn in sorted(os.listdir(tokdir)):
    if fn.startswith("pytorch_model") and fn.endswith(".bin"):
        p = os.path.join(tokdir, fn)
        torch.save({k: v.half() for k, v in torch.load(p).items()}, p)

# ---------------------------------------------------------------- ArtGPT-4.pth
art = {}
proj_file = nn.Linear(QW, LW)
randomize(proj_file, 0.1)
art["llama_proj.weight"] = proj_file.weight.detach().clone()
art["llama_proj.bias"] = proj_file.bias.detach().clone()
g = torch.Generator().manual_seed(SEED + 99)
for i in range(LLAYERS):
    pre = f"llama_model.model.layers.{i}."
    art[pre + "self_attn.1.down.weight"] = 0.05 * torch.randn(LW // 4, LW, generator=g)
    art[pre + "self_attn.1.down.bias"] = 0.05 * torch.randn(LW // 4, generator=g)
    art[pre + "self_attn.1.up.weight"] = 0.05 * torch.randn(LW, LW // 4, generator=g)
    art[pre + "self_attn.1.up.bias"] = 0.05 * torch.randn(LW, generator=g)
    art[pre + "post_attention_layernorm.weight"] = 1.0 + 0.2 * torch.randn(LW, generator=g)
    if i % 2 == 0:
        art[pre + "input_layernorm.weight"] = 1.0 + 0.2 * torch.randn(LW, generator=g)
    art[pre + "self_attn.0.rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, LW // LHEADS, 2).float() / (LW // LHEADS)))
art["Qformer.bert.embeddings.position_ids"] = torch.arange(64).unsqueeze(0)
optim = {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.randn(4, 4), "exp_avg_sq": torch.rand(4, 4)}},
         "param_groups": [{"lr": 3e-5, "weight_decay": 0.05, "params": [0]}]}
torch.save({"model": art, "optimizer": optim, "config": {"run": {"seed": 42}}, "scaler": None, "epoch": 4},
           os.path.join(OUT, "ArtGPT-4.pth"))

# ---------------------------------------------------------------- assemble as MiniGPT4.__init__ does
class Assembled(nn.Module):
    pass


model = Assembled()
model.visual_encoder = make_vit(VLAYERS)
vsd = torch.load(os.path.join(OUT, "eva_vit_g.pth"), map_location="cpu")
eva.interpolate_pos_embed(model.visual_encoder, vsd)
model.visual_encoder.load_state_dict(vsd, strict=False)  # the extra block is silently dropped
model.visual_encoder.float()  # low_resource demo path: ViT on CPU in fp32 (vit_to_cpu)
model.ln_vision = LNfp32(VW)
model.Qformer = qf.BertLMHeadModel(config=bert_cfg)
model.query_tokens = nn.Parameter(torch.zeros(1, NQ, QW))
model.Qformer.cls = None
model.Qformer.bert.embeddings.word_embeddings = None
model.Qformer.bert.embeddings.position_embeddings = None
for layer in model.Qformer.bert.encoder.layer:
    layer.output = None
    layer.intermediate = None
model.load_state_dict(torch.load(os.path.join(OUT, "blip2_pretrained_flant5xxl.pth"))["model"], strict=False)
model.llama_model = ml.LlamaForCausalLM.from_pretrained(tokdir, torch_dtype=torch.float32)
for i, layer in enumerate(model.llama_model.model.layers):
    layer.self_attn = nn.ModuleList([layer.self_attn, ImageAdapter(model.llama_model.config)])
model.llama_proj = nn.Linear(QW, LW)
missing = model.load_state_dict(torch.load(os.path.join(OUT, "ArtGPT-4.pth"))["model"], strict=False)
assert not missing.unexpected_keys, missing.unexpected_keys
model.eval()

# ---------------------------------------------------------------- an image and its preprocessing
yy, xx = np.mgrid[0:45, 0:70]
rgb = np.stack([(xx * 3.6) % 256, (yy * 5.1 + xx) % 256, ((xx - yy) * 7) % 256], -1).astype(np.uint8)
Image.fromarray(rgb).save(os.path.join(OUT, "image.png"))
raw = Image.open(os.path.join(OUT, "image.png")).convert("RGB")
# blip2_image_eval = Resize((S,S), BICUBIC) on the PIL image, ToTensor, Normalize(CLIP mean/std)
resized = raw.resize((IMG, IMG), Image.BICUBIC)
x = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(3, 1, 1)
std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(3, 1, 1)
pixels = ((x - mean) / std).unsqueeze(0)

gold = os.path.join(OUT, "golden")
os.makedirs(gold, exist_ok=True)


def save(name, t):
    np.save(os.path.join(gold, name), t.detach().float().contiguous().numpy().astype("<f4"))


with torch.no_grad():
    # encode_img
    image_embeds = model.ln_vision(model.visual_encoder(pixels))
    q = model.Qformer.bert(query_embeds=model.query_tokens.expand(1, -1, -1),
                           encoder_hidden_states=image_embeds,
                           encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long),
                           return_dict=True).last_hidden_state
    img_emb = model.llama_proj(q)
    save("pixels.npy", pixels[0])
    save("vit.npy", image_embeds[0])
    save("qformer.npy", q[0])
    save("proj.npy", img_emb[0])

    # prompt exactly as Chat builds it (upload_img, ask, answer)
    conv = conv_mod.CONV_VISION.copy() if hasattr(conv_mod.CONV_VISION, "copy") else conv_mod.CONV_VISION
    conv.messages = []
    conv.append_message(conv.roles[0], "<Img><ImageHere></Img>")
    conv.messages[-1][1] = " ".join([conv.messages[-1][1], QUESTION])
    conv.append_message(conv.roles[1], None)
    prompt = conv.get_prompt()
    from transformers import LlamaTokenizer

    tok = LlamaTokenizer.from_pretrained(tokdir, use_fast=False)
    segs = prompt.split("<ImageHere>")
    seg_ids = [tok(s, return_tensors="pt", add_special_tokens=(i == 0)).input_ids for i, s in enumerate(segs)]
    embed = model.llama_model.model.embed_tokens
    embs = torch.cat([embed(seg_ids[0]), img_emb, embed(seg_ids[1])], dim=1)

    # logits of the first generated position, then greedy generation through the
    # original generate path (custom prepare_inputs_for_generation, KV cache)
    logits0 = model.llama_model(inputs_embeds=embs).logits[0, -1]
    save("logits0.npy", logits0)
    stop_ids = [torch.tensor(sp.encode("###")[-1:]), torch.tensor(sp.encode("###"))]
    stopping = conv_mod.StoppingCriteriaList([conv_mod.StoppingCriteriaSub(stops=stop_ids)])
    out = model.llama_model.generate(inputs_embeds=embs, max_new_tokens=MAX_NEW, stopping_criteria=stopping,
                                     num_beams=1, do_sample=False, min_length=1, repetition_penalty=1.0,
                                     length_penalty=1)
    ids = out[0].tolist()
    raw_ids = list(ids)
    if ids and ids[0] == 0:
        ids = ids[1:]
    if ids and ids[0] == 1:
        ids = ids[1:]
    text = tok.decode(ids, add_special_tokens=False).split("###")[0].split("Assistant:")[-1].strip()

with open(os.path.join(gold, "prompt_ids.txt"), "w") as f:
    f.write(" ".join(map(str, seg_ids[0][0].tolist())) + "\n")
    f.write(" ".join(map(str, seg_ids[1][0].tolist())) + "\n")
with open(os.path.join(gold, "ids.txt"), "w") as f:
    f.write(" ".join(map(str, ids)) + "\n")
with open(os.path.join(gold, "text.txt"), "w") as f:
    f.write(text + "\n")
meta = {
    "generator": "make_golden.py", "original_commit": "113cffc", "seed": SEED,
    "torch": torch.__version__, "transformers": __import__("transformers").__version__,
    "numpy": np.__version__, "pillow": Image.__version__, "sentencepiece": spm.__version__,
    "prompt": prompt, "question": QUESTION, "max_new_tokens": MAX_NEW,
    "generate_raw_ids": raw_ids, "stop_ids": [s.tolist() for s in stop_ids],
    "arch": {"image_size": IMG, "patch_size": PATCH, "vision_width": VW, "vision_heads": VHEADS,
             "vision_layers_used": VLAYERS, "vision_layers_stored": VLAYERS + 1,
             "vision_mlp_width": int(VW * MLP_RATIO), "qformer_width": QW, "qformer_layers": QLAYERS,
             "qformer_heads": QHEADS, "qformer_ffn": QFFN, "queries": NQ, "llm_hidden": LW,
             "llm_layers": LLAYERS, "llm_heads": LHEADS, "llm_ffn": LFFN, "vocab": VOCAB,
             "tokenizer_pieces": NPIECES},
    "shapes": {"vit": list(image_embeds.shape[1:]), "qformer": list(q.shape[1:]), "proj": list(img_emb.shape[1:])},
    "adapter_keys_loaded": not any("self_attn.1" in k for k in missing.missing_keys),
}
with open(os.path.join(gold, "meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
print(json.dumps({k: meta[k] for k in ("shapes", "generate_raw_ids")}))
print("text:", text)
