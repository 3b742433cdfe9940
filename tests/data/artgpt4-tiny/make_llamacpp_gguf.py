#!/usr/bin/env python3
"""The tiny Vicuna (tests/data/artgpt4-tiny/vicuna, made by make_golden.py) as llama.cpp's
convert_hf_to_gguf.py writes a LLaMA model, for artflow's two-file model tests
(`--model vision.gguf --llm vicuna-llamacpp-f16.gguf`).

What is reproduced from llama.cpp's converter (written here from its documented behaviour,
using PyPI's `gguf` package, the writer llama.cpp itself ships):
  * tensor names token_embd / blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,
    ffn_gate,ffn_up,ffn_down} / output_norm / output;
  * q and k rows permuted for llama.cpp's interleaved RoPE pairs:
    w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols);
  * f16 matrices, f32 1-D tensors (norm gains), general.file_type = 1 (MOSTLY_F16);
  * llama.* hyper-parameters and the SentencePiece vocabulary as tokenizer.ggml.{model,tokens,
    scores,token_type,bos/eos/unknown_token_id,add_bos_token,add_eos_token}; embedding rows
    beyond the tokenizer's pieces (FastChat's [PAD]) named "[PAD<i>]" with type UNUSED as the
    converter does when the folder has no added_tokens.json;
  * no artflow.* keys (artflow reads this as llama.cpp RoPE layout).

Requirements (not needed by CI): python3 with torch, numpy, sentencepiece and `pip install gguf`
(0.19.0 used).

    python make_llamacpp_gguf.py [VICUNA_DIR] [OUT.gguf] [f16|q8_0|q4_0]

With q8_0 / q4_0 the 2-D matrices whose rows are whole 32-element blocks are quantised with the
`gguf` package's reference quantiser (llama.cpp's block formats); the others stay f16, as
llama.cpp's fallback does.  Only the f16 file is committed.
"""
import json
import os
import sys

import numpy as np
import sentencepiece as spm
import torch
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "vicuna")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "vicuna-llamacpp-f16.gguf")
QTYPE = sys.argv[3] if len(sys.argv) > 3 else "f16"
FTYPE = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
         "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[QTYPE]

cfg = json.load(open(os.path.join(SRC, "config.json")))
index = json.load(open(os.path.join(SRC, "pytorch_model.bin.index.json")))
state = {}
for shard in sorted(set(index["weight_map"].values())):
    state.update(torch.load(os.path.join(SRC, shard), map_location="cpu"))

H, L, NH = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
NKV = cfg.get("num_key_value_heads", NH)
V = cfg["vocab_size"]


def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


w = gguf.GGUFWriter(OUT, "llama")
w.add_name("vicuna-tiny")
w.add_context_length(cfg["max_position_embeddings"])
w.add_embedding_length(H)
w.add_block_count(L)
w.add_feed_forward_length(cfg["intermediate_size"])
w.add_rope_dimension_count(H // NH)
w.add_head_count(NH)
w.add_head_count_kv(NKV)
w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
w.add_file_type(FTYPE)

sp = spm.SentencePieceProcessor(model_file=os.path.join(SRC, "tokenizer.model"))
tokens = [f"[PAD{i}]".encode() for i in range(V)]
scores = [-1000.0] * V
types = [gguf.TokenType.UNUSED] * V
for i in range(sp.get_piece_size()):
    tokens[i] = sp.id_to_piece(i).encode("utf-8")
    scores[i] = sp.get_score(i)
    t = gguf.TokenType.NORMAL
    if sp.is_unknown(i):
        t = gguf.TokenType.UNKNOWN
    elif sp.is_control(i):
        t = gguf.TokenType.CONTROL
    elif sp.is_unused(i):
        t = gguf.TokenType.UNUSED
    elif sp.is_byte(i):
        t = gguf.TokenType.BYTE
    types[i] = t
w.add_tokenizer_model("llama")
w.add_tokenizer_pre("default")
w.add_token_list(tokens)
w.add_token_scores(scores)
w.add_token_types(types)
w.add_bos_token_id(sp.bos_id())
w.add_eos_token_id(sp.eos_id())
w.add_unk_token_id(sp.unk_id())
w.add_add_bos_token(True)
w.add_add_eos_token(False)


def put(name, t):
    a = t.float().numpy()
    if a.ndim == 2 and QTYPE != "f16" and a.shape[1] % 32 == 0 and name != "token_embd.weight":
        qt = gguf.GGMLQuantizationType.Q8_0 if QTYPE == "q8_0" else gguf.GGMLQuantizationType.Q4_0
        w.add_tensor(name, gguf.quants.quantize(a.astype(np.float32), qt), raw_dtype=qt)
        return
    w.add_tensor(name, a.astype(np.float16) if a.ndim == 2 else a.astype(np.float32))


put("token_embd.weight", state["model.embed_tokens.weight"])
for i in range(L):
    p = f"model.layers.{i}."
    put(f"blk.{i}.attn_norm.weight", state[p + "input_layernorm.weight"])
    put(f"blk.{i}.attn_q.weight", permute(state[p + "self_attn.q_proj.weight"], NH))
    put(f"blk.{i}.attn_k.weight", permute(state[p + "self_attn.k_proj.weight"], NKV))
    put(f"blk.{i}.attn_v.weight", state[p + "self_attn.v_proj.weight"])
    put(f"blk.{i}.attn_output.weight", state[p + "self_attn.o_proj.weight"])
    put(f"blk.{i}.ffn_norm.weight", state[p + "post_attention_layernorm.weight"])
    put(f"blk.{i}.ffn_gate.weight", state[p + "mlp.gate_proj.weight"])
    put(f"blk.{i}.ffn_up.weight", state[p + "mlp.up_proj.weight"])
    put(f"blk.{i}.ffn_down.weight", state[p + "mlp.down_proj.weight"])
put("output_norm.weight", state["model.norm.weight"])
put("output.weight", state["lm_head.weight"])

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(OUT, os.path.getsize(OUT), "bytes")
