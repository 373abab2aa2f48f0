#!/usr/bin/python3
"""WordPiece (BERT) tokenizer fixtures for tests/unit/test_wordpiece.cpp.

Run with /usr/bin/python3 from the repository root (needs the `regex` module and Debian's
unicode-data package):

    /usr/bin/python3 tools/make_wordpiece_fixtures.py

It builds a small BERT-style vocabulary from the corpus below (specials, every character alone and
as a "##" continuation, frequent words, a few prefixes and suffixes; some characters left out on
purpose so that words containing them become [UNK]) and writes, under tests/data/tokenizer/:

  wordpiece/              tokenizer.json + tokenizer_config.json + special_tokens_map.json, shaped
                          like BLIP's (uncased BertNormalizer, [CLS] $A [SEP], [DEC] and [ENC]
                          appended after the vocab as special added tokens)
  wordpiece_files/        the same tokenizer as vocab.txt + tokenizer_config.json +
                          special_tokens_map.json only (BertTokenizerFast builds the pipeline)
  wordpiece_cased/        cased tokenizer.json: no accent stripping, no CJK spacing,
                          max_input_chars_per_word 20, BertProcessing, flagged added tokens
  wordpiece_override/     the uncased tokenizer.json with a tokenizer_config.json whose
                          do_lower_case / strip_accents / tokenize_chinese_chars replace the
                          normalizer's (BertTokenizerFast does that), decoder cleanup off
  wordpiece_cased_files/  cased vocab.txt (CRLF line ends) + tokenizer_config.json +
                          special_tokens_map.json + added_tokens.json
  wordpiece_expected.json encodings and decodings of hostile strings by the reference
                          tools/xcaption_ref/wordpiece.py, plus Unicode class / NFD samples

Deterministic: a rerun rewrites identical files.
"""
import collections
import json
import os
import random
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from xcaption_ref import hf_unicode  # noqa: E402
from xcaption_ref import wordpiece as wp  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")

CORPUS = """\
a picture of a dog sitting on the grass. a picture of a cat on a couch. a photo of a man riding
a bike down the street. there is a woman holding an umbrella in the rain. two dogs are playing
with a ball in the park. a close up of a plate of food with broccoli and rice. a group of people
standing around a table. the quick brown fox jumps over the lazy dog. it's a dog's life, isn't it?
they're walking, we've seen it, I'm sure you'd like it. The Quick Brown Fox! THE END? Running,
jumping, playing, sitting, standing, walking, looking, holding, eating, riding, flying.
A small red car is parked next to a large building. Several birds are flying over the ocean.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14 1,000 and 99% of the time (maybe) [often].
Prices: $5 or €10; e-mail me@example.com — "quoted" 'single' «guillemets» ¿qué? ¡sí! ...
Café naïve résumé façade Ångström Zürich São Paulo Tiếng Việt Ελληνικά Русский текст привет.
日本語のテキストです。東京は大きな都市です。中文文本也在这里。你好，世界！
한국어 텍스트 안녕하세요 세계. नमस्ते दुनिया हिन्दी. مرحبا بالعالم. สวัสดีครับ.
Emoji 😀 👍 ❤ 🎉 and symbols © ™ ° ± × ÷ § ¶ • … ‰ ′ ″.
"""

# Left out of every vocabulary: words containing them can only be [UNK].
EXCLUDED_CHARS = {"ж", "ø"}
# Present as a first piece only, never as "##x": a word with it after its first piece is [UNK].
EXCLUDED_CONTINUATIONS = {"q", "Q", "z"}
SUFFIXES = ["ing", "ed", "er", "ly", "s", "es", "est", "ness", "tion", "'s"]
BERT_SPECIALS = ["[PAD]", "[unused0]", "[unused1]", "[unused2]", "[unused3]", "[UNK]", "[CLS]",
                 "[SEP]", "[MASK]"]
EXTRA_TOKENS = ["##", "###", "#", "##a##", "do", "not", "n", "t", "hello", "world", "Hello",
                "World", "\u2e42", "\u2e43", "\U0001e95e", "\u166d", "\U000111c9", "##x", "##e",
                "\u1734", "##\u1734", "\u1885", "##\u1886"]


