"""BERT WordPiece tokenizer with the semantics of Hugging Face `tokenizers` (the Rust library behind
BertTokenizerFast), written from its sources: normalizers/bert.rs, pre_tokenizers/bert.rs,
models/wordpiece, decoders/wordpiece.rs, processors/{bert,template}.rs, added_vocabulary.rs; and
from transformers' BertTokenizerFast / BertConverter for folders without tokenizer.json.

    tok = load(folder)
    tok.encode("a picture of", add_special_tokens=True)  # [CLS] ... [SEP] ids
    tok.decode(ids, skip_special_tokens=True)

`load` reads tokenizer.json when the folder has one (then tokenizer_config.json's do_lower_case /
strip_accents / tokenize_chinese_chars override a BertNormalizer, as BertTokenizerFast.__init__
does), else vocab.txt + tokenizer_config.json (+ special_tokens_map.json, added_tokens.json) with
BertTokenizerFast's defaults. decode is the library's decode; transformers'
clean_up_tokenization_spaces pass is not part of it.

Unicode classes follow the crates `tokenizers` uses (see hf_unicode.py). Run with /usr/bin/python3
(needs the `regex` module and Debian's unicode-data package).
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import regex

from . import hf_unicode

# Rust regex crate classes used by added-token matching: \w and \s.
_WORD_CLASS = r"\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}"
_WORD_RE = regex.compile(rf"[{_WORD_CLASS}]")

SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                "mask_token")
# BertTokenizer / BertTokenizerFast constructor defaults.
BERT_DEFAULT_SPECIALS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                         "cls_token": "[CLS]", "mask_token": "[MASK]"}


class FormatError(ValueError):
    pass


def _is_space(ch: str) -> bool:
    return hf_unicode.is_whitespace(ord(ch))


class BertNormalizer:
    def __init__(self, clean_text=True, handle_chinese_chars=True, strip_accents=None,
                 lowercase=True):
        self.clean_text = clean_text
        self.handle_chinese_chars = handle_chinese_chars
        self.strip_accents = strip_accents
        self.lowercase = lowercase

    def __call__(self, text: str) -> str:
        if self.clean_text:
            kept = [ch for ch in text
                    if not (ch in ("\0", "\ufffd") or hf_unicode.is_bert_control(ord(ch)))]
            text = "".join(" " if _is_space(ch) else ch for ch in kept)
        if self.handle_chinese_chars:
            text = "".join(f" {ch} " if hf_unicode.is_chinese_char(ord(ch)) else ch for ch in text)
        strip = self.lowercase if self.strip_accents is None else self.strip_accents
        if strip:
            text = "".join(ch for ch in hf_unicode.nfd(text)
                           if not hf_unicode.is_nonspacing_mark(ord(ch)))
        if self.lowercase:
            text = hf_unicode.lowercase(text)
        return text


def bert_pre_tokenize(text: str) -> List[str]:
    """Whitespace removed, then every punctuation character on its own."""
    words = []
    current = []
    for ch in text:
        if _is_space(ch):
            if current:
                words.append("".join(current))
                current = []
        elif hf_unicode.is_bert_punctuation(ord(ch)):
            if current:
                words.append("".join(current))
                current = []
            words.append(ch)
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


class WordPiece:
    def __init__(self, vocab: Dict[str, int], unk_token="[UNK]", continuing_subword_prefix="##",
                 max_input_chars_per_word=100):
        self.vocab = vocab
        self.unk_token = unk_token
        self.prefix = continuing_subword_prefix
        self.max_chars = max_input_chars_per_word

    def _unk(self) -> List[int]:
        if self.unk_token not in self.vocab:
            raise FormatError(f"WordPiece unk_token {self.unk_token!r} is not in the vocabulary")
        return [self.vocab[self.unk_token]]

    def tokenize(self, word: str) -> List[int]:
        if len(word) > self.max_chars:
            return self._unk()
        ids = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:  # longest piece first, one character shorter each time
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return self._unk()  # one unknown piece makes the whole word unknown
            ids.append(found)
            start = end
        return ids


def wordpiece_cleanup(text: str) -> str:
    for old, new in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                     (" n't", "n't"), (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"),
                     (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(old, new)
    return text


class AddedToken:
    def __init__(self, content, id_, special=False, single_word=False, lstrip=False, rstrip=False,
                 normalized=None):
        self.content = content
        self.id = id_
        self.special = special
        self.single_word = single_word
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.normalized = (not special) if normalized is None else normalized


class WordPieceTokenizer:
    def __init__(self, model: WordPiece, normalizer: Optional[BertNormalizer],
                 pre_tokenizer: bool, template: Optional[List], decoder: Optional[Tuple[str, bool]]):
        self.model = model
        self.normalizer = normalizer
        self.pre_tokenizer = pre_tokenizer
        self.template = template      # list of ids and "$A", or None
        self.decoder = decoder        # (prefix, cleanup) of a WordPiece decoder, or None
        self.added: List[AddedToken] = []

    # -- vocabulary --
    def add_token(self, token: AddedToken):
        """Like AddedVocabulary::add_tokens: an existing content keeps its entry; a token of the
        model vocab keeps the model's id; else the wanted id, else the next free one."""
        if not token.content or any(t.content == token.content for t in self.added):
            for t in self.added:
                if t.content == token.content:
                    t.special = t.special or token.special
            return
        if token.content in self.model.vocab:
            token.id = self.model.vocab[token.content]
        elif token.id is None:
            token.id = self.size
        self.added.append(token)

    @property
    def id_to_token(self) -> Dict[int, str]:
        table = {}
        for tok, i in self.model.vocab.items():
            table[i] = tok
        for t in self.added:
            table[t.id] = t.content
        return table

    @property
    def size(self) -> int:
        ids = list(self.model.vocab.values()) + [t.id for t in self.added]
        return max(ids) + 1 if ids else 0

    @property
    def special_ids(self) -> List[int]:
        contents = {t.content for t in self.added if t.special}
        return sorted(i for i, s in self.id_to_token.items() if s in contents)

    # -- encode --
    def normalize(self, text: str) -> str:
        return self.normalizer(text) if self.normalizer else text

    @staticmethod
    def _split_added(text: str, patterns: List[Tuple[str, AddedToken]]):
        """[(piece, id or None)] around the leftmost-longest matches, with the tokens' flags."""
        found = []
        pos = 0
        while pos < len(text):
            best = None
            for pat, tok in patterns:
                if pat and text.startswith(pat, pos) and (best is None or len(pat) > len(best[0])):
                    best = (pat, tok)
            if best:
                found.append((pos, pos + len(best[0]), best[1]))
                pos += len(best[0])
            else:
                pos += 1
        out = []
        done = 0
        for start, stop, tok in found:
            if start < done:
                continue
            if tok.single_word:
                if (start > 0 and _WORD_RE.match(text[start - 1])) or \
                        (stop < len(text) and _WORD_RE.match(text[stop])):
                    continue
            if tok.lstrip:
                s = start
                while s > 0 and _is_space(text[s - 1]):
                    s -= 1
                start = max(s, done)
            if tok.rstrip:
                while stop < len(text) and _is_space(text[stop]):
                    stop += 1
            if done < start:
                out.append((text[done:start], None))
            out.append((text[start:stop], tok.id))
            done = stop
        if done < len(text):
            out.append((text[done:], None))
        return out

    def encode(self, text: str, add_special_tokens: bool = False) -> List[int]:
        raw = [(t.content, t) for t in self.added if not t.normalized]
        norm = [(self.normalize(t.content), t) for t in self.added if t.normalized]
        ids: List[int] = []
        for piece, pid in self._split_added(text, raw):
            if pid is not None:
                ids.append(pid)
                continue
            for sub, sid in self._split_added(self.normalize(piece), norm):
                if sid is not None:
                    ids.append(sid)
                    continue
                words = bert_pre_tokenize(sub) if self.pre_tokenizer else ([sub] if sub else [])
                for word in words:
                    ids += self.model.tokenize(word)
        if add_special_tokens and self.template:
            ids = [x for item in self.template for x in (ids if item == "$A" else [item])]
        return ids

    # -- decode --
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        table = self.id_to_token
        special = {t.content for t in self.added if t.special}
        tokens = [table[i] for i in ids
                  if i in table and not (skip_special_tokens and table[i] in special)]
        if self.decoder is None:
            return " ".join(tokens)
        prefix, cleanup = self.decoder
        out = []
        for i, tok in enumerate(tokens):
            if i > 0:
                tok = tok[len(prefix):] if tok.startswith(prefix) else " " + tok
            out.append(wordpiece_cleanup(tok) if cleanup else tok)
        return "".join(out)


