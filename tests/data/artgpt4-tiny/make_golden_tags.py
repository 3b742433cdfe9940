#!/usr/bin/env python3
"""Golden label scores for tagging (`llm` tasks, `artflow tag`), computed with the ORIGINAL model.

Loads the tiny ArtGPT-4 that make_golden.py wrote (nothing is regenerated), assembles it as
MiniGPT4.__init__ does (the same code as make_golden_chat.py), builds each question's prompt with
the original Chat (upload_img, ask, an empty assistant turn, get_context_emb), appends the
candidate label's token embeddings and runs ONE full forward of prompt + label:

    logprob(label) = sum_j log_softmax(logits[P - 1 + j])[label_ids[j]]

where the label's ids are the label text tokenised as its own segment (LlamaTokenizer with
add_special_tokens=False: the dummy prefix, no BOS), P the prompt's positions.  No KV cache, no
sharing: the independent reference for artflow's shared-prefix scoring.  Labels cover one-token,
multi-token and non-ASCII texts (byte-fallback pieces); one question is non-ASCII too; a yes/no
question records the first-token log-probabilities of "Yes"/"yes"/"No"/"no".

Writes golden/tags.json:
  {"generator", "torch", "transformers", "image", "questions": [
     {"question", "prompt", "segments": [[ids before the image], [ids after]], "positions": P,
      "labels": [{"label", "ids", "logprob"}]}]}

    ARTGPT4_SRC=/path/to/ArtGPT-4 /opt/afref/venv/bin/python make_golden_tags.py
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

# the tiny architecture (must equal make_golden.py's)
IMG, PATCH, VW, VHEADS, VLAYERS, MLP_RATIO = 56, 14, 64, 4, 2, 4.3637
QW, QLAYERS, QHEADS, QFFN, NQ = 32, 4, 4, 64, 8

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

# ---------------------------------------------------------------- the questions and labels
QUESTIONS = [
    ("Which art style is this artwork?",
     ["Impressionism", "abstract expressionism", "Ukiyo-e", "Naïve art", "still life", "Art Nouveau",
      "portrait", "夜の川", "Ölgemälde"]),
    ("Which emotion does this artwork evoke?",
     ["awe", "contentment", "sadness", "something else", "fear"]),
    ("Was zeigt das Gemälde « Nuit étoilée »?", ["a river", "Landschaft", "über"]),
    ("Does this artwork show a river? Answer yes or no.", ["Yes", "yes", "No", "no"]),
]


def vis_processor(raw):  # blip2_image_eval: Resize((S,S), BICUBIC), ToTensor, Normalize
    x = torch.from_numpy(np.asarray(raw.resize((IMG, IMG), Image.BICUBIC), dtype=np.float32) / 255.0)
    x = x.permute(2, 0, 1)
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(3, 1, 1)
    return (x - mean) / std


chat = conv_mod.Chat(model, vis_processor, device="cpu")
tok = model.llama_tokenizer
embed = model.llama_model.model.embed_tokens
out = {"generator": "make_golden_tags.py", "original_commit": "113cffc", "torch": torch.__version__,
       "transformers": __import__("transformers").__version__, "image": "image.png", "questions": []}
with torch.no_grad():
    for question, labels in QUESTIONS:
        conv = conv_mod.CONV_VISION.copy()
        conv.messages = []
        img_list = []
        chat.upload_img(os.path.join(HERE, "image.png"), conv, img_list)
        chat.ask(question, conv)
        conv.append_message(conv.roles[1], None)
        prompt = conv.get_prompt()
        segs = [tok(s, return_tensors="pt", add_special_tokens=i == 0).input_ids[0].tolist()
                for i, s in enumerate(prompt.split("<ImageHere>"))]
        embs = chat.get_context_emb(conv, img_list)
        P = embs.shape[1]
        q = {"question": question, "prompt": prompt, "segments": segs, "positions": P, "labels": []}
        for label in labels:
            ids = tok(label, add_special_tokens=False).input_ids
            assert ids, label
            full = torch.cat([embs, embed(torch.tensor([ids]))], dim=1)
            logp = torch.log_softmax(model.llama_model(inputs_embeds=full).logits[0].double(), dim=-1)
            lp = sum(float(logp[P - 1 + j, t]) for j, t in enumerate(ids))
            q["labels"].append({"label": label, "ids": ids, "logprob": lp})
        out["questions"].append(q)
with open(os.path.join(HERE, "golden", "tags.json"), "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
    f.write("\n")
for q in out["questions"]:
    print(q["question"], [(l["label"], len(l["ids"]), round(l["logprob"], 4)) for l in q["labels"]])