def build_vocab(lowercase):
    norm = wp.BertNormalizer(lowercase=lowercase, strip_accents=None, handle_chinese_chars=True)
    words = collections.Counter(wp.bert_pre_tokenize(norm(CORPUS)))
    tokens = list(BERT_SPECIALS)
    seen = set(tokens)

    def add(t):
        if t not in seen:
            seen.add(t)
            tokens.append(t)

    chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    for c in chars:
        if c not in EXCLUDED_CHARS:
            add(c)
    for c in chars:
        if c not in EXCLUDED_CHARS and c not in EXCLUDED_CONTINUATIONS:
            add("##" + c)
    for w, n in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
        if (n >= 2 or len(w) <= 4) and not (set(w) & EXCLUDED_CHARS):
            add(w)
    for s in SUFFIXES:
        add("##" + s)
    for w in sorted(words):
        if len(w) >= 7 and not (set(w) & EXCLUDED_CHARS):
            add(w[:4])
            add("##" + w[4:7])
    for t in EXTRA_TOKENS:
        add(t)
    return {t: i for i, t in enumerate(tokens)}


# ---------------------------------------------------------------------------------------------
# Hostile inputs

LONG = "supercalifragilisticexpialidocious"
HOSTILE = [
    "",
    "a picture of",
    "A Picture OF",
    "a picture of a dog sitting on the grass.",
    "The quick brown fox jumps over the lazy dog!",
    "running jumped walker quickly happiness",
    "unbelievable xylophone zzz quiz",          # unknown pieces, z/q without continuation
    "pizza quiz Qatar",
    "жук and ødegaard",                         # excluded characters: whole word [UNK]
    "  leading and trailing spaces  ",
    "   ",
    "\t\n\r\n",
    "tabs\tand\nnewlines\r\nend",
    "a\u00a0b\u2003c\u3000d\u202fe\u205ff\u1680g",
    "x\u2028y\u2029z\u0085w",
    "vt\x0bff\x0cfs\x1cgs\x1drs\x1eus\x1f.",
    "nul\x00bel\x07esc\x1bdel\x7f c1\x80\x9f",
    "zero\u200bwidth\u200cnon\u200djoiner \ufeffbom \u00adsoft\u00adhyphen",
    "repl\ufffdacement \ue000private \U000f0000plane15",
    "\u180emongolian\u180evs \u061carabic mark",
    "Café naïve résumé façade Ångström Zürich",
    "e\u0301 cafe\u0301 A\u030a o\u0308\u0301 a\u0323\u0302",   # decomposed accents
    "\u1ebf\u1ec7 Ti\u1ebfng Vi\u1ec7t \u01d5 \u1e69",          # several marks, canonical order
    "q\u0307\u0323 q\u0323\u0307 a\u0301\u0316\u0300",          # reordering by combining class
    "Z\u0324\u0354\u0367\u0311\u0313a\u0308\u0356\u032d\u0308\u0307l\u036e\u0312\u036b",
    "\u212b \u2126 \u0958 \u0929 \u1f82 \u0344 \u0f73",          # singletons, nukta, multi-level
    "ΟΔΟΣ ΣΊΣΥΦΟΣ σοφός Ελληνικά",
    "İstanbul ẞ straße ǅungla ﬁne ﬀ",
    "Русский текст: привет, мир!",
    "日本語のテキストです。東京は大きな都市です。",
    "中文文本也在这里。你好，世界！",
    "\u3400\u4dbf\u4e00\u9fff\uf900\ufaff \U00020000\U0002a6df \U0002a700 \U0002b740\U0002b81f",
    "\U0002b820\U0002b91f edge \U0002b920\U0002ceaf \U0002f800\U0002fa1f \U00030000",
    "한국어 텍스트 안녕하세요 세계",
    "\u1100\u1161\u11a8 jamo \uac00\ud7a3",
    "नमस्ते दुनिया हिन्दी क्षत्रिय",
    "مرحبا بالعالم مَرْحَبًا",
    "สวัสดีครับ",
    "Emoji 😀 👍🏽 ❤️ 🎉 👨‍👩‍👧 🏳️‍🌈",
    "symbols © ™ ° ± × ÷ § ¶ • … ‰ € $ £ ¥",
    "ascii $+<=>^`|~ symbols #@%&*",
    "Price: $5.99!!! (50% off)... really?!?",
    "--- ___ *** ... ,,, ;;; ::",
    "¿qué? ¡sí! «guillemets» “curly” ‘single’ „low“ — – ‐",
    "、。「」『』【】〜・：！？",
    "a\u2e42b\u2e43c \U0001e95e\u166dd\U000111c9e \u2e42\u2e43",  # P* in 8.0 or only later
    "\u0898a\u0899 \u1abf\u1ac0 \u08d3x",                       # marks newer than 8.0 / 9.0
    "\u1734x \u1885\u1886 \ua9bd \u00e1\u1734",                    # categories changed after 8.0
    "don't can't won't it's I'm they're we've you'd",
    "a dog's life, isn't it?",
    "e-mail me@example.com http://example.com/a_b?c=d&e=f#g",
    "3.14 1,000 99% 2024-01-01 10:30",
    "## ### #### a##b ##ing x##",
    "[CLS] a picture of [SEP]",
    "[CLS][SEP][PAD][MASK][UNK]",
    "hello[MASK]world",
    "[cls] [Cls] [CLS [SEP",
    "[DEC] a photo [ENC] of",
    "[dec] lower [enc]",
    "x[DEC]y[ENC]z",
    "Hello World and hello world",
    "HelloWorld Hello Worlds",
    "do not do  not DO NOT",
    "<mask> a <mask>b a   <mask>",
    "[unused0] [unused3]",
    LONG,
    LONG * 3,                                   # 102 characters: over 100
    "a" * 100,
    "a" * 101,
    "é" * 100 + " " + "é" * 101,                # characters, not bytes, are counted
    "abcdefghijklmnoprstu abcdefghijklmnoprstuv",  # 20 and 21: the cased limit
    "the " * 40,
]


