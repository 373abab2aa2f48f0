"""A BERT WordPiece tokenizer as Hugging Face `tokenizers` runs a bert-base-uncased style
tokenizer.json, and the writer of such files (tokenizer.json, vocab.txt, tokenizer_config.json,
special_tokens_map.json) for tiny test models.

Written from the documented behaviour of transformers' models/bert/tokenization_bert.py
(BasicTokenizer, WordpieceTokenizer) and the `tokenizers` components a BERT tokenizer.json names:
  normalizer      BertNormalizer: clean_text (drop NUL, U+FFFD and category C* except \\t\\n\\r;
                  every White_Space character becomes ' '), handle_chinese_chars (spaces around
                  CJK ideographs), strip_accents (null: follows lowercase; NFD then drop Mn),
                  lowercase
  pre_tokenizer   BertPreTokenizer: split on whitespace (dropped) and on punctuation (ASCII
                  punctuation or Unicode P*, each character its own piece)
  model           WordPiece: greedy longest match first, continuation pieces prefixed "##", a
                  word longer than max_input_chars_per_word or with no full cover -> unk_token
  post_processor  TemplateProcessing "[CLS] $A [SEP]"
  decoder         WordPiece: "##" pieces glued to the previous one, others joined with a space,
                  cleanup of " ." " ?" " !" " ," " ' " " n't" " 'm" " do not" " 's" " 've" " 're"
  added_tokens    matched on the raw text before normalization (all of ours are special and
                  normalized=false); skip_special_tokens drops them when decoding
Then transformers' clean_up_tokenization_spaces (true for BERT) runs on the decoded string.

Two known differences between the slow Python tokenizer and tokenizer.json are resolved the
tokenizer.json way: the slow BasicTokenizer NFC-normalizes the text first, and its CJK table
starts a block at U+2B820 where `tokenizers` has U+2B920. Neither matters for ASCII prompts.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

PREFIX = "##"

# Unicode White_Space (what Rust's char::is_whitespace tests).
_WHITE_SPACE = set(chr(c) for c in list(range(0x09, 0x0E)) + [0x20, 0x85, 0xA0, 0x1680] +
                   list(range(0x2000, 0x200B)) + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000])


def is_whitespace(c: str) -> bool:
    return c in ("\t", "\n", "\r") or c in _WHITE_SPACE


def is_control(c: str) -> bool:
    if c in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(c).startswith("C")


def is_punctuation(c: str) -> bool:
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def is_chinese_char(c: str) -> bool:
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def clean_up_tokenization(text: str) -> str:
    """transformers' PreTrainedTokenizerBase.clean_up_tokenization."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


