#!/usr/bin/env python3
"""Golden multi-turn chat data for `artflow chat`, produced by the ORIGINAL Chat class.

Loads the tiny ArtGPT-4 that make_golden.py wrote (eva_vit_g.pth, blip2_pretrained_flant5xxl.pth,
vicuna/, ArtGPT-4.pth; nothing is regenerated), assembles it as MiniGPT4.__init__ does, and runs
minigpt4/conversation/conversation.py's Chat exactly as demo.py does (CONV_VISION.copy(),
upload_img per image, ask, answer, ask, answer ...), with two deviations needed for a
deterministic, tiny-vocabulary reference:
  * greedy decoding: Chat.answer hard-codes do_sample=True; the model's generate is wrapped to
    pass do_sample=False (everything else as Chat.answer passes it);
  * stop ids: Chat's [835] / [2277, 29937] are the 32000-piece LLaMA ids of "###"; the tiny
    tokenizer's two encodings of "###" are used instead (as make_golden.py does).

Per scenario and turn it writes golden/chat/<scenario>/turn<N>/
  prompt_ids.txt  one line per prompt segment (split at <ImageHere>), BOS on the first only
  ids.txt         the generated ids as Chat.answer returns them (leading 0 / 1 removed)
  answer.txt      the answer text Chat.answer returns (and appends to the conversation)
  info.txt        "positions P begin B": prompt positions before truncation and the
                  max_length truncation start (Chat.answer's begin_idx)
and golden/chat/<scenario>/questions.txt (one question per line) and args.txt (the images and
options the test passes to `artflow chat`).  Also writes image2.png, a second test image.

    ARTGPT4_SRC=/path/to/ArtGPT-4 python make_golden_chat.py
"""
import ast
import contextlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import types

import numpy as np
import torch
from PIL import Image

SRC = os.environ.get("ARTGPT4_SRC")
if not SRC or not os.path.isdir(os.path.join(SRC, "minigpt4")):
    sys.exit("set ARTGPT4_SRC to a checkout of the original ArtGPT-4 repository")
HERE = os.path.dirname(os.path.abspath(__file__))
GOLD = os.path.join(HERE, "golden", "chat")

# the tiny architecture (must equal make_golden.py's)
IMG, PATCH, VW, VHEADS, VLAYERS, MLP_RATIO = 56, 14, 64, 4, 2, 4.3637
QW, QLAYERS, QHEADS, QFFN, NQ = 32, 4, 4, 64, 8
MAX_NEW = 12

# ---------------------------------------------------------------- the original modules
def stub(name, **attrs):
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


stub("timm")
stub("timm.models")
stub("timm.models.layers", drop_path=lambda x, drop_prob=0.0, training=False: x,
     to_2tuple=lambda x: x if isinstance(x, tuple) else (x, x), trunc_normal_=torch.nn.init.trunc_normal_)
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


def exec_node(rel, pred, env):
    """Executes one top-level class, or one method of a class, from the original source."""
    tree = ast.parse(open(os.path.join(SRC, rel)).read())
    for n in tree.body:
        if isinstance(n, ast.ClassDef):
            if pred(n, None):
                node = n
                break
            hit = [m for m in n.body if isinstance(m, ast.FunctionDef) and pred(n, m)]
            if hit:
                node = hit[0]
                break
    exec(compile(ast.Module(body=[node], type_ignores=[]), rel, "exec"), env)
    return env[node.name]


nn = torch.nn
ImageAdapter = exec_node("minigpt4/models/mini_gpt4.py", lambda c, m: m is None and c.name == "ImageAdapter",
                         {"nn": nn, "torch": torch})
LNfp32 = exec_node("minigpt4/models/blip2.py", lambda c, m: m is None and c.name == "LayerNorm",
                   {"nn": nn, "torch": torch})
encode_img = exec_node("minigpt4/models/mini_gpt4.py",
                       lambda c, m: c.name == "MiniGPT4" and m is not None and m.name == "encode_img",
                       {"torch": torch})

# ---------------------------------------------------------------- assemble as MiniGPT4.__init__ does
class Assembled(nn.Module):
    low_resource = False
    device = torch.device("cpu")
    encode_img = encode_img

    def maybe_autocast(self, dtype=torch.float16):
        return contextlib.nullcontext()  # blip2.Blip2Base.maybe_autocast on the CPU


