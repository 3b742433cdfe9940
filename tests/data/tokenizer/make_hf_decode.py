"""Expected texts of transformers 4.28's slow LlamaTokenizer.decode (as
MiniGPT-4's Chat.answer calls it) for id lists with special and added tokens,
on the tiny ArtGPT-4 tokenizer plus an added "[PAD]" (the Vicuna merge's
id after the sentencepiece pieces).  Run with a Python that has
transformers 4.28 and sentencepiece:  python3 make_hf_decode.py
Writes hf_decode.json (tests/formats/test_tokenizer_spm.c reads it)."""
import json, os, random
import transformers
from transformers import LlamaTokenizer

here = os.path.dirname(os.path.abspath(__file__))
model = os.path.join(here, "..", "artgpt4-tiny", "vicuna", "tokenizer.model")
tok = LlamaTokenizer(model)
tok.pad_token = tok.eos_token  # as MiniGPT-4 sets it
n = tok.sp_model.get_piece_size()
tok.add_tokens(["[PAD]"])
pad = tok.convert_tokens_to_ids("[PAD]")
assert pad == n, (pad, n)
words = tok.sp_model.encode("The painting shows a quiet river at dusk, in muted blues.")
rng = random.Random(5)
cases = [
    words, [1] + words, words + [2], words[:3] + [2] + words[3:], [0] + words, words[:2] + [0, 0] + words[2:],
    [1, 2], [2, 1, 0], [], [1], words[:4] + [pad] + words[4:], [pad], [pad, pad], [pad] + words + [2, pad],
    words[:3] + [1, pad, 2] + words[3:6],
]
for _ in range(20):
    cases.append([rng.choice([0, 1, 2, pad] + words + list(range(3, n))) for _ in range(rng.randint(1, 12))])
out = {"transformers": transformers.__version__, "pieces": n, "pad": pad,
       "cases": [{"ids": c, "text": tok.decode(c, add_special_tokens=False)} for c in cases]}
with open(os.path.join(here, "hf_decode.json"), "w") as f:
    json.dump(out, f, ensure_ascii=False)
    f.write("\n")
print(len(cases), "cases")