# ---------------------------------------------------------------------------------------------
# Loading


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _optional_json(folder, name):
    path = os.path.join(folder, name)
    return _read_json(path) if os.path.exists(path) else None


def _added_from_json(entry, id_=None) -> AddedToken:
    special = entry.get("special", False)
    return AddedToken(entry["content"], entry.get("id", id_), special=special,
                      single_word=entry.get("single_word", False), lstrip=entry.get("lstrip", False),
                      rstrip=entry.get("rstrip", False), normalized=entry.get("normalized"))


def _special_value(value) -> Optional[AddedToken]:
    if value is None:
        return None
    if isinstance(value, str):
        return AddedToken(value, None, special=True, normalized=False)
    tok = _added_from_json(value)
    tok.special = True
    return tok


def _is_bert_class(config) -> bool:
    cls = config.get("tokenizer_class")
    return cls is None or cls in ("BertTokenizer", "BertTokenizerFast")


def _from_tokenizer_json(folder) -> WordPieceTokenizer:
    j = _read_json(os.path.join(folder, "tokenizer.json"))
    m = j["model"]
    if m.get("type", "WordPiece") != "WordPiece":
        raise FormatError(f"model type {m.get('type')!r} is not WordPiece")
    model = WordPiece(dict(m["vocab"]), m.get("unk_token", "[UNK]"),
                      m.get("continuing_subword_prefix", "##"),
                      m.get("max_input_chars_per_word", 100))
    n = j.get("normalizer")
    normalizer = None
    if n is not None:
        if n["type"] != "BertNormalizer":
            raise FormatError(f"normalizer {n['type']!r} is not supported by this reference")
        normalizer = BertNormalizer(n.get("clean_text", True), n.get("handle_chinese_chars", True),
                                    n.get("strip_accents"), n.get("lowercase", True))
        config = _optional_json(folder, "tokenizer_config.json")
        if config is not None and _is_bert_class(config):
            # BertTokenizerFast.__init__: the constructor arguments (config values, else the
            # class defaults) replace the serialized normalizer's when they differ.
            normalizer.lowercase = config.get("do_lower_case", True)
            normalizer.strip_accents = config.get("strip_accents")
            normalizer.handle_chinese_chars = config.get("tokenize_chinese_chars", True)
    p = j.get("pre_tokenizer")
    if p is not None and p["type"] != "BertPreTokenizer":
        raise FormatError(f"pre_tokenizer {p['type']!r} is not supported by this reference")
    template = None
    pp = j.get("post_processor")
    if pp is not None:
        if pp["type"] == "BertProcessing":
            template = [pp["cls"][1], "$A", pp["sep"][1]]
        elif pp["type"] == "TemplateProcessing":
            template = []
            for item in pp["single"]:
                if "Sequence" in item:
                    template.append("$A")
                else:
                    template += pp["special_tokens"][item["SpecialToken"]["id"]]["ids"]
        else:
            raise FormatError(f"post_processor {pp['type']!r} is not supported by this reference")
    d = j.get("decoder")
    decoder = None
    if d is not None:
        if d["type"] != "WordPiece":
            raise FormatError(f"decoder {d['type']!r} is not supported by this reference")
        decoder = (d.get("prefix", "##"), d.get("cleanup", True))
    tok = WordPieceTokenizer(model, normalizer, p is not None, template, decoder)
    for entry in j.get("added_tokens", []):
        tok.add_token(_added_from_json(entry))
    return tok