def make_vit(depth):
    return eva.VisionTransformer(img_size=IMG, patch_size=PATCH, use_mean_pooling=False, embed_dim=VW,
                                 depth=depth, num_heads=VHEADS, mlp_ratio=MLP_RATIO, qkv_bias=True,
                                 drop_path_rate=0.0, norm_layer=lambda d: nn.LayerNorm(d, eps=1e-6))


bert_cfg = qf.BertConfig(vocab_size=64, hidden_size=QW, num_hidden_layers=QLAYERS, num_attention_heads=QHEADS,
                         intermediate_size=QFFN, hidden_act="gelu", layer_norm_eps=1e-12,
                         max_position_embeddings=64)
bert_cfg.encoder_width = VW
bert_cfg.add_cross_attention = True
bert_cfg.cross_attention_freq = 2
bert_cfg.query_length = NQ
tokdir = os.path.join(HERE, "vicuna")

model = Assembled()
model.visual_encoder = make_vit(VLAYERS)
vsd = torch.load(os.path.join(HERE, "eva_vit_g.pth"), map_location="cpu")
eva.interpolate_pos_embed(model.visual_encoder, vsd)
model.visual_encoder.load_state_dict(vsd, strict=False)
model.visual_encoder.float()
model.ln_vision = LNfp32(VW)
model.Qformer = qf.BertLMHeadModel(config=bert_cfg)
model.query_tokens = nn.Parameter(torch.zeros(1, NQ, QW))
model.Qformer.cls = None
model.Qformer.bert.embeddings.word_embeddings = None
model.Qformer.bert.embeddings.position_embeddings = None
for layer in model.Qformer.bert.encoder.layer:
    layer.output = None
    layer.intermediate = None
model.load_state_dict(torch.load(os.path.join(HERE, "blip2_pretrained_flant5xxl.pth"))["model"], strict=False)
model.llama_model = ml.LlamaForCausalLM.from_pretrained(tokdir, torch_dtype=torch.float32)
for layer in model.llama_model.model.layers:
    layer.self_attn = nn.ModuleList([layer.self_attn, ImageAdapter(model.llama_model.config)])
model.llama_proj = nn.Linear(QW, LW := model.llama_model.config.hidden_size)
missing = model.load_state_dict(torch.load(os.path.join(HERE, "ArtGPT-4.pth"))["model"], strict=False)
assert not missing.unexpected_keys, missing.unexpected_keys
assert not any("self_attn.1" in k for k in missing.missing_keys)
model.eval()
from transformers import LlamaTokenizer  # noqa: E402

model.llama_tokenizer = LlamaTokenizer.from_pretrained(tokdir, use_fast=False)
import sentencepiece as spm  # noqa: E402

sp = spm.SentencePieceProcessor(model_file=os.path.join(tokdir, "tokenizer.model"))

# ---------------------------------------------------------------- images
yy, xx = np.mgrid[0:40, 0:60]
rgb2 = np.stack([((xx + yy) * 9) % 256, (yy * 11) % 256, (255 - xx * 4) % 256], -1).astype(np.uint8)
Image.fromarray(rgb2).save(os.path.join(HERE, "image2.png"))


def vis_processor(raw):  # blip2_image_eval: Resize((S,S), BICUBIC), ToTensor, Normalize
    x = torch.from_numpy(np.asarray(raw.resize((IMG, IMG), Image.BICUBIC), dtype=np.float32) / 255.0)
    x = x.permute(2, 0, 1)
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(3, 1, 1)
    return (x - mean) / std


# ---------------------------------------------------------------- the original Chat, greedy
chat = conv_mod.Chat(model, vis_processor, device="cpu")
chat.stopping_criteria = conv_mod.StoppingCriteriaList([conv_mod.StoppingCriteriaSub(
    stops=[torch.tensor(sp.encode("###")[-1:]), torch.tensor(sp.encode("###"))])])
_generate = model.llama_model.generate


def greedy_generate(**kw):
    kw["do_sample"] = False
    return _generate(**kw)


model.llama_model.generate = greedy_generate
record = {}
_get_context_emb = chat.get_context_emb


