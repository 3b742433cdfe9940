"""ArtGPT-4-override.pth: the tiny ArtGPT-4.pth plus two LLM tensors that the
original's load_state_dict(strict=False) would put over Vicuna's (a final
norm gain and layer 0's q_proj, under ArtGPT-4's Sequential name
self_attn.0).  Run with a Python that has torch:  python3 make_override.py"""
import os
import torch

here = os.path.dirname(os.path.abspath(__file__))
d = torch.load(os.path.join(here, "ArtGPT-4.pth"), map_location="cpu")
g = torch.Generator().manual_seed(7)
d["model"]["llama_model.model.norm.weight"] = 1.0 + 0.1 * torch.randn(64, generator=g)
d["model"]["llama_model.model.layers.0.self_attn.0.q_proj.weight"] = 0.05 * torch.randn(64, 64, generator=g)
torch.save(d, os.path.join(here, "ArtGPT-4-override.pth"))
