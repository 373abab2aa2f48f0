#!/usr/bin/python3
"""Generate src/tokenizer/unicode_tables.hpp: the Unicode character classes the tokenizer needs.

Run with /usr/bin/python3 (needs the `regex` module only for the Alphabetic property, which
`unicodedata` does not expose, and Debian's unicode-data package for the Age property of the BERT
tables). Everything else comes from `unicodedata`; its Unicode version is written into the header.
Re-run after a Python upgrade and commit the result:

    /usr/bin/python3 tools/gen_unicode_tables.py > src/tokenizer/unicode_tables.hpp

Classes (as the Hugging Face `tokenizers` regexes see them):
  letter      \\p{L}   general category L*               (GPT-2 pattern, Oniguruma)
  number      \\p{N}   general category N*               (GPT-2 pattern, Oniguruma)
  space       \\s      U+0009..U+000D, U+0085, Zs, Zl, Zp (Oniguruma's \\s = Unicode White_Space)
  word        \\w      Alphabetic | M* | Nd | Pc | Join_Control  (Rust `regex` crate's Unicode \\w,
                       used by the Whitespace pre-tokenizer and by added-token single_word checks)
  lowercase   per-character full lowercase mapping (Rust char::to_lowercase == Python str.lower on
              one character; no Final_Sigma context)

BERT classes (BertNormalizer / BertPreTokenizer), with the older Unicode versions of the crates
`tokenizers` takes them from (see tools/xcaption_ref/hf_unicode.py):
  bert punctuation  P* beyond ASCII, Unicode 8.0 (unicode_categories 0.1.1)
  bert control      Cc | Cf | Co, Unicode 8.0 (tab, newline and carriage return are excepted in code)
  nonspacing mark   Mn, Unicode 8.0
  decomposition     canonical one-level decompositions, Unicode 9.0 (unicode-normalization-
                    alignments 0.1.12); Hangul syllables are decomposed in code
  combining class   non-zero canonical combining classes, Unicode 9.0
"""
import os
import sys
import unicodedata

import regex

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from xcaption_ref import hf_unicode  # noqa: E402

MAX_CP = 0x110000


def cat(cp):
    return unicodedata.category(chr(cp))


def ranges(pred):
    out = []
    start = None
    for cp in range(MAX_CP + 1):
        inside = cp < MAX_CP and pred(cp)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


ALPHABETIC = regex.compile(r"\p{Alphabetic}")


def is_letter(cp):
    return cat(cp).startswith("L")


def is_number(cp):
    return cat(cp).startswith("N")


def is_space(cp):
    return 0x09 <= cp <= 0x0D or cp == 0x85 or cat(cp) in ("Zs", "Zl", "Zp")


def is_word(cp):
    c = cat(cp)
    if c == "Cn":  # unassigned in this unicodedata version: keep the tables on one version
        return False
    if c.startswith("L") or c.startswith("M") or c in ("Nd", "Nl", "Pc"):
        return True
    if cp in (0x200C, 0x200D):  # Join_Control
        return True
    return ALPHABETIC.match(chr(cp)) is not None  # Other_Alphabetic symbols, e.g. circled letters


def lowercase_runs():
    """Single-character mappings as (first, last, stride, delta) runs, plus multi-char ones."""
    singles = []
    multi = []
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        low = chr(cp).lower()
        if low == chr(cp):
            continue
        if len(low) == 1:
            singles.append((cp, ord(low) - cp))
        else:
            multi.append((cp, [ord(ch) for ch in low]))
    runs = []
    i = 0
    while i < len(singles):
        first, delta = singles[i]
        last = first
        stride = 1
        j = i + 1
        if j < len(singles) and singles[j][1] == delta and singles[j][0] - first in (1, 2):
            stride = singles[j][0] - first
            while j < len(singles) and singles[j][1] == delta and singles[j][0] - last == stride:
                last = singles[j][0]
                j += 1
        else:
            j = i + 1
        runs.append((first, last, stride, delta))
        i = j
    return runs, multi


def decompositions():
    """(cp, first, second) canonical one-level decompositions (second 0 for singletons)."""
    out = []
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF or not hf_unicode.assigned_by(cp, hf_unicode.NFD_VERSION):
            continue
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert 1 <= len(parts) <= 2, (cp, d)
        assert all(hf_unicode.assigned_by(p, hf_unicode.NFD_VERSION) for p in parts), cp
        out.append((cp, parts[0], parts[1] if len(parts) == 2 else 0))
    return out


def combining_class_runs():
    runs = []
    for cp in range(MAX_CP):
        if 0xD800 <= cp <= 0xDFFF or not hf_unicode.assigned_by(cp, hf_unicode.NFD_VERSION):
            continue
        ccc = unicodedata.combining(chr(cp))
        if ccc == 0:
            continue
        if runs and runs[-1][1] == cp - 1 and runs[-1][2] == ccc:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp, ccc])
    return runs


def emit_rows(type_name, name, rows, per_line):
    lines = [f"inline constexpr {type_name} {name}[] = {{"]
    for i in range(0, len(rows), per_line):
        lines.append("    " + ", ".join(rows[i:i + per_line]) + ",")
    lines.append("};")
    return "\n".join(lines)


def emit_ranges(name, rs):
    lines = [f"inline constexpr CodepointRange {name}[] = {{"]
    row = []
    for a, b in rs:
        row.append(f"{{0x{a:X}, 0x{b:X}}}")
        if len(row) == 6:
            lines.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        lines.append("    " + ", ".join(row) + ",")
    lines.append("};")
    return "\n".join(lines)


