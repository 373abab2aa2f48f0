"""Unicode data as Hugging Face `tokenizers` sees it in its BERT components.

`tokenizers` takes its character classes from crates whose tables are older than Python's
`unicodedata` (14.0.0 on Debian 12's Python 3.11):

  * BertNormalizer's control test, its strip_accents mark test and BertPreTokenizer's punctuation
    test use the `unicode_categories` crate 0.1.1, the only release on crates.io, whose tables
    list the UnicodeData.txt of Unicode 8.0 (private use is tested by whole ranges);
  * BertNormalizer's NFD uses `unicode-normalization-alignments` 0.1.12, with Unicode 9.0 tables.

So a character assigned after 8.0 (9.0 for NFD) is "Cn" to those crates: never a mark, a control
or punctuation, never decomposed, combining class 0. This module rebuilds that view from
`unicodedata` plus the Age property (DerivedAge.txt of Debian's `unicode-data` package), and
restores the 8.0 category of the few characters whose category changed after 8.0 (checked
against the crate's tables: nothing else differs for Mn, P*, Cc, Cf, Co).

Used by tools/gen_unicode_tables.py (the C++ tables) and tools/xcaption_ref/wordpiece.py.
"""

from __future__ import annotations

import functools
import os
import unicodedata

DERIVED_AGE = "/usr/share/unicode/DerivedAge.txt"

CATEGORY_VERSION = (8, 0)  # unicode_categories 0.1.1
NFD_VERSION = (9, 0)       # unicode-normalization-alignments 0.1.12

# General category in Unicode 8.0 where unicodedata 14.0 says something else.
CATEGORY_8_0 = {
    0x1734: "Mn",   # HANUNOO SIGN PAMUDPOD: Mc since 14.0
    0x1885: "Lo",   # MONGOLIAN LETTER ALI GALI BALUDA: Mn since 9.0
    0x1886: "Lo",   # MONGOLIAN LETTER ALI GALI THREE BALUDA: Mn since 9.0
    0x111C9: "Po",  # SHARADA SANDHI MARK: Mn since 9.0
    0x166D: "Po",   # CANADIAN SYLLABICS CHI SIGN: So since 12.0
    0xA9BD: "Mc",   # JAVANESE CONSONANT SIGN KERET: Mn since 12.0
}


@functools.lru_cache(maxsize=None)
def _ages():
    if not os.path.exists(DERIVED_AGE):
        raise SystemExit(f"{DERIVED_AGE} is missing: install Debian's unicode-data package "
                         "(tools/install-deps.sh --with-python)")
    ages = {}
    with open(DERIVED_AGE, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cps, version = (part.strip() for part in line.split(";"))
            first, _, last = cps.partition("..")
            major, minor = (int(x) for x in version.split("."))
            for cp in range(int(first, 16), int(last or first, 16) + 1):
                ages[cp] = (major, minor)
    return ages


def age(cp: int):
    """(major, minor) of the Unicode version that assigned `cp`, None when unassigned."""
    return _ages().get(cp)


def assigned_by(cp: int, version) -> bool:
    a = age(cp)
    return a is not None and a <= version


def crate_category(cp: int) -> str:
    """General category as the unicode_categories crate 0.1.1 reports it ("Cn" when unassigned
    in Unicode 8.0)."""
    if not assigned_by(cp, CATEGORY_VERSION):
        return "Cn"
    return CATEGORY_8_0.get(cp, unicodedata.category(chr(cp)))


def is_whitespace(cp: int) -> bool:
    """Rust char::is_whitespace: the White_Space property."""
    return 0x09 <= cp <= 0x0D or cp in (0x20, 0x85) or unicodedata.category(chr(cp)) in ("Zs", "Zl", "Zp")


def is_bert_control(cp: int) -> bool:
    """BertNormalizer's is_control: Cc, Cf or Co, except tab, newline and carriage return."""
    return cp not in (0x09, 0x0A, 0x0D) and crate_category(cp) in ("Cc", "Cf", "Co")


def is_bert_punctuation(cp: int) -> bool:
    """BertPreTokenizer's is_bert_punc: ASCII punctuation or general category P*."""
    if cp < 0x80:
        return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
    return crate_category(cp).startswith("P")


def is_nonspacing_mark(cp: int) -> bool:
    return crate_category(cp) == "Mn"


def is_chinese_char(cp: int) -> bool:
    """BertNormalizer's is_chinese_char. Note 0x2B920 where transformers' Python BasicTokenizer
    has 0x2B820: the Rust ranges are the ones that run."""
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def nfd(text: str) -> str:
    """NFD with Unicode 9.0 data. A character assigned later has no decomposition and class 0
    there, so it is a starter that canonical reordering never crosses: NFD of the runs between
    such characters, with the characters themselves left in place."""
    out = []
    run = []
    for ch in text:
        if assigned_by(ord(ch), NFD_VERSION):
            run.append(ch)
        else:
            out.append(unicodedata.normalize("NFD", "".join(run)))
            out.append(ch)
            run = []
    out.append(unicodedata.normalize("NFD", "".join(run)))
    return "".join(out)


def lowercase(text: str) -> str:
    """Rust char::to_lowercase per character (no Final_Sigma context, unlike str.lower())."""
    return "".join(ch.lower() for ch in text)
