#!/usr/bin/env python3
"""Tokenizer golden data: ids from Debian's python3-sentencepiece for hostile strings.

Trains a BPE tokenizer with LLaMA's options using Debian's `spm_train` (plus two
user-defined symbols to exercise that path), and records, for that model and for
the tiny ArtGPT-4 model's tokenizer (../artgpt4-tiny/vicuna/tokenizer.model), the ids
sentencepiece gives each test string (no BOS) and its decode of those ids.
Strings are stored as hex so invalid UTF-8 survives.  Run with /usr/bin/python3.
"""
import json
import os
import subprocess

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = """The Starry Night is an oil-on-canvas painting by Vincent van Gogh, painted in June 1889.
La Joconde, ou Portrait de Mona Lisa, est un tableau de Léonard de Vinci réalisé entre 1503 et 1519.
Das Mädchen mit dem Perlenohrring ist ein Gemälde des niederländischen Malers Jan Vermeer.
神奈川沖浪裏は葛飾北斎の浮世絵である。富嶽三十六景の一つ。
清明上河图是北宋画家张择端的作品。
Картина «Чёрный квадрат» Казимира Малевича написана в 1915 году.
El jardín de las delicias es un tríptico pintado al óleo por El Bosco.
Emoji art: 🎨🖼️ 😀 👩‍🎨 — brushes, palettes & frames!
def describe(image): return model.generate(image, max_new_tokens=300)  # code
Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it to you.
###Human: <Img><ImageHere></Img> Describe this image in detail.###Assistant: The painting shows a landscape.
Numbers 0123456789, prices $12.50, dates 2023-05-12, ratios 16:9 and 4.3637.
"""

CASES = [
    "", " ", "  ", "   leading", "trailing   ", "a  b", "a   b  c", "\t", "tab\there", "line\nbreak", "\n\n",
    "crlf\r\nend", "Hello", "hello world", "Hello, World!", "The Starry Night", "van Gogh 1889",
    "1234567890", "3.14159", "2023-05-12", "$12.50", "16:9", "Léonard", "café", "naïve façade",
    "e\u0301", "A\u0300\u0301\u0302", "Mädchen", "Ærøskøbing", "神奈川沖浪裏", "清明上河图", "日本語のテキスト",
    "Чёрный квадрат", "Ελληνικά", "עברית", "العربية", "हिन्दी", "한국어", "🎨", "🖼️", "👩‍🎨", "😀😀😀",
    "mixed 🎨 text 神 and é", "###", "##", "#", " ###", "###Human:", "<Img><ImageHere></Img>", "</Img> Describe",
    "<Img>", "Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it to you. Please answer my questions.###Human: <Img>",
    "</Img> Describe this image in detail.###Assistant:", "def f(x): return x**2", "{\"json\": [1, 2, 3]}",
    "a" * 40, "ab" * 25, "\u2581", "\u2581\u2581x", "\u00a0nbsp", "zero\u200bwidth", "\ufeffbom", "\x00nul",
    "\x7f\x01ctrl", "snake_case_name", "CamelCaseName", "UPPER CASE", "x" + " " * 5 + "y",
]
BYTES = [b"a\xffb", b"\xff", b"\xc3", b"\xe2\x96", b"ok\xc3\x28", b"\xed\xa0\x80x", b"\xf0\x9f\x8e", b"\x80\x80"]


def train(prefix, vocab, user):
    corpus = prefix + ".corpus.txt"
    with open(corpus, "w") as f:
        for _ in range(30):
            f.write(CORPUS)
    args = ["spm_train", f"--input={corpus}", f"--model_prefix={prefix}", "--model_type=bpe",
            f"--vocab_size={vocab}", "--byte_fallback=true", "--split_digits=true", "--add_dummy_prefix=true",
            "--remove_extra_whitespaces=false", "--normalization_rule_name=identity",
            "--character_coverage=0.99995", "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=-1",
            "--minloglevel=2"]
    if user:
        args.append("--user_defined_symbols=" + ",".join(user))
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.remove(corpus)
    os.remove(prefix + ".vocab")


def cases_for(model_path):
    sp = spm.SentencePieceProcessor(model_file=model_path)
    out = []
    for s in CASES:
        ids = sp.encode(s)
        out.append({"hex": s.encode("utf-8").hex(), "ids": ids, "decoded": sp.decode(ids)})
    for b in BYTES:
        ids = sp.encode(b)
        out.append({"hex": b.hex(), "ids": ids, "decoded": sp.decode(ids)})
    return out, sp.get_piece_size()


train(os.path.join(HERE, "llama-like"), 1200, ["<Img>", "</Img>"])
result = {"generator": "make_fixtures.py", "sentencepiece": spm.__version__, "models": {}}
for name, path in [("llama-like.model", os.path.join(HERE, "llama-like.model")),
                   ("../artgpt4-tiny/vicuna/tokenizer.model",
                    os.path.join(HERE, "..", "artgpt4-tiny", "vicuna", "tokenizer.model"))]:
    cases, n = cases_for(path)
    result["models"][name] = {"pieces": n, "cases": cases}
with open(os.path.join(HERE, "expected.json"), "w") as f:
    json.dump(result, f, indent=0, ensure_ascii=True)
print({k: len(v["cases"]) for k, v in result["models"].items()})