def decode_token_lists():
    """Token strings per decode case; each tokenizer maps them to its ids (missing ones dropped)."""
    return [
        [],
        ["a", "picture", "of"],
        ["[CLS]", "a", "picture", "of", "[SEP]"],
        ["[DEC]", "a", "picture", "of", "a", "dog", "[SEP]", "[PAD]", "[PAD]"],
        ["##ing", "the", "##s"],                 # a leading continuation keeps its prefix
        ["run", "##ning", "##s", "walk", "##ed"],
        ["the", ".", "dog", ",", "'", "s", "?", "!", "."],
        ["it", "'", "s", "a", "dog", "'", "s", "life"],
        ["isn", "'", "t", "it", "?"],
        ["do", "not", "n", "'", "t"],
        ["##", "##", "###", "##a##", "#", "#"],
        ["[UNK]", "[UNK]", "the", "[MASK]"],
        ["[unused0]", "a", "[unused3]"],
        ["[ENC]", "[CLS]", "[SEP]"],
        ["hello", "World", "Hello", "world"],
        ["n't", "do not", "Hello World", "<mask>"],
        ["a", "n't", "do not", "b", "<mask>", "c", "Hello World"],
        ["日", "本", "語", "の", "##テ", "##キ"],
        ["(", "maybe", ")", "[", "often", "]"],
    ]


def ids_for(tok, tokens):
    table = {s: i for i, s in tok.id_to_token.items()}
    return [table[t] for t in tokens if t in table]


def expected_for(tok, texts):
    enc = [{"text": t, "ids": tok.encode(t, False), "ids_with_special": tok.encode(t, True)}
           for t in texts]
    decode_ids = [ids_for(tok, tl) for tl in decode_token_lists()]
    decode_ids += [tok.encode(t, True) for t in texts[:40]]
    decode_ids += [[tok.size + 5] + tok.encode("a dog") + [-1, tok.size]]  # ids without a token
    dec = [{"ids": ids, "text": tok.decode(ids, False), "text_skip_special": tok.decode(ids, True)}
           for ids in decode_ids]
    return {"kind": "wordpiece", "vocab_size": tok.size, "special_ids": tok.special_ids,
            "encode": enc, "decode": dec}


# ---------------------------------------------------------------------------------------------
# Writers


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def write_compact(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def write_vocab_txt(path, vocab, newline="\n"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    assert [i for _, i in by_id] == list(range(len(by_id)))
    with open(path, "w", encoding="utf-8", newline="") as f:
        for t, _ in by_id:
            f.write(t + newline)


def dump_lines(obj, indent=0):
    """JSON with every list item of a list of objects on a line of its own."""
    pad = " " * indent
    if isinstance(obj, dict) and any(isinstance(v, (dict, list)) for v in obj.values()):
        items = [f"{pad} {json.dumps(k, ensure_ascii=False)}: {dump_lines(v, indent + 1).lstrip()}"
                 for k, v in obj.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and isinstance(obj[0], (dict, list)):
        items = [pad + " " + json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in obj]
        return pad + "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return pad + json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def added(content, id_, special=True, normalized=None, single_word=False, lstrip=False,
          rstrip=False):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": (not special) if normalized is None else normalized,
            "special": special}


def bert_normalizer(lowercase, strip_accents, chinese):
    return {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": chinese,
            "strip_accents": strip_accents, "lowercase": lowercase}


def template(cls_id, sep_id):
    return {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 1}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
        "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [cls_id], "tokens": ["[CLS]"]},
                           "[SEP]": {"id": "[SEP]", "ids": [sep_id], "tokens": ["[SEP]"]}},
    }