def _decoder_cleanup(token: str) -> str:
    """`tokenizers` decoders::wordpiece::cleanup, applied to each token."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        token = token.replace(a, b)
    return token


class WordPieceTokenizer:
    """Encodes and decodes with the settings of a parsed BERT-style tokenizer.json."""

    def __init__(self, tokenizer_json: dict, clean_up_tokenization_spaces: bool = True):
        t = tokenizer_json
        m = t["model"]
        if m.get("type") != "WordPiece":
            raise ValueError(f"model type {m.get('type')!r}, expected WordPiece")
        self.vocab: Dict[str, int] = dict(m["vocab"])
        self.unk = m["unk_token"]
        self.prefix = m.get("continuing_subword_prefix", PREFIX)
        self.max_chars = int(m.get("max_input_chars_per_word", 100))
        n = t.get("normalizer") or {}
        if n and n.get("type") != "BertNormalizer":
            raise ValueError(f"normalizer {n.get('type')!r} is not supported here")
        self.clean_text = n.get("clean_text", True) if n else False
        self.chinese = n.get("handle_chinese_chars", True) if n else False
        self.lowercase = n.get("lowercase", True) if n else False
        sa = n.get("strip_accents") if n else False
        self.strip_accents = self.lowercase if sa is None else bool(sa)
        self.added: Dict[str, Tuple[int, bool]] = {a["content"]: (a["id"], a["special"])
                                                    for a in t.get("added_tokens", [])}
        self.id_to_token: Dict[int, str] = {i: s for s, i in self.vocab.items()}
        for s, (i, _) in self.added.items():
            self.id_to_token[i] = s
        self.special_ids = {i for i, special in self.added.values() if special}
        post = t.get("post_processor") or {}
        self.template: Optional[Tuple[List[int], List[int]]] = None
        if post.get("type") == "TemplateProcessing":
            before, after, seen = [], [], False
            for piece in post["single"]:
                if "Sequence" in piece:
                    seen = True
                    continue
                ids = post["special_tokens"][piece["SpecialToken"]["id"]]["ids"]
                (after if seen else before).extend(ids)
            self.template = (before, after)
        elif post.get("type") == "BertProcessing":
            self.template = ([post["cls"][1]], [post["sep"][1]])
        elif post:
            raise ValueError(f"post_processor {post.get('type')!r} is not supported here")
        self.decoder_cleanup = bool((t.get("decoder") or {}).get("cleanup", True))
        self.clean_up_spaces = clean_up_tokenization_spaces

    @staticmethod
    def from_folder(folder) -> "WordPieceTokenizer":
        folder = Path(folder)
        with open(folder / "tokenizer.json", encoding="utf-8") as f:
            tj = json.load(f)
        clean = True
        cfg = folder / "tokenizer_config.json"
        if cfg.exists():
            with open(cfg, encoding="utf-8") as f:
                clean = bool(json.load(f).get("clean_up_tokenization_spaces", True))
        return WordPieceTokenizer(tj, clean)

    # ---------------------------------------------------------------------------------------
    # encode

    def normalize(self, text: str) -> str:
        if self.clean_text:
            text = "".join(" " if is_whitespace(c) else c for c in text
                           if not (ord(c) == 0 or ord(c) == 0xFFFD or is_control(c)))
        if self.chinese:
            text = "".join(f" {c} " if is_chinese_char(c) else c for c in text)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        if self.lowercase:
            text = text.lower()
        return text

    @staticmethod
    def pre_tokenize(text: str) -> List[str]:
        words, cur = [], []
        for c in text:
            if is_whitespace(c):
                if cur:
                    words.append("".join(cur))
                    cur = []
            elif is_punctuation(c):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(c)
            else:
                cur.append(c)
        if cur:
            words.append("".join(cur))
        return words

    def wordpiece(self, word: str) -> List[str]:
        if len(word) > self.max_chars:
            return [self.unk]
        pieces, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                sub = word[start:end]
                if start > 0:
                    sub = self.prefix + sub
                if sub in self.vocab:
                    found = sub
                    break
                end -= 1
            if found is None:
                return [self.unk]
            pieces.append(found)
            start = end
        return pieces

    def _split_added(self, text: str) -> List[Tuple[str, bool]]:
        """(segment, is_added_token): leftmost, then longest, added-token matches."""
        out, i, plain = [], 0, 0
        contents = sorted(self.added, key=len, reverse=True)
        while i < len(text):
            hit = next((s for s in contents if text.startswith(s, i)), None)
            if hit is None:
                i += 1
                continue
            if plain < i:
                out.append((text[plain:i], False))
            out.append((hit, True))
            i += len(hit)
            plain = i
        if plain < len(text):
            out.append((text[plain:], False))
        return out

    def tokenize(self, text: str) -> List[str]:
        tokens: List[str] = []
        for seg, is_added in self._split_added(text):
            if is_added:
                tokens.append(seg)
                continue
            for word in self.pre_tokenize(self.normalize(seg)):
                tokens.extend(self.wordpiece(word))
        return tokens

    def token_to_id(self, token: str) -> int:
        if token in self.added:
            return self.added[token][0]
        return self.vocab[token]

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        ids = [self.token_to_id(t) for t in self.tokenize(text)]
        if add_special_tokens and self.template is not None:
            before, after = self.template
            ids = list(before) + ids + list(after)
        return ids

    # ---------------------------------------------------------------------------------------
    # decode

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        tokens = [self.id_to_token[i] for i in ids
                  if i in self.id_to_token and not (skip_special_tokens and i in self.special_ids)]
        out = []
        for k, tok in enumerate(tokens):
            if k != 0:
                tok = tok[len(self.prefix):] if tok.startswith(self.prefix) else " " + tok
            if self.decoder_cleanup:
                tok = _decoder_cleanup(tok)
            out.append(tok)
        text = "".join(out)
        return clean_up_tokenization(text) if self.clean_up_spaces else text


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
