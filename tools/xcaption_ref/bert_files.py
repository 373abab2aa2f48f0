"""Writes the tokenizer files of a BERT WordPiece tokenizer (tokenizer.json, vocab.txt,
tokenizer_config.json, special_tokens_map.json) as transformers + tokenizers save a
BertTokenizerFast in the bert-base-uncased layout, for tiny test models; plus transformers'
clean_up_tokenization pass, which runs after the tokenizer's own decode when
tokenizer_config.json sets clean_up_tokenization_spaces. The tokenizer itself is wordpiece.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

PREFIX = "##"


def clean_up_tokenization(text: str) -> str:
    """transformers' PreTrainedTokenizerBase.clean_up_tokenization."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text



# -------------------------------------------------------------------------------------------
# files, as transformers + tokenizers save a BertTokenizerFast (bert-base-uncased layout)

def _added_entry(i: int, content: str) -> dict:
    # field order of tokenizers' AddedToken serialization
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def bert_tokenizer_json(vocab: Sequence[str], added: Sequence[str], cls: str = "[CLS]", sep: str = "[SEP]",
                        unk: str = "[UNK]") -> dict:
    """tokenizer.json of a BERT uncased WordPiece tokenizer: `vocab` gets ids 0.. in order; the
    specials found in it ([PAD] [UNK] [CLS] [SEP] [MASK]) and `added` (new ids after the vocab,
    e.g. BLIP's [DEC] [ENC]) are special added tokens."""
    ids = {t: i for i, t in enumerate(vocab)}
    if len(ids) != len(vocab):
        raise ValueError("duplicate vocabulary entries")
    specials = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in ids]
    added_tokens = [_added_entry(ids[t], t) for t in specials]
    added_tokens += [_added_entry(len(vocab) + k, t) for k, t in enumerate(added)]
    added_tokens.sort(key=lambda a: a["id"])

    def special(tok):
        return {"SpecialToken": {"id": tok, "type_id": 0}}

    def special1(tok):
        return {"SpecialToken": {"id": tok, "type_id": 1}}

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special(cls), {"Sequence": {"id": "A", "type_id": 0}}, special(sep)],
            "pair": [special(cls), {"Sequence": {"id": "A", "type_id": 0}}, special(sep),
                     {"Sequence": {"id": "B", "type_id": 1}}, special1(sep)],
            "special_tokens": {
                cls: {"id": cls, "ids": [ids[cls]], "tokens": [cls]},
                sep: {"id": sep, "ids": [ids[sep]], "tokens": [sep]},
            },
        },
        "decoder": {"type": "WordPiece", "prefix": PREFIX, "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": unk, "continuing_subword_prefix": PREFIX,
                  "max_input_chars_per_word": 100, "vocab": {t: i for i, t in enumerate(vocab)}},
    }


def tokenizer_config(tokenizer_json: dict, bos: Optional[str], additional: Sequence[str],
                     model_max_length: int) -> dict:
    """tokenizer_config.json as transformers >= 4.34 writes it for BertTokenizer(Fast)."""
    decoder = {str(a["id"]): {"content": a["content"], "lstrip": a["lstrip"], "normalized": a["normalized"],
                              "rstrip": a["rstrip"], "single_word": a["single_word"], "special": a["special"]}
               for a in tokenizer_json["added_tokens"]}
    cfg = {
        "added_tokens_decoder": decoder,
        "clean_up_tokenization_spaces": True,
        "cls_token": "[CLS]",
        "do_basic_tokenize": True,
        "do_lower_case": True,
        "mask_token": "[MASK]",
        "model_max_length": model_max_length,
        "never_split": None,
        "pad_token": "[PAD]",
        "processor_class": "BlipProcessor",
        "sep_token": "[SEP]",
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "tokenizer_class": "BertTokenizer",
        "unk_token": "[UNK]",
    }
    if bos is not None:
        cfg["bos_token"] = bos
    if additional:
        cfg["additional_special_tokens"] = list(additional)
    return cfg


def special_tokens_map(bos: Optional[str], additional: Sequence[str]) -> dict:
    m = {}
    if additional:
        m["additional_special_tokens"] = list(additional)
    if bos is not None:
        m["bos_token"] = bos
    m.update({"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]",
              "unk_token": "[UNK]"})
    return m


def write_tokenizer_files(folder, vocab: Sequence[str], added: Sequence[str], bos: Optional[str],
                          additional: Sequence[str], model_max_length: int) -> dict:
    """Writes vocab.txt, tokenizer.json (pretty, 2-space indent, non-ASCII kept as UTF-8, as
    `tokenizers` saves it), tokenizer_config.json and special_tokens_map.json (sorted keys, as
    transformers saves them). Returns the tokenizer.json object."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tj = bert_tokenizer_json(vocab, added)
    with open(folder / "vocab.txt", "w", encoding="utf-8", newline="\n") as f:
        for t in vocab:
            f.write(t + "\n")
    with open(folder / "tokenizer.json", "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(tj, indent=2, ensure_ascii=False))
    for name, obj in (("tokenizer_config.json", tokenizer_config(tj, bos, additional, model_max_length)),
                      ("special_tokens_map.json", special_tokens_map(bos, additional))):
        with open(folder / name, "w", encoding="utf-8", newline="\n") as f:
            f.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return tj