def tokenizer_json(vocab, added_tokens, normalizer, post, decoder, max_chars=100):
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added_tokens,
        "normalizer": normalizer,
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": post,
        "decoder": decoder,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": max_chars, "vocab": vocab},
    }


def main():
    report = []
    uncased = build_vocab(lowercase=True)
    cased = build_vocab(lowercase=False)
    n_uncased = len(uncased)
    n_cased = len(cased)
    report.append(f"vocab: {n_uncased} uncased tokens, {n_cased} cased tokens")

    # ---- wordpiece/ (BLIP-shaped) and wordpiece_files/ ----
    specials = [added(t, uncased[t]) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    blip_added = specials + [added("[DEC]", n_uncased), added("[ENC]", n_uncased + 1)]
    uncased_json = tokenizer_json(uncased, blip_added, bert_normalizer(True, None, True),
                                  template(uncased["[CLS]"], uncased["[SEP]"]),
                                  {"type": "WordPiece", "prefix": "##", "cleanup": True})
    blip_config = {"cls_token": "[CLS]", "do_basic_tokenize": True, "do_lower_case": True,
                   "mask_token": "[MASK]", "model_max_length": 512, "never_split": None,
                   "pad_token": "[PAD]", "sep_token": "[SEP]", "strip_accents": None,
                   "tokenize_chinese_chars": True, "tokenizer_class": "BertTokenizer",
                   "unk_token": "[UNK]", "bos_token": "[DEC]",
                   "additional_special_tokens": ["[ENC]"]}
    blip_map = {"bos_token": "[DEC]", "cls_token": "[CLS]", "mask_token": "[MASK]",
                "pad_token": "[PAD]", "sep_token": "[SEP]", "unk_token": "[UNK]",
                "additional_special_tokens": ["[ENC]"]}
    write_compact(os.path.join(OUT, "wordpiece", "tokenizer.json"), uncased_json)
    write_json(os.path.join(OUT, "wordpiece", "tokenizer_config.json"), blip_config)
    write_json(os.path.join(OUT, "wordpiece", "special_tokens_map.json"), blip_map)
    write_vocab_txt(os.path.join(OUT, "wordpiece_files", "vocab.txt"), uncased)
    write_json(os.path.join(OUT, "wordpiece_files", "tokenizer_config.json"), blip_config)
    write_json(os.path.join(OUT, "wordpiece_files", "special_tokens_map.json"), blip_map)

    # ---- wordpiece_cased/ ----
    n = n_cased
    cased_added = [added(t, cased[t]) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    cased_added += [added("n't", n, special=False, normalized=False),
                    added("do not", n + 1, special=False, normalized=True),
                    added("Hello World", n + 2, special=False, normalized=True, single_word=True),
                    added("<mask>", n + 3, special=True, lstrip=True, rstrip=True)]
    write_compact(os.path.join(OUT, "wordpiece_cased", "tokenizer.json"), tokenizer_json(
        cased, cased_added, bert_normalizer(False, None, False),
        {"type": "BertProcessing", "sep": ["[SEP]", cased["[SEP]"]], "cls": ["[CLS]", cased["[CLS]"]]},
        {"type": "WordPiece", "prefix": "##", "cleanup": True}, max_chars=20))

    # ---- wordpiece_override/ ----
    override_json = json.loads(json.dumps(uncased_json))
    override_json["decoder"]["cleanup"] = False
    write_compact(os.path.join(OUT, "wordpiece_override", "tokenizer.json"), override_json)
    write_json(os.path.join(OUT, "wordpiece_override", "tokenizer_config.json"),
               {"do_lower_case": False, "strip_accents": True, "tokenize_chinese_chars": False,
                "tokenizer_class": "BertTokenizer", "model_max_length": 512})

    # ---- wordpiece_cased_files/ ----
    d = os.path.join(OUT, "wordpiece_cased_files")
    write_vocab_txt(os.path.join(d, "vocab.txt"), cased, newline="\r\n")
    write_json(os.path.join(d, "tokenizer_config.json"),
               {"do_lower_case": False, "tokenize_chinese_chars": False, "model_max_length": 512,
                "tokenizer_class": "BertTokenizer", "unk_token": "[UNK]"})
    write_json(os.path.join(d, "special_tokens_map.json"),
               {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                "mask_token": {"content": "<mask>", "lstrip": True, "rstrip": False,
                               "normalized": False, "single_word": False},
                "bos_token": "[DEC]"})
    write_json(os.path.join(d, "added_tokens.json"), {"[DEC]": n, "Hello World": n + 1})

    # ---- expected outputs ----
    names = {
        "wordpiece": ["wordpiece", "wordpiece_files"],
        "wordpiece_cased": ["wordpiece_cased"],
        "wordpiece_override": ["wordpiece_override"],
        "wordpiece_cased_files": ["wordpiece_cased_files"],
    }
    tokenizers = {}
    for name, dirs in names.items():
        toks = [wp.load(os.path.join(OUT, x)) for x in dirs]
        exp = expected_for(toks[0], HOSTILE)
        for other, x in zip(toks[1:], dirs[1:]):  # the layouts must agree in the reference too
            assert expected_for(other, HOSTILE) == exp, x
        tokenizers[name] = dict(dirs=dirs, **exp)
        unk = toks[0].model.vocab["[UNK]"]
        n_unk = sum(c["ids"].count(unk) for c in exp["encode"])
        report.append(f"{name}: vocab_size {exp['vocab_size']}, {len(exp['encode'])} encodings "
                      f"({n_unk} [UNK]), {len(exp['decode'])} decodings")

    norm_cases = []
    configs = {"uncased": wp.BertNormalizer(True, True, None, True),
               "cased": wp.BertNormalizer(True, False, None, False),
               "strip_only": wp.BertNormalizer(True, False, True, False),
               "raw": wp.BertNormalizer(False, True, None, True)}
    for t in HOSTILE:
        entry = {"text": t}
        for key, norm in configs.items():
            entry[key] = norm(t)
        entry["pieces"] = wp.bert_pre_tokenize(t)
        norm_cases.append(entry)

    # Code point sample: flags P punctuation, C control, M nonspacing mark, J CJK, S whitespace;
    # and NFD of a sample of decomposable characters and of mark sequences.
    rng = random.Random(1234)
    sample = set(range(0, 0x300)) | {0x85, 0xA0, 0x1680, 0x180E, 0x200B, 0x2028, 0x2029, 0x202F,
                                     0x2E42, 0x2E43, 0x1E95E, 0x111C9, 0x166D, 0x1734, 0x1885,
                                     0xA9BD, 0x0898, 0x1ABF, 0xE000, 0xF8FF, 0xF0000, 0x10FFFD,
                                     0x4E00, 0x9FFF, 0x2B81F, 0x2B820, 0x2B91F, 0x2B920, 0xFFFD,
                                     0xFEFF, 0x061C, 0x0600, 0x110BD, 0xE0001, 0x1D173}
    while len(sample) < 3000:
        cp = rng.randrange(0x110000)
        if not 0xD800 <= cp <= 0xDFFF:
            sample.add(cp)
    classes = []
    for cp in sorted(sample):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        flags = ""
        flags += "P" if hf_unicode.is_bert_punctuation(cp) else ""
        flags += "C" if hf_unicode.is_bert_control(cp) else ""
        flags += "M" if hf_unicode.is_nonspacing_mark(cp) else ""
        flags += "J" if hf_unicode.is_chinese_char(cp) else ""
        flags += "S" if hf_unicode.is_whitespace(cp) else ""
        classes.append([cp, flags])
    decomposable = [cp for cp in range(0x110000)
                    if not 0xD800 <= cp <= 0xDFFF and hf_unicode.nfd(chr(cp)) != chr(cp)]
    nfd_sample = sorted(rng.sample(decomposable, 600))
    nfd_cases = [[chr(cp), hf_unicode.nfd(chr(cp))] for cp in nfd_sample]
    for t in HOSTILE:
        nfd_cases.append([t, hf_unicode.nfd(t)])
    report.append(f"classes: {len(classes)} code points; nfd: {len(decomposable)} decomposable, "
                  f"{len(nfd_cases)} cases")

    expected = {
        "unicode": {"unicodedata": unicodedata.unidata_version,
                    "bert_classes": "%d.%d" % hf_unicode.CATEGORY_VERSION,
                    "nfd": "%d.%d" % hf_unicode.NFD_VERSION},
        "classes": classes,
        "nfd": nfd_cases,
        "normalize": norm_cases,
        "tokenizers": tokenizers,
    }
    with open(os.path.join(OUT, "wordpiece_expected.json"), "w", encoding="utf-8") as f:
        f.write(dump_lines(expected) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    sys.exit(main())
