"""A word-level tokenizer.json (Hugging Face `tokenizers` serialization) for tiny test models,
and the decode that `tokenizers` performs for it.

With no "decoder" section, `tokenizers` joins the kept tokens with single spaces;
skip_special_tokens drops the added tokens marked special.
"""

from __future__ import annotations

from typing import Dict, List, Sequence


def word_level_tokenizer(specials: Sequence[str], words: Sequence[str], unk: str) -> dict:
    """Specials get ids 0.. in order, then the words."""
    vocab: Dict[str, int] = {}
    for tok in list(specials) + list(words):
        if tok in vocab:
            raise ValueError(f"duplicate token {tok!r}")
        vocab[tok] = len(vocab)
    added = [{"id": vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for s in specials]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": unk},
    }


def decode(tokenizer: dict, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
    inv = {i: t for t, i in tokenizer["model"]["vocab"].items()}
    special = {a["id"] for a in tokenizer.get("added_tokens", []) if a.get("special")}
    toks: List[str] = [inv[i] for i in ids if not (skip_special_tokens and i in special)]
    return " ".join(toks)