def main():
    out = []
    out.append("// GENERATED by tools/gen_unicode_tables.py -- do not edit by hand.")
    out.append(f"// Unicode version (Python unicodedata): {unicodedata.unidata_version};"
               f" Alphabetic from the `regex` module {regex.__version__},")
    out.append(f"// restricted to characters assigned in Unicode {unicodedata.unidata_version}."
               " The BERT tables keep only the characters")
    out.append("// assigned by Unicode 8.0 (classes) and 9.0 (NFD), like the Rust crates of HF"
               " tokenizers (Age from DerivedAge.txt).")
    out.append("// Sorted, disjoint, inclusive code point ranges; see the script for the definitions.")
    out.append("#pragma once")
    out.append("")
    out.append("#include <cstdint>")
    out.append("")
    out.append("namespace xcaption::unicode_tables {")
    out.append("")
    out.append(f'inline constexpr const char* kUnicodeVersion = "{unicodedata.unidata_version}";')
    out.append('inline constexpr const char* kBertClassesUnicodeVersion = "%d.%d.0";'
               % hf_unicode.CATEGORY_VERSION)
    out.append('inline constexpr const char* kNfdUnicodeVersion = "%d.%d.0";' % hf_unicode.NFD_VERSION)
    out.append("")
    out.append("struct CodepointRange {")
    out.append("  std::uint32_t first;")
    out.append("  std::uint32_t last;")
    out.append("};")
    out.append("")
    out.append("// lower(c) = c + delta for c = first, first + stride, ..., last.")
    out.append("struct LowercaseRun {")
    out.append("  std::uint32_t first;")
    out.append("  std::uint32_t last;")
    out.append("  std::uint32_t stride;")
    out.append("  std::int32_t delta;")
    out.append("};")
    out.append("")
    out.append("// Canonical decomposition of cp: first, then second (0 when cp maps to one code point).")
    out.append("struct Decomposition {")
    out.append("  std::uint32_t cp;")
    out.append("  std::uint32_t first;")
    out.append("  std::uint32_t second;")
    out.append("};")
    out.append("")
    out.append("struct CombiningClassRun {")
    out.append("  std::uint32_t first;")
    out.append("  std::uint32_t last;")
    out.append("  std::uint32_t ccc;")
    out.append("};")
    out.append("")
    out.append("struct LowercaseMulti {")
    out.append("  std::uint32_t cp;")
    out.append("  std::uint32_t lower[3];  // zero-terminated when shorter")
    out.append("};")
    out.append("")
    out.append("// General category L* (\\p{L}).")
    out.append(emit_ranges("kLetter", ranges(is_letter)))
    out.append("")
    out.append("// General category N* (\\p{N}).")
    out.append(emit_ranges("kNumber", ranges(is_number)))
    out.append("")
    out.append("// White_Space: U+0009..U+000D, U+0085, Zs, Zl, Zp.")
    out.append(emit_ranges("kSpace", ranges(is_space)))
    out.append("")
    out.append("// Unicode \\w: Alphabetic | M* | Nd | Pc | Join_Control.")
    out.append(emit_ranges("kWord", ranges(is_word)))
    out.append("")
    runs, multi = lowercase_runs()
    out.append("inline constexpr LowercaseRun kLowercase[] = {")
    row = []
    for first, last, stride, delta in runs:
        row.append(f"{{0x{first:X}, 0x{last:X}, {stride}, {delta}}}")
        if len(row) == 4:
            out.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        out.append("    " + ", ".join(row) + ",")
    out.append("};")
    out.append("")
    out.append("inline constexpr LowercaseMulti kLowercaseMulti[] = {")
    for cp, low in multi:
        assert len(low) <= 3
        vals = ", ".join(f"0x{x:X}" for x in low + [0] * (3 - len(low)))
        out.append(f"    {{0x{cp:X}, {{{vals}}}}},")
    out.append("};")
    out.append("")
    out.append("// BertPreTokenizer punctuation beyond ASCII: P* of Unicode 8.0.")
    out.append(emit_ranges("kBertPunctuation",
                           ranges(lambda cp: cp >= 0x80 and hf_unicode.is_bert_punctuation(cp))))
    out.append("")
    out.append("// BertNormalizer control characters: Cc | Cf | Co of Unicode 8.0.")
    out.append(emit_ranges("kBertControl",
                           ranges(lambda cp: hf_unicode.crate_category(cp) in ("Cc", "Cf", "Co"))))
    out.append("")
    out.append("// Nonspacing marks (Mn) of Unicode 8.0: what strip_accents removes after NFD.")
    out.append(emit_ranges("kNonspacingMark", ranges(hf_unicode.is_nonspacing_mark)))
    out.append("")
    out.append("// Canonical decompositions of Unicode 9.0, sorted by cp (Hangul syllables excluded).")
    out.append(emit_rows("Decomposition", "kDecomposition",
                         [f"{{0x{a:X}, 0x{b:X}, 0x{c:X}}}" for a, b, c in decompositions()], 5))
    out.append("")
    out.append("// Non-zero canonical combining classes of Unicode 9.0.")
    out.append(emit_rows("CombiningClassRun", "kCombiningClass",
                         [f"{{0x{a:X}, 0x{b:X}, {c}}}" for a, b, c in combining_class_runs()], 5))
    out.append("")
    out.append("}  // namespace xcaption::unicode_tables")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
