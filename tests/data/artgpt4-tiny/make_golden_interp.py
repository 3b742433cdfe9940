#!/usr/bin/env python3
"""Golden for the ViT at another image size (84 px, a 6x6 grid instead of the
checkpoint's 4x4): the ORIGINAL eva_vit.py builds VisionTransformer(img_size=84),
interpolate_pos_embed() resizes the position grid (torch bicubic, align_corners
False), and ln_vision follows.  Run after make_golden.py, same requirements:
    ARTGPT4_SRC=/path/to/ArtGPT-4 python make_golden_interp.py
Writes golden/pixels84.npy and golden/vit84.npy."""
import importlib.machinery, importlib.util, os, sys, types
import numpy as np
import torch
from PIL import Image

SRC = os.environ["ARTGPT4_SRC"]
HERE = os.path.dirname(os.path.abspath(__file__))


def stub(name, **attrs):
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)
    m.__dict__.update(attrs)
    sys.modules[name] = m


stub("timm"); stub("timm.models")
stub("timm.models.layers", drop_path=lambda x, *a, **k: x, to_2tuple=lambda x: x if isinstance(x, tuple) else (x, x),
     trunc_normal_=torch.nn.init.trunc_normal_)
stub("timm.models.registry", register_model=lambda f: f)
stub("minigpt4"); stub("minigpt4.common"); stub("minigpt4.common.dist_utils", download_cached_file=lambda *a, **k: None)
spec = importlib.util.spec_from_file_location("eva", os.path.join(SRC, "minigpt4/models/eva_vit.py"))
eva = importlib.util.module_from_spec(spec)
spec.loader.exec_module(eva)

S = 84
vit = eva.VisionTransformer(img_size=S, patch_size=14, use_mean_pooling=False, embed_dim=64, depth=2, num_heads=4,
                            mlp_ratio=4.3637, qkv_bias=True, drop_path_rate=0.0,
                            norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6))
sd = torch.load(os.path.join(HERE, "eva_vit_g.pth"), map_location="cpu")
eva.interpolate_pos_embed(vit, sd)
vit.load_state_dict(sd, strict=False)
vit.float().eval()
blip = torch.load(os.path.join(HERE, "blip2_pretrained_flant5xxl.pth"))["model"]
ln = torch.nn.LayerNorm(64)
ln.weight.data, ln.bias.data = blip["ln_vision.weight"], blip["ln_vision.bias"]
raw = Image.open(os.path.join(HERE, "image.png")).convert("RGB").resize((S, S), Image.BICUBIC)
x = torch.from_numpy(np.asarray(raw, dtype=np.float32) / 255.0).permute(2, 0, 1)
mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(3, 1, 1)
std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(3, 1, 1)
pix = ((x - mean) / std).unsqueeze(0)
with torch.no_grad():
    out = ln(vit(pix).float())
np.save(os.path.join(HERE, "golden", "pixels84.npy"), pix[0].numpy().astype("<f4"))
np.save(os.path.join(HERE, "golden", "vit84.npy"), out[0].numpy().astype("<f4"))
print(out.shape)
