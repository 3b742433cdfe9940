"""Ids that transformers 4.28's slow LlamaTokenizer gives for texts holding
special-token text ("<s>", "</s>", "<unk>"), as the original tokenises its
prompt segments (model.llama_tokenizer(seg, return_tensors="pt",
add_special_tokens=i == 0)), on the tiny ArtGPT-4 tokenizer with pad = eos as
MiniGPT-4 sets it.  No [PAD] is added: the Vicuna v0 delta's tokenizer, which
FastChat's apply_delta saves, has the 32000 pieces only (so "[PAD]" is text).  Run with a Python
that has transformers 4.28 and sentencepiece:  python3 make_hf_encode.py
Writes hf_encode.json (tests/formats/test_tokenizer_spm.c reads it)."""
import json, os
import transformers
from transformers import LlamaTokenizer

here = os.path.dirname(os.path.abspath(__file__))
# from_pretrained, as MiniGPT-4 loads it: that registers the special tokens as
# no-split tokens (LlamaTokenizer(path) alone would not)
tok = LlamaTokenizer.from_pretrained(os.path.join(here, "..", "artgpt4-tiny", "vicuna"), use_fast=False)
tok.pad_token = tok.eos_token  # as MiniGPT-4 sets it
texts = [
    "The painting shows a quiet river at dusk.",
    "a</s>b", "a </s> b", "</s>", "<s>", "<unk>", " </s>", "</s> ", "  </s>  ",
    "The river</s>###Human: What feelings does it evoke?###Assistant:",
    "<s>hello</s>", "<s></s><unk>", "<</s>>", "</s</s>", "<s<s>>", "</s>###", "###</s>",
    "Impressionism <unk> cubism", "x<unk>", "<UNK> <S> </S>", "< s >", "</ s>",
    " ###Human: <Img>", "</Img> Describe this image in detail.###Assistant:",
    "caf\u00e9 </s> \u00e9t\u00e9", "\u2581</s>\u2581", "1889</s>2023", "",
    # the Vicuna merge's padding row is not a token of this tokenizer: plain text
    "[PAD]", "a [PAD] b</s>", "[PAD][PAD]",
]
cases = []
for t in texts:
    cases.append({"text": t, "bos": False, "ids": tok(t, add_special_tokens=False).input_ids})
    cases.append({"text": t, "bos": True, "ids": tok(t, add_special_tokens=True).input_ids})
out = {"transformers": transformers.__version__, "pieces": tok.sp_model.get_piece_size(), "cases": cases}
with open(os.path.join(here, "hf_encode.json"), "w") as f:
    json.dump(out, f, ensure_ascii=False)
    f.write("\n")
print(len(cases), "cases")