def get_context_emb(conv, img_list):  # records what the original builds, then builds it
    prompt = conv.get_prompt()
    record["prompt"] = prompt
    record["segments"] = [model.llama_tokenizer(s, return_tensors="pt", add_special_tokens=i == 0).input_ids[0].tolist()
                          for i, s in enumerate(prompt.split("<ImageHere>"))]
    embs = _get_context_emb(conv, img_list)
    record["positions"] = embs.shape[1]
    return embs


chat.get_context_emb = get_context_emb

SCENARIOS = [
    # one image, two turns (the demo's flow)
    {"name": "one-image", "images": ["image.png"], "max_length": 2000,
     "questions": ["Describe this image in detail.", "What feelings does the painting evoke?"]},
    # two images: upload_img twice, then the question joins the last image message
    {"name": "two-images", "images": ["image.png", "image2.png"], "max_length": 2000,
     "questions": ["Compare the two paintings.", "Which one is calmer?"]},
    # Chat.answer's max_length truncation: the oldest positions are dropped
    {"name": "truncated", "images": ["image.png"], "max_length": 150,
     "questions": ["Describe this image in detail.", "Could you describe the contents?", "And the colours?"]},
    # Chat.answer's repetition_penalty (greedy too: transformers applies it in greedy_search, and
    # it counts the dummy BOS that generation from inputs_embeds starts with)
    {"name": "penalty", "images": ["image.png"], "max_length": 2000, "repetition_penalty": 1.5,
     "questions": ["Describe this image in detail.", "What feelings does the painting evoke?"]},
    # special-token text in a question: the tokenizer splits "<s>", "</s>", "<unk>" out as their ids
    {"name": "special-text", "images": ["image.png"], "max_length": 2000,
     "questions": ["Describe</s> this <s>image<unk>.", "And </s>the colours?"]},
]
shutil.rmtree(GOLD, ignore_errors=True)
meta = {"generator": "make_golden_chat.py", "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "max_new_tokens": MAX_NEW, "scenarios": []}
with torch.no_grad():
    for sc in SCENARIOS:
        d = os.path.join(GOLD, sc["name"])
        os.makedirs(d)
        conv = conv_mod.CONV_VISION.copy()
        img_list = []
        for im in sc["images"]:
            chat.upload_img(os.path.join(HERE, im), conv, img_list)
        turns = []
        for t, q in enumerate(sc["questions"]):
            chat.ask(q, conv)
            text, ids = chat.answer(conv, img_list, max_new_tokens=MAX_NEW, max_length=sc["max_length"],
                                    repetition_penalty=sc.get("repetition_penalty", 1.0))
            ids = [int(i) for i in ids]
            begin = max(0, record["positions"] + MAX_NEW - sc["max_length"])
            td = os.path.join(d, f"turn{t + 1}")
            os.makedirs(td)
            with open(os.path.join(td, "prompt_ids.txt"), "w") as f:
                for seg in record["segments"]:
                    f.write(" ".join(map(str, seg)) + "\n")
            with open(os.path.join(td, "ids.txt"), "w") as f:
                f.write(" ".join(map(str, ids)) + "\n")
            with open(os.path.join(td, "answer.txt"), "w", encoding="utf-8") as f:
                f.write(text + "\n")
            with open(os.path.join(td, "info.txt"), "w") as f:
                f.write(f"positions {record['positions']} begin {begin}\n")
            turns.append({"prompt": record["prompt"], "answer": text, "positions": record["positions"],
                          "begin": begin})
        with open(os.path.join(d, "questions.txt"), "w") as f:
            f.write("\n".join(sc["questions"]) + "\n")
        with open(os.path.join(d, "args.txt"), "w") as f:
            pen = f" --repetition-penalty {sc['repetition_penalty']}" if "repetition_penalty" in sc else ""
            f.write(" ".join(sc["images"]) + f" --max-length {sc['max_length']}{pen}\n")
        meta["scenarios"].append({**sc, "turns": turns})
with open(os.path.join(GOLD, "meta.json"), "w") as f:
    json.dump(meta, f, indent=1, ensure_ascii=False)
for sc in meta["scenarios"]:
    print(sc["name"], [(t["positions"], t["begin"], t["answer"]) for t in sc["turns"]])
