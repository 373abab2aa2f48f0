#!/usr/bin/python3
"""Writes pytorch_model.bin twins of the golden checkpoints with Debian's torch.save, for the
golden test that reads them through the C++ reader (tests/golden/test_bin_twins.cpp).

Each twin is a model folder under tests/data/bin-twins/<name>/ holding the original's config,
generation, preprocessor and tokenizer files and the same weights saved by torch.save in one of
the layouts real checkpoints use:

  tiny-plain    tiny-vit-gpt2 as an OrderedDict carrying `_metadata` (what Module.state_dict()
                returns, pickled with a BUILD), every tensor its own contiguous storage
  tiny-tied     decoder.lm_head.weight saved as the very tensor decoder.transformer.wte.weight
                (one storage, two keys, as GPT-2 .bin files carry it), and every other float tensor
                a contiguous view at its own offset of one flat storage
  tiny-f16      every float tensor converted to float16 (HalfStorage)
  tiny-sharded  two shards pytorch_model-0000{1,2}-of-00002.bin and pytorch_model.bin.index.json
  b-plain       tiny-vit-gpt2-b (bfloat16) saved to a file object, so the records sit under
                "archive/" (torch >= 2 names it so for paths too) rather than the file's stem
  b-views       tiny-vit-gpt2-b with non-contiguous views: every 2-D weight a transposed view of
                its transpose (column-major strides), the patch embedding in channels-last
                strides, each attention query/key/value weight a column slice of one wide storage
                (storage offset, row stride wider than the row), the attention-mask buffers as
                BoolStorage

tests/data/bin-twins/twins.json lists them with their original folder. The script is deterministic
(torch.save writes zero timestamps): a rerun rewrites byte-identical files.

usage: LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread /usr/bin/python3 tools/make_bin_twins.py
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xcaption_ref import safetensors_io  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
OUT = DATA / "bin-twins"
SIDE_FILES = ["config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json"]


def load_original(folder: str) -> "OrderedDict[str, torch.Tensor]":
    """The original's tensors in file (name) order, with their stored dtype (BF16 kept)."""
    tensors, dtypes, _ = safetensors_io.load(DATA / folder / "model.safetensors", as_float32=False)
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for name in sorted(tensors):
        arr = tensors[name]
        if dtypes[name] == "BF16":  # read as float32, exactly: narrowing back is exact too
            t = torch.from_numpy(np.array(arr, dtype=np.float32)).to(torch.bfloat16)
        else:
            t = torch.from_numpy(np.array(arr))  # np.array keeps 0-d arrays 0-d
        out[name] = t
    return out


def with_metadata(sd: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
    # Module.state_dict() sets this attribute; pickle writes it with BUILD.
    sd._metadata = OrderedDict([("", {"version": 1}), ("encoder", {"version": 1}), ("decoder", {"version": 1})])
    return sd


def new_folder(name: str, original: str) -> Path:
    folder = OUT / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for f in SIDE_FILES:
        shutil.copyfile(DATA / original / f, folder / f)
    return folder


def tied(sd):
    out = OrderedDict()
    floats = [n for n, t in sd.items() if t.is_floating_point() and t.dim() > 0]
    flat = torch.cat([sd[n].reshape(-1) for n in floats])
    at = 0
    views = {}
    for n in floats:
        k = sd[n].numel()
        views[n] = flat[at:at + k].view(sd[n].shape)
        at += k
    for n, t in sd.items():
        out[n] = views.get(n, t)
    out["decoder.lm_head.weight"] = out["decoder.transformer.wte.weight"]
    return out


def views(sd):
    out = OrderedDict()
    qkv = {}
    for n, t in sd.items():
        if ".attention.attention." in n and n.endswith(".weight"):
            qkv.setdefault(n.rsplit(".", 3)[0], {})[n.split(".")[-2]] = t
    wide = {}
    for prefix, parts in qkv.items():
        d = parts["query"].shape[0]
        # [pad | query | key | value | pad] side by side: each a column slice of one storage
        pad = torch.zeros(d, 3, dtype=parts["query"].dtype)
        wide[prefix] = torch.cat([pad, parts["query"], parts["key"], parts["value"], pad], dim=1)
    for n, t in sd.items():
        if ".attention.attention." in n and n.endswith(".weight"):
            prefix = n.rsplit(".", 3)[0]
            d = t.shape[1]
            col = 3 + d * ["query", "key", "value"].index(n.split(".")[-2])
            v = wide[prefix][:, col:col + d]
            assert not v.is_contiguous() and v.storage_offset() == col
        elif t.dtype == torch.uint8:
            v = t.to(torch.bool)
        elif t.dim() == 4:
            v = t.contiguous(memory_format=torch.channels_last)
        elif t.dim() == 2 and t.is_floating_point():
            v = t.t().contiguous().t()
        else:
            v = t
        assert torch.equal(v.to(t.dtype), t), n
        out[n] = v
    assert any(not v.is_contiguous() for v in out.values())
    return out


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    twins = OrderedDict()

    tiny = load_original("tiny-vit-gpt2")
    b = load_original("tiny-vit-gpt2-b")

    folder = new_folder("tiny-plain", "tiny-vit-gpt2")
    torch.save(with_metadata(OrderedDict(tiny)), folder / "pytorch_model.bin")
    twins["tiny-plain"] = {"original": "tiny-vit-gpt2", "layout": "plain"}

    folder = new_folder("tiny-tied", "tiny-vit-gpt2")
    torch.save(tied(tiny), folder / "pytorch_model.bin")
    twins["tiny-tied"] = {"original": "tiny-vit-gpt2", "layout": "tied"}

    folder = new_folder("tiny-f16", "tiny-vit-gpt2")
    half = OrderedDict((n, t.half() if t.is_floating_point() else t) for n, t in tiny.items())
    torch.save(half, folder / "pytorch_model.bin")
    twins["tiny-f16"] = {"original": "tiny-vit-gpt2", "layout": "f16"}

    folder = new_folder("tiny-sharded", "tiny-vit-gpt2")
    names = list(tiny)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = OrderedDict()
    total = 0
    for i, part in enumerate(shards, 1):
        shard_name = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
        torch.save(OrderedDict((n, tiny[n]) for n in part), folder / shard_name)
        for n in part:
            weight_map[n] = shard_name
            total += tiny[n].numel() * tiny[n].element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2) + "\n")
    twins["tiny-sharded"] = {"original": "tiny-vit-gpt2", "layout": "sharded"}

    folder = new_folder("b-plain", "tiny-vit-gpt2-b")
    buf = io.BytesIO()
    torch.save(OrderedDict(b), buf)  # a file object: records under "archive/"
    (folder / "pytorch_model.bin").write_bytes(buf.getvalue())
    twins["b-plain"] = {"original": "tiny-vit-gpt2-b", "layout": "plain"}

    folder = new_folder("b-views", "tiny-vit-gpt2-b")
    torch.save(views(b), folder / "pytorch_model.bin")
    twins["b-views"] = {"original": "tiny-vit-gpt2-b", "layout": "views"}

    (OUT / "twins.json").write_text(json.dumps(twins, indent=2) + "\n")
    for name in twins:
        size = sum(p.stat().st_size for p in (OUT / name).iterdir())
        print(f"{name}: {size} bytes")


if __name__ == "__main__":
    main()
