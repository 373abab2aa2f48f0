#!/usr/bin/python3
"""Writes the hostile pytorch_model.bin corpus: tests/data/hostile-bin/<case>.bin.

Each file is something a model folder could hold under the name pytorch_model.bin that xcaption
must refuse cleanly (one error naming the file and the problem, no crash, no code run, nothing
written): pickles calling os.system, subprocess, eval, __import__, look-alike rebuild functions,
functools.partial; recursion bombs; shapes whose byte size overflows; views past their storage;
missing storage records; truncated, corrupt and compressed zips; duplicate keys; a big-endian
byteorder record; non-tensor values; an empty file; a safetensors file and a legacy torch.save
file under the .bin name; a TorchScript archive. tests/e2e/test_cli_hostile_bins.cpp runs each
through `xcaption caption` (the expected message per case is written there). It also writes the
valid seed inputs of the fuzz target, tests/fuzz/corpus/torch_checkpoint/.

The pickles are written opcode by opcode (never unpickled here), the zips by a small writer that
lays records out the way torch.save does (stored, 64-byte aligned data); Python's pickle writes
only the plain values of the legacy file's header. Needs no torch. Deterministic: a rerun
rewrites byte-identical files.

usage: /usr/bin/python3 tools/make_hostile_bins.py
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "hostile-bin"


# ---------------------------------------------------------------------------------------------
# pickle opcodes (ref: CPython Lib/pickletools.py)

def proto(v: int = 2) -> bytes:
    return b"\x80" + bytes([v])


def s(text: str) -> bytes:  # BINUNICODE
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def i(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    if -(2 ** 31) <= v < 2 ** 31:
        return b"J" + struct.pack("<i", v)
    return b"\x8a\x08" + struct.pack("<q", v)


def g(module: str, name: str) -> bytes:  # GLOBAL
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def ordered_dict() -> bytes:
    return g("collections", "OrderedDict") + b")R"


def storage(key: str, numel: int, kind: str = "FloatStorage") -> bytes:
    return tup(s("storage"), g("torch", kind), s(key), s("cpu"), i(numel)) + b"Q"


def tensor(key: str, numel: int, offset: int, size, stride, kind: str = "FloatStorage") -> bytes:
    return g("torch._utils", "_rebuild_tensor_v2") + tup(
        storage(key, numel, kind), i(offset), tup(*map(i, size)), tup(*map(i, stride)), b"\x89", ordered_dict()) + b"R"


def state_dict(*items: bytes) -> bytes:
    return proto() + ordered_dict() + b"(" + b"".join(items) + b"u."


def call(module: str, name: str, *args: bytes) -> bytes:
    """A pickle whose whole content is module.name(*args): what a malicious .bin does."""
    return proto() + g(module, name) + tup(*args) + b"R."


# ---------------------------------------------------------------------------------------------
# zip records laid out as torch.save does (ref: APPNOTE 4.3; caffe2 inline_container: stored,
# data aligned to 64 bytes with an "FB" padding extra field)

def zip_bytes(records, method: int = 0, descriptor: bool = False, duplicate: str = "") -> bytes:
    out = bytearray()
    central = bytearray()
    entries = list(records)
    if duplicate:
        entries.append((duplicate, dict(entries)[duplicate]))
    for name, data in entries:
        raw = name.encode()
        stored = zlib.compress(data)[2:-4] if method == 8 else data
        crc = zlib.crc32(data)
        offset = len(out)
        flags = 0x0808 if descriptor else 0x0800
        fixed = 30 + len(raw) + 4
        pad = (64 - (offset + fixed) % 64) % 64
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0,
                           0 if descriptor else crc, 0 if descriptor else len(stored),
                           0 if descriptor else len(data), len(raw), 4 + pad)
        out += raw + struct.pack("<HH", 0x4246, pad) + b"Z" * pad + stored
        if descriptor:
            out += struct.pack("<IIII", 0x08074B50, crc, len(stored), len(data))
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, method, 0, 0, crc,
                               len(stored), len(data), len(raw), 0, 0, 0, 0, 0, offset) + raw
    cd_offset = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), cd_offset, 0)
    return bytes(out)


def archive(pkl: bytes, storages=None, prefix: str = "archive/", extra=None, **kw) -> bytes:
    records = [(prefix + "data.pkl", pkl)]
    for key, data in (storages or {}).items():
        records.append((prefix + "data/" + key, data))
    records += list(extra or [])
    records.append((prefix + "version", b"3\n"))
    return zip_bytes(records, **kw)


F32x4 = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
# a small valid state dict: two views of one storage
VALID_PKL = state_dict(s("encoder.embeddings.cls_token"), tensor("0", 4, 0, [1, 1, 4], [4, 4, 1]))
VALID = archive(VALID_PKL, {"0": F32x4})


def cases() -> dict:
    c = {}
    # --- code execution attempts ----------------------------------------------------------
    c["os_system"] = call("os", "system", s("touch /tmp/xcaption-pwned"))
    c["posix_system"] = call("posix", "system", s("touch /tmp/xcaption-pwned"))
    c["subprocess_popen"] = call("subprocess", "Popen", tup(s("touch"), s("/tmp/xcaption-pwned")))
    c["builtins_eval"] = call("builtins", "eval", s("__import__('os').system('true')"))
    c["builtins_exec"] = call("builtins", "exec", s("import os"))
    c["dunder_import"] = call("builtins", "__import__", s("os"))
    c["functools_partial"] = call("functools", "partial", g("os", "system"), s("true"))
    c["lookalike_rebuild_module"] = state_dict(s("w"), g("__main__", "_rebuild_tensor_v2") + tup(
        storage("0", 4), i(0), tup(i(4)), tup(i(1)), b"\x89", ordered_dict()) + b"R")
    c["lookalike_rebuild_torch"] = state_dict(s("w"), g("torch", "_rebuild_tensor_v2") + tup(
        storage("0", 4), i(0), tup(i(4)), tup(i(1)), b"\x89", ordered_dict()) + b"R")
    c["stack_global_getattr"] = (proto(4) + b"\x8c\x08builtins\x8c\x07getattr\x93" + tup(g("os", "path"), s("join"))
                                 + b"R.")
    c["inst_opcode"] = proto() + b"(" + s("true") + b"ios\nsystem\n."
    # each of the pickles above inside an otherwise valid archive too
    for name in list(c):
        c[name] = archive(c[name], {"0": F32x4})
    # --- recursion and size bombs ------------------------------------------------------------
    c["deep_lists"] = archive(proto() + b"]" * 5000 + b"a" * 4999 + b".")
    c["deep_tuples"] = archive(proto() + b")" + b"\x85" * 5000 + b".")
    c["mark_bomb"] = archive(proto() + b"(" * 5000 + b"N" + b"t" * 5000 + b".")
    c["huge_string"] = archive(proto() + b"\x8d" + struct.pack("<Q", 1 << 62) + b"abc")
    # --- tensors that do not fit their storage -------------------------------------------------
    c["shape_overflow"] = archive(state_dict(s("w"), tensor("0", 4, 0, [1 << 32, 1 << 32, 1 << 32], [0, 0, 0])),
                                  {"0": F32x4})
    c["byte_size_overflow"] = archive(state_dict(s("w"), tensor("0", 4, 0, [1 << 62], [0])), {"0": F32x4})
    c["offset_past_storage"] = archive(state_dict(s("w"), tensor("0", 4, 9, [1], [1])), {"0": F32x4})
    c["view_past_storage"] = archive(state_dict(s("w"), tensor("0", 4, 1, [2, 2], [2, 1])), {"0": F32x4})
    c["stride_overflow"] = archive(state_dict(s("w"), tensor("0", 4, 0, [5], [1 << 62])), {"0": F32x4})
    c["storage_size_mismatch"] = archive(state_dict(s("w"), tensor("0", 5, 0, [4], [1])), {"0": F32x4})
    c["missing_storage"] = archive(state_dict(s("w"), tensor("7", 4, 0, [4], [1])), {"0": F32x4})
    c["storage_type_conflict"] = archive(state_dict(s("a"), tensor("0", 4, 0, [4], [1]),
                                                    s("b"), tensor("0", 8, 0, [8], [1], "HalfStorage")), {"0": F32x4})
    # --- zip containers ------------------------------------------------------------------------
    c["truncated_half"] = VALID[: len(VALID) // 2]
    c["truncated_tail"] = VALID[:-7]
    corrupt = bytearray(VALID)
    corrupt[corrupt.index(b"PK\x01\x02") + 42] ^= 0x55  # a local header offset
    c["corrupt_central_directory"] = bytes(corrupt)
    corrupt = bytearray(VALID)
    pkl_at = corrupt.index(b"\x80\x02")
    corrupt[pkl_at + 5] ^= 0x01  # a byte of data.pkl: the CRC no longer matches
    c["crc_mismatch"] = bytes(corrupt)
    c["compressed_entries"] = archive(VALID_PKL, {"0": F32x4}, method=8)
    c["duplicate_entry"] = archive(VALID_PKL, {"0": F32x4}, duplicate="archive/data/0")
    c["no_data_pkl"] = zip_bytes([("archive/data/0", F32x4), ("archive/version", b"3\n")])
    c["torchscript"] = archive(VALID_PKL, {"0": F32x4}, extra=[("archive/constants.pkl", proto() + b").")])
    c["byteorder_big"] = archive(VALID_PKL, {"0": F32x4}, extra=[("archive/byteorder", b"big")])
    # --- state dicts that are not dicts of tensors ---------------------------------------------
    c["duplicate_keys"] = archive(state_dict(s("w"), tensor("0", 4, 0, [4], [1]), s("w"), tensor("0", 4, 0, [4], [1])),
                                  {"0": F32x4})
    c["non_tensor_value"] = archive(state_dict(s("w"), i(7)), {})
    c["nested_checkpoint"] = archive(proto() + b"}" + s("model") + ordered_dict() + b"(" + s("w")
                                     + tensor("0", 4, 0, [4], [1]) + b"us.", {"0": F32x4})
    c["not_a_dict"] = archive(proto() + b"]" + s("w") + b"a.")
    c["unsupported_dtype"] = archive(state_dict(s("encoder.embeddings.cls_token"),
                                                tensor("0", 32, 0, [1, 1, 32], [32, 32, 1], "LongStorage")),
                                     {"0": b"\0" * 256})
    # --- not a torch.save zip ------------------------------------------------------------------
    c["empty"] = b""
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    c["safetensors_renamed"] = struct.pack("<Q", len(header)) + header + F32x4
    c["not_a_zip"] = b"this is not a checkpoint\n" * 4
    c["legacy_format"] = legacy()
    return c


def legacy() -> bytes:
    """A pre-1.6 torch.save file laid out as torch's _legacy_save writes it: pickles of the magic
    number, the protocol version and the system info, the object (storages as persistent ids
    with a view-metadata slot), the sorted storage keys, then each storage as an 8-byte element
    count and its bytes. Written here rather than by torch, whose legacy keys are addresses."""
    import pickle
    head = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    head += pickle.dumps({"protocol_version": 1001, "little_endian": True,
                          "type_sizes": {"short": 2, "int": 4, "long": 8}}, protocol=2)
    pid = tup(s("storage"), g("torch", "FloatStorage"), s("0"), s("cpu"), i(4), b"N") + b"Q"
    obj = proto() + b"}" + s("w") + g("torch._utils", "_rebuild_tensor_v2") + tup(
        pid, i(0), tup(i(4)), tup(i(1)), b"\x89", ordered_dict()) + b"Rs."
    return head + obj + pickle.dumps(["0"], protocol=2) + struct.pack("<q", 4) + F32x4


def fuzz_seeds() -> dict:
    """Valid inputs for the libFuzzer target's seed corpus (tests/fuzz/corpus/torch_checkpoint): archives with
    views, a data descriptor and half storages, bare pickles, and a pickle torch.save wrote."""
    import zipfile
    seeds = {
        "valid_archive": VALID,
        "valid_descriptor": archive(VALID_PKL, {"0": F32x4}, descriptor=True),
        "valid_views": archive(state_dict(s("a"), tensor("0", 4, 1, [3], [1]), s("b"), tensor("0", 4, 0, [2, 2], [1, 2]),
                                          s("c"), tensor("1", 2, 0, [2], [1], "HalfStorage")),
                               {"0": F32x4, "1": b"\x00\x3c\x00\xc0"}),
        "valid_pickle": VALID_PKL,
        "metadata_pickle": proto() + ordered_dict() + b"(" + s("w") + tensor("0", 4, 0, [4], [1]) + b"u}"
                           + s("_metadata") + ordered_dict() + b"(" + s("") + b"}" + s("version") + i(1) + b"su" + b"sb.",
    }
    shard = ROOT / "tests" / "data" / "bin-twins" / "tiny-sharded" / "pytorch_model-00002-of-00002.bin"
    seeds["torch_pickle"] = zipfile.ZipFile(shard).read("pytorch_model-00002-of-00002/data.pkl")
    return seeds


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.bin"):
        old.unlink()
    all_cases = cases()
    for name, data in all_cases.items():
        (OUT / f"{name}.bin").write_bytes(data)
    total = sum(len(d) for d in all_cases.values())
    print(f"{len(all_cases)} files, {total} bytes, in {OUT}")
    seeds_dir = ROOT / "tests" / "fuzz" / "corpus" / "torch_checkpoint"
    seeds_dir.mkdir(parents=True, exist_ok=True)
    for name, data in fuzz_seeds().items():
        (seeds_dir / name).write_bytes(data)


if __name__ == "__main__":
    main()
