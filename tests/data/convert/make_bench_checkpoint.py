#!/usr/bin/env python3
"""Random Vicuna-shaped HF folder for measuring `artflow convert` throughput
(not committed: ~1.9 GB).  LLaMA layout, fp16, two torch.save shards + index,
config.json, and the tiny test tokenizer.model; plus a MiniGPT-4-style
checkpoint holding only llama_proj.  Vision/Q-Former come from
tests/data/artgpt4-tiny (the time is all in the LLM).

    /usr/bin/python3 make_bench_checkpoint.py OUT_DIR [hidden layers ffn vocab]
    artflow convert --arch tests/data/convert/minigpt4-tiny.yaml \
        --vit tests/data/artgpt4-tiny/eva_vit_g.pth \
        --qformer tests/data/artgpt4-tiny/blip2_pretrained_flant5xxl.pth \
        --llm OUT_DIR/vicuna --adapter OUT_DIR/minigpt4.pth -o out.gguf --type f16
Made with Debian python3-torch 1.13.
"""
import json, os, shutil, sys
import torch

out = sys.argv[1]
H, L, F, V = (int(x) for x in (sys.argv[2:6] if len(sys.argv) > 5 else (2048, 16, 5504, 32001)))
here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(out, "vicuna"), exist_ok=True)
torch.manual_seed(0)
def r(*s):
    return (torch.randn(*s) * 0.02).half()
shards = [{}, {}]
shards[0]["model.embed_tokens.weight"] = r(V, H)
for i in range(L):
    d = shards[0 if i < L // 2 else 1]
    p = f"model.layers.{i}."
    for n in ("q", "k", "v", "o"):
        d[p + f"self_attn.{n}_proj.weight"] = r(H, H)
    d[p + "mlp.gate_proj.weight"] = r(F, H)
    d[p + "mlp.up_proj.weight"] = r(F, H)
    d[p + "mlp.down_proj.weight"] = r(H, F)
    d[p + "input_layernorm.weight"] = torch.ones(H).half()
    d[p + "post_attention_layernorm.weight"] = torch.ones(H).half()
shards[1]["model.norm.weight"] = torch.ones(H).half()
shards[1]["lm_head.weight"] = r(V, H)
index = {"metadata": {}, "weight_map": {}}
for k, d in enumerate(shards):
    name = f"pytorch_model-0000{k+1}-of-00002.bin"
    torch.save(d, os.path.join(out, "vicuna", name))
    for key in d:
        index["weight_map"][key] = name
json.dump(index, open(os.path.join(out, "vicuna", "pytorch_model.bin.index.json"), "w"))
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
           "num_hidden_layers": L, "num_attention_heads": H // 128, "intermediate_size": F,
           "vocab_size": V, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
           "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "float16"},
          open(os.path.join(out, "vicuna", "config.json"), "w"))
shutil.copy(os.path.join(here, "..", "artgpt4-tiny", "vicuna", "tokenizer.model"), os.path.join(out, "vicuna"))
torch.save({"model": {"llama_proj.weight": torch.randn(H, 32) * 0.02, "llama_proj.bias": torch.zeros(H)}},
           os.path.join(out, "minigpt4.pth"))