def read_vocab_txt(path) -> Dict[str, int]:
    """transformers' load_vocab: one token a line, the line number is its id ("\\n" stripped,
    universal newlines; a repeated token keeps its last line)."""
    vocab = {}
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f.readlines()):
            vocab[line.rstrip("\n")] = index
    return vocab


def _from_vocab_txt(folder) -> WordPieceTokenizer:
    vocab = read_vocab_txt(os.path.join(folder, "vocab.txt"))
    config = _optional_json(folder, "tokenizer_config.json") or {}
    special_map = _optional_json(folder, "special_tokens_map.json") or {}
    added_json = _optional_json(folder, "added_tokens.json") or {}
    # Constructor arguments: special_tokens_map.json's tokens replace tokenizer_config.json's
    # (PreTrainedTokenizerBase._from_pretrained), else the class defaults.
    def arg(key):
        for source in (special_map, config):
            if source.get(key) is not None:
                return source[key]
        return BERT_DEFAULT_SPECIALS.get(key)

    def content(value):
        return value if isinstance(value, str) or value is None else value["content"]

    unk = content(arg("unk_token"))
    normalizer = BertNormalizer(True, config.get("tokenize_chinese_chars", True),
                                config.get("strip_accents"), config.get("do_lower_case", True))
    model = WordPiece(vocab, unk, "##", 100)
    tok = WordPieceTokenizer(model, normalizer, True, None, ("##", True))
    # Added tokens in the order transformers adds them: added_tokens_decoder, added_tokens.json,
    # then the special tokens not yet present.
    for key, entry in sorted(config.get("added_tokens_decoder", {}).items(), key=lambda kv: int(kv[0])):
        tok.add_token(_added_from_json(entry, int(key)))
    specials = []
    for key in SPECIAL_KEYS:
        t = _special_value(arg(key))
        if t is not None:
            specials.append(t)
    extra = arg("additional_special_tokens") or []
    specials += [t for t in (_special_value(v) for v in extra) if t is not None]
    special_contents = {t.content for t in specials}
    for content_, id_ in sorted(added_json.items(), key=lambda kv: kv[1]):
        tok.add_token(AddedToken(content_, id_, special=content_ in special_contents))
    for t in specials:
        tok.add_token(t)
    cls, sep = content(arg("cls_token")), content(arg("sep_token"))
    ids = {t.content: t.id for t in tok.added}
    if cls not in ids or sep not in ids:
        raise FormatError("cls_token / sep_token have no id")
    tok.template = [ids[cls], "$A", ids[sep]]
    return tok


def load(folder) -> WordPieceTokenizer:
    if os.path.exists(os.path.join(folder, "tokenizer.json")):
        return _from_tokenizer_json(folder)
    if os.path.exists(os.path.join(folder, "vocab.txt")):
        return _from_vocab_txt(folder)
    raise FormatError(f"{folder}: neither tokenizer.json nor vocab.txt")
