#!/usr/bin/python3
"""Trains the bundled shapes-world captioner (models/shapes-small) from scratch, on CPU.

One command reproduces the shipped model (fixed seeds, deterministic data order):

    OPENBLAS_NUM_THREADS=2 /usr/bin/python3 tools/train_shapes.py

Steps:
  1. render the training set (seed 101) and the validation set (seed 102) with the C++ renderer,
     `build/xcaption scenes --count N --seed S --out DIR`, under --work (git-ignored out/);
     the held-out evaluation seed 2026 is never rendered here;
  2. preprocess every image exactly like the engine (tools/xcaption_ref/preprocess.py: PIL bilinear
     resize to 112x112) into an in-memory uint8 cache (also saved as .npy next to the images);
  3. train the Hugging Face VisionEncoderDecoder of tools/xcaption_ref/modeling.py (ViT encoder,
     GPT-2 decoder with cross-attention) on the canonical (first) reference caption:
     - loss: cross-entropy of the next caption token, plus an auxiliary per-patch classifier on
       the encoder's output (shape, colour and size of the object under each patch, or
       background; weight aux_patch_weight), a training-only head that is not exported. Nothing
       supervises the attention maps: where the decoder's cross-attention looks is learned from
       the caption loss alone;
     - curriculum: the first curriculum_steps steps see single-object scenes as patch-aligned
       8x8-patch crops around the object (randomly flipped), then full scenes for `epochs`;
     - initialisation: HF's normal(0.02) except "mimetic" ViT attention weights and 2D sine-cosine
       position embeddings (--init mimetic, the default; the architecture is unchanged);
     progress lines give step, loss, images/s and ETA; a checkpoint is written periodically and
     an interrupted run resumes from it when started again with the same recipe;
  4. export an HF model folder to --out (config.json, model.safetensors in F16,
     generation_config.json, preprocessor_config.json, tokenizer.json, tokenizer_config.json),
     reload the exported (rounded) weights and report validation metrics: exact match, object
     precision/recall/F1, relation and order accuracy, and the attention pointing game.

`--smoke` trains a micro model on a few hundred scenes for a few dozen steps (about a minute) so
CI can check that the recipe still runs and that the engine loads its output.

`--device cuda` runs the same recipe on a GPU (recipe exploration only: the shipped model is trained
on the CPU; data rendered elsewhere can be brought as the work folder's resized_112.npy caches).

Threads: torch runs its own ops on --threads threads (default 1), float32 matrix products in
OpenBLAS with OPENBLAS_NUM_THREADS (default 2, set before torch is imported). Under bf16 autocast
(amp_bf16, the default) the matrix products run in oneDNN on torch's threads instead, so
--threads 2 is faster (models/shapes-small/README.md, "Training speed") but rounds differently
from the shipped model's --threads 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

# ---------------------------------------------------------------------------------------------
# the shapes-world grammar (ref: include/xcaption/scenes.hpp, vocabulary() order)

SHAPES = ["circle", "square", "triangle", "star", "diamond", "cross"]
COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
SIZES = ["small", "large"]
VOCABULARY = (["a", "an"] + SIZES + COLORS + SHAPES +
              ["to", "the", "left", "right", "of", "above", "below", "and", ","])
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
RELATIONS = {("to", "the", "left", "of"): "left of", ("to", "the", "right", "of"): "right of",
             ("above",): "above", ("below",): "below"}

# the seed of the held-out evaluation set: never rendered or read by this script
HELD_OUT_SEED = 2026
DEVICE = None  # torch.device, set by main (--device)


def split_words(text: str) -> List[str]:
    """HF pre-tokenizer `Whitespace` (\\w+|[^\\w\\s]+) after the `Lowercase` normalizer."""
    import re
    return re.findall(r"\w+|[^\w\s]+", text.lower())


TOKEN_ID = {t: i for i, t in enumerate(SPECIALS + VOCABULARY)}
ID_TOKEN = {i: t for t, i in TOKEN_ID.items()}


def encode_caption(text: str) -> List[int]:
    return [TOKEN_ID.get(w, UNK_ID) for w in split_words(text)]


def decode_ids(ids: Sequence[int]) -> str:
    """Word-level decode with special tokens skipped, then transformers' clean-up (" ," -> ",")."""
    words = [ID_TOKEN[i] for i in ids if i >= len(SPECIALS) and i in ID_TOKEN]
    return " ".join(words).replace(" ,", ",")


def parse_caption(words: Sequence[str]) -> Optional[Tuple[List[Tuple[str, str, Optional[str]]], Optional[str]]]:
    """(objects [(shape, color, size or None)], relation or None), or None outside the grammar."""
    pos = 0

    def obj():
        nonlocal pos
        if pos < len(words) and words[pos] in ("a", "an"):
            pos += 1
        else:
            return None
        size = None
        if pos < len(words) and words[pos] in SIZES:
            size = words[pos]
            pos += 1
        if pos + 1 < len(words) and words[pos] in COLORS and words[pos + 1] in SHAPES:
            pos += 2
            return (words[pos - 1], words[pos - 2], size)
        return None

    first = obj()
    if first is None:
        return None
    if pos == len(words):
        return [first], None
    for rel_words, rel in RELATIONS.items():
        n = len(rel_words)
        if tuple(words[pos:pos + n]) == rel_words:
            pos += n
            second = obj()
            return ([first, second], rel) if second is not None and pos == len(words) else None
    if words[pos] == ",":
        pos += 1
        second = obj()
        if second is None or pos >= len(words) or words[pos] != "and":
            return None
        pos += 1
        third = obj()
        return ([first, second, third], None) if third is not None and pos == len(words) else None
    return None


def relation_between(a: dict, b: dict) -> str:
    dx = b["center"][0] - a["center"][0]
    dy = b["center"][1] - a["center"][1]
    if abs(dx) > abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


@dataclass
class Score:
    parsed: bool = False
    caption_objects: int = 0
    scene_objects: int = 0
    matched: int = 0
    relation_correct: Optional[bool] = None   # 2-object scenes
    order_correct: Optional[bool] = None      # 3-object scenes
    exact: bool = False
    matching: Optional[List[Optional[int]]] = None  # caption object -> scene object


def score_caption(scene: dict, caption_ids: Sequence[int]) -> Score:
    """A Python version of scenes::score_caption plus the eval conventions of relation/order
    accuracy (every 2- or 3-object scene counts; a caption naming the wrong number of objects is
    wrong)."""
    objs = scene["objects"]
    s = Score(scene_objects=len(objs))
    text = decode_ids(caption_ids)
    s.exact = text in scene["captions"]
    parsed = parse_caption(split_words(text))
    if len(objs) == 2:
        s.relation_correct = False
    if len(objs) == 3:
        s.order_correct = False
    if parsed is None:
        return s
    cap, rel = parsed
    s.parsed = True
    s.caption_objects = len(cap)

    def ok(c, o):
        return c[0] == o["shape"] and c[1] == o["color"] and (c[2] is None or c[2] == o["size"])

    best = None  # (matched, structure correct, assignment)
    for choice in product(range(-1, len(objs)), repeat=len(cap)):
        used = [c for c in choice if c >= 0]
        if len(used) != len(set(used)) or any(not ok(cap[i], objs[c]) for i, c in enumerate(choice) if c >= 0):
            continue
        assign = [c if c >= 0 else None for c in choice]
        matched = len(used)
        good = False
        if matched == len(cap) == len(objs):
            if len(objs) == 2:
                good = relation_between(objs[assign[0]], objs[assign[1]]) == rel
            elif len(objs) == 3:
                xs = [objs[a]["center"][0] for a in assign]
                good = xs[0] < xs[1] < xs[2]
        if best is None or (matched, good) > best[:2]:
            best = (matched, good, assign)
    s.matched, good, s.matching = best
    if len(objs) == 2 and len(cap) == 2:
        s.relation_correct = good
    if len(objs) == 3 and len(cap) == 3:
        s.order_correct = good
    return s


def pointing_hit(attn_hw, scene: dict, obj: dict) -> bool:
    """attn_hw: (rows, cols) patch attention. The argmax cell's centre, mapped to image pixels,
    must lie in the object's box grown by half a cell (the rule of `xcaption eval`)."""
    rows, cols = attn_hw.shape
    flat = int(attn_hw.reshape(-1).argmax())
    r, c = divmod(flat, cols)
    w, h = scene["width"], scene["height"]
    x, y = (c + 0.5) * w / cols, (r + 0.5) * h / rows
    x0, y0, x1, y1 = obj["bbox"]
    tx, ty = 0.5 * w / cols, 0.5 * h / rows
    return x0 - tx <= x <= x1 + tx and y0 - ty <= y <= y1 + ty


# ---------------------------------------------------------------------------------------------
# recipe

@dataclass
class Recipe:
    image_size: int = 112
    patch_size: int = 8
    vit_hidden: int = 128
    vit_layers: int = 4
    vit_heads: int = 4
    vit_mlp: int = 512
    gpt_hidden: int = 128
    gpt_layers: int = 2
    gpt_heads: int = 4
    gpt_inner: int = 512
    n_positions: int = 32
    train_seed: int = 101
    val_seed: int = 102
    train_count: int = 64000
    val_count: int = 1000
    epochs: float = 2.75
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.01
    phase_lr_ratio: float = 0.5
    restart_epochs: float = 0.0
    restart_lr: float = 4e-4
    warmup_steps: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    init_seed: int = 0
    storage_dtype: str = "F16"
    amp_bf16: int = 1
    curriculum_steps: int = 5000
    init: str = "mimetic"
    aux_patch_weight: float = 3.0
    crop_grid: int = 8
    crop_flips: int = 1
    a_tokens: int = 0   # curriculum: keep this many patches (objects + background) instead of crops
    b_tokens: int = 0   # main phase: idem (0: full images)
    pos_scale: float = 1.0
    curriculum_max_objects: int = 1
    # renderer style of the training and validation scenes (`xcaption scenes --style`): "train" is
    # the shipped model's world; "wide" is issue 15's wider world (see README-grammar.md, Styles).
    scene_style: str = "train"

    def as_dict(self) -> dict:
        """The recipe as written to logs, checkpoints and summaries; with the train style it is the
        same as before scene_style existed (so its key and exported files do not change)."""
        d = dataclasses.asdict(self)
        if d["scene_style"] == "train":
            del d["scene_style"]
        return d

    def key(self) -> str:
        return hashlib.sha1(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:12]


# glibc tunable main() re-executes the trainer with (see there)
MALLOC_HUGEPAGES = "glibc.malloc.hugetlb=1"

SMOKE = dict(vit_hidden=32, vit_layers=1, vit_heads=2, vit_mlp=64, gpt_hidden=32, gpt_layers=1,
             gpt_heads=2, gpt_inner=64, train_count=320, val_count=64, epochs=2.0, batch_size=16,
             warmup_steps=10, lr=2e-3, curriculum_steps=20)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None,
                   help="model folder to write (default models/shapes-small; --smoke: out/shapes-smoke)")
    p.add_argument("--work", type=Path, default=None,
                   help="data, caches and checkpoints (default out/train_shapes, --smoke: out/train_shapes_smoke)")
    p.add_argument("--xcaption", type=Path, default=REPO / "build" / "xcaption",
                   help="the xcaption binary that renders the scenes")
    p.add_argument("--smoke", action="store_true", help="micro model, few scenes, few steps (CI)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--export-only", action="store_true",
                   help="export the final checkpoint again (no training)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--blas-threads", type=int, default=2,
                   help="OPENBLAS_NUM_THREADS unless already set in the environment")
    p.add_argument("--device", default="cpu",
                   help="torch device for training (cpu; cuda for recipe exploration on a GPU machine)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--val-every", type=int, default=500, help="steps between validation decodes")
    p.add_argument("--monitor-count", type=int, default=300, help="validation scenes decoded while training")
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (pilot runs)")
    p.add_argument("--init-from", type=Path, default=None, help="start from the weights of a checkpoint (experiments)")
    p.add_argument("--resume-from", type=Path, default=None,
                   help="resume from a checkpoint of a recipe that differs only in later stages")
    for f in dataclasses.fields(Recipe):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default),
                       default=None, help=f"recipe (default {f.default})")
    args = p.parse_args(argv)
    recipe = Recipe(**(SMOKE if args.smoke else {}))
    for f in dataclasses.fields(Recipe):
        v = getattr(args, f.name)
        if v is not None:
            setattr(recipe, f.name, v)
    if HELD_OUT_SEED in (recipe.train_seed, recipe.val_seed):
        p.error(f"seed {HELD_OUT_SEED} is the held-out evaluation seed; it must not be used for training")
    if args.out is None:
        args.out = REPO / ("out/shapes-smoke" if args.smoke else "models/shapes-small")
    if args.work is None:
        args.work = REPO / ("out/train_shapes_smoke" if args.smoke else "out/train_shapes")
    if args.smoke:
        args.log_every = min(args.log_every, 10)
        args.val_every = 10 ** 9
        args.monitor_count = min(args.monitor_count, recipe.val_count)
    return args, recipe


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ---------------------------------------------------------------------------------------------
# data

def render(xcaption: Path, out_dir: Path, seed: int, count: int, style: str = "train") -> List[dict]:
    """Renders `count` scenes of `seed` into out_dir unless they are there already."""
    jsonl = out_dir / "scenes.jsonl"

    def existing():
        if not jsonl.exists():
            return None
        with open(jsonl) as f:
            scenes = [json.loads(l) for l in f if l.strip()]
        if len(scenes) != count:
            return None
        # a preprocessed cache stands in for the images (data carried to another machine)
        if not any(out_dir.glob("resized_*.npy")) and not all((out_dir / s["file"]).exists() for s in scenes):
            return None
        return scenes

    scenes = existing()
    if scenes is None:
        if not xcaption.exists():
            raise SystemExit(f"{xcaption} not found: build xcaption first (tools/build.sh) or pass --xcaption")
        t0 = time.time()
        style_args = [] if style == "train" else ["--style", style]
        subprocess.run([str(xcaption), "scenes", "--count", str(count), "--seed", str(seed),
                        "--out", str(out_dir)] + style_args, check=True, stdout=subprocess.DEVNULL)
        scenes = existing()
        if scenes is None:
            raise SystemExit(f"{xcaption} scenes did not write {count} scenes to {out_dir}")
        log(f"rendered {count} scenes (seed {seed}) into {out_dir} in {time.time() - t0:.0f} s")
    return scenes


def _preprocess_one(job):
    path, size = job
    from xcaption_ref.config import ImageProcessorConfig
    from xcaption_ref.preprocess import load_image, resize
    cfg = ImageProcessorConfig(size={"height": size, "width": size}, resample=2)
    return resize(load_image(path), cfg)


def preprocess_split(out_dir: Path, scenes: List[dict], size: int):
    """uint8 (N, size, size, 3) after the processor's PIL resize, cached as a .npy file."""
    import numpy as np
    cache = out_dir / f"resized_{size}.npy"
    if cache.exists():
        arr = np.load(cache, mmap_mode="r")
        if arr.shape == (len(scenes), size, size, 3):
            return np.array(arr)  # into memory
    t0 = time.time()
    from multiprocessing import Pool
    jobs = [(str(out_dir / s["file"]), size) for s in scenes]
    with Pool(2) as pool:
        arrs = pool.map(_preprocess_one, jobs, chunksize=64)
    arr = np.stack(arrs)
    tmp = out_dir / f"resized_{size}.tmp.npy"
    np.save(tmp, arr)
    os.replace(tmp, cache)
    log(f"preprocessed {len(scenes)} images of {out_dir} in {time.time() - t0:.0f} s")
    return arr


def make_labels(scenes: List[dict], length: int):
    """Canonical caption ids + eos, padded with -100 (ignored by the loss)."""
    import numpy as np
    out = np.full((len(scenes), length), -100, dtype=np.int64)
    for i, s in enumerate(scenes):
        ids = encode_caption(s["captions"][0]) + [EOS_ID]
        if UNK_ID in ids:
            raise SystemExit(f"caption {s['captions'][0]!r} has a word outside the vocabulary")
        if len(ids) > length:
            raise SystemExit(f"caption {s['captions'][0]!r} is longer than {length - 1} tokens")
        out[i, :len(ids)] = ids
    return out


def patch_targets(scenes: List[dict], grid: int):
    """(N, grid * grid, 3) int64 targets of the auxiliary patch head: shape, colour and size of
    the object whose box holds the patch centre (mapped to the original image), 0 = background."""
    import numpy as np
    out = np.zeros((len(scenes), grid * grid, 3), dtype=np.int64)
    for i, s in enumerate(scenes):
        w, h = s["width"], s["height"]
        for k in range(grid * grid):
            r, c = divmod(k, grid)
            x, y = (c + 0.5) * w / grid, (r + 0.5) * h / grid
            for o in s["objects"]:
                x0, y0, x1, y1 = o["bbox"]
                if x0 <= x < x1 and y0 <= y < y1:
                    out[i, k] = (1 + SHAPES.index(o["shape"]), 1 + COLORS.index(o["color"]),
                                 1 + SIZES.index(o["size"]))
                    break
    return out


def crop_batch(images_u8, scenes: List[dict], grid: int, patch: int, crop: int, rng):
    """Patch-aligned crops of crop x crop patches holding each scene's objects (curriculum).
    Returns uint8 (B, crop * patch, crop * patch, 3) and the position index (1 + row * grid + col)
    of every cropped patch, (B, crop * crop)."""
    import numpy as np
    size = grid * patch
    out = np.empty((len(scenes), crop * patch, crop * patch, 3), dtype=np.uint8)
    pos = np.empty((len(scenes), crop * crop), dtype=np.int64)
    for i, s in enumerate(scenes):
        sx, sy = size / s["width"], size / s["height"]
        x0 = min(o["bbox"][0] for o in s["objects"]) * sx
        y0 = min(o["bbox"][1] for o in s["objects"]) * sy
        x1 = max(o["bbox"][2] for o in s["objects"]) * sx
        y1 = max(o["bbox"][3] for o in s["objects"]) * sy
        c_lo, c_hi = int(x0 // patch), min(grid - 1, int(math.ceil(x1 / patch)) - 1)
        r_lo, r_hi = int(y0 // patch), min(grid - 1, int(math.ceil(y1 / patch)) - 1)
        # origins whose window covers the objects' cells, else the closest fit
        def origin(lo_cell, hi_cell):
            lo, hi = max(0, hi_cell - crop + 1), max(0, min(lo_cell, grid - crop))
            if lo > hi:  # the objects span more than the window: centre it on them
                lo = hi = max(0, (lo_cell + hi_cell - crop + 1) // 2)
            return min(rng.randint(lo, hi + 1), grid - crop)

        c0, r0 = origin(c_lo, c_hi), origin(r_lo, r_hi)
        out[i] = images_u8[i][r0 * patch:(r0 + crop) * patch, c0 * patch:(c0 + crop) * patch]
        rr, cc = np.meshgrid(np.arange(r0, r0 + crop), np.arange(c0, c0 + crop), indexing="ij")
        pos[i] = 1 + (rr * grid + cc).reshape(-1)
    return out, pos


def object_cells(scene: dict, grid: int, flip_h: bool = False, flip_v: bool = False) -> List[int]:
    """Patch indices (row-major, 0-based) whose cell overlaps one of the scene's object boxes, in
    the model's squashed grid (optionally of the flipped image)."""
    cells = set()
    for o in scene["objects"]:
        x0, y0, x1, y1 = o["bbox"]
        c0, c1 = int(x0 * grid / scene["width"]), min(grid - 1, int(math.ceil(x1 * grid / scene["width"])) - 1)
        r0, r1 = int(y0 * grid / scene["height"]), min(grid - 1, int(math.ceil(y1 * grid / scene["height"])) - 1)
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                cells.add((grid - 1 - r if flip_v else r) * grid + (grid - 1 - c if flip_h else c))
    return sorted(cells)


def keep_tokens(scenes: List[dict], grid: int, tokens: int, rng, flips=None):
    """Token dropping (compute curriculum): for each scene every patch that overlaps an object box
    plus randomly chosen background patches, `tokens` patches in all (more when the objects need
    more, then for the whole batch). The caption stays true: only background is left out.
    Returns (B, T) 0-based patch indices, sorted."""
    import numpy as np
    keep = []
    for i, s in enumerate(scenes):
        f = 0 if flips is None else int(flips[i])
        keep.append(object_cells(s, grid, bool(f & 1), bool(f & 2)))
    t = max(tokens, max(len(k) for k in keep))
    out = np.empty((len(scenes), t), dtype=np.int64)
    for i, k in enumerate(keep):
        rest = np.setdiff1d(np.arange(grid * grid), k)
        out[i] = np.sort(np.concatenate([k, rng.choice(rest, t - len(k), replace=False)]))
    return out


def encode_tokens(model, pixels, pos_idx, select=None):
    """ViTModel.forward restricted to a subset of patches, plus CLS: either the patches of
    `pixels` (a crop of the model's input) with the position embeddings pos_idx (B, P), or, with
    `select` (B, P) 0-based patch indices, those patches of the full input. Same modules and
    math; attention simply sees fewer tokens."""
    import torch
    emb = model.encoder.embeddings
    x = emb.patch_embeddings(pixels)                   # (B, P, D)
    if select is not None:
        x = x.gather(1, select[..., None].expand(-1, -1, x.size(-1)))
        pos_idx = select + 1
    pe = emb.position_embeddings[0]                    # (1 + grid * grid, D)
    x = x + pe[pos_idx]
    cls = (emb.cls_token + pe[0]).expand(x.size(0), -1, -1)
    x = torch.cat([cls, x], 1)
    for layer in model.encoder.encoder.layer:
        x, _ = layer(x)
    return model.encoder.layernorm(x)


def pixel_lut():
    """float32 value of each uint8 level after rescale (float64 * 1/255 -> float32) and
    normalize ((x - 0.5) / 0.5 in float32), exactly as preprocess.py computes it."""
    import numpy as np
    x = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)
    return (x - np.float32(0.5)) / np.float32(0.5)


# ---------------------------------------------------------------------------------------------
# model

def build_model(r: Recipe):
    import torch
    from xcaption_ref.config import GPT2Config, ViTConfig, VisionEncoderDecoderConfig
    from xcaption_ref.modeling import Conv1D, VisionEncoderDecoder
    vit = ViTConfig(hidden_size=r.vit_hidden, num_hidden_layers=r.vit_layers,
                    num_attention_heads=r.vit_heads, intermediate_size=r.vit_mlp,
                    image_size=r.image_size, patch_size=r.patch_size, encoder_stride=r.patch_size,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    gpt = GPT2Config(vocab_size=len(TOKEN_ID), n_positions=r.n_positions, n_embd=r.gpt_hidden,
                     n_layer=r.gpt_layers, n_head=r.gpt_heads, n_inner=r.gpt_inner,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
                     decoder_start_token_id=BOS_ID)
    cfg = VisionEncoderDecoderConfig(encoder=vit, decoder=gpt, decoder_start_token_id=BOS_ID,
                                     pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=BOS_ID)
    torch.manual_seed(r.init_seed)
    model = VisionEncoderDecoder(cfg)
    # HF's _init_weights: normal(0, 0.02) linear/embedding weights, zero biases, unit layer norms;
    # GPT-2 scales its residual projections by 1/sqrt(2 n_layer).
    std = 0.02
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                torch.nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, Conv1D):
                m.weight.normal_(0.0, std if not name.endswith("c_proj") else std / math.sqrt(2 * r.gpt_layers))
                m.bias.zero_()
            elif isinstance(m, torch.nn.Embedding):
                m.weight.normal_(0.0, std)
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
        emb = model.encoder.embeddings
        torch.nn.init.trunc_normal_(emb.cls_token, std=std, a=-2 * std, b=2 * std)
        torch.nn.init.trunc_normal_(emb.position_embeddings, std=std, a=-2 * std, b=2 * std)
    if r.init == "mimetic":
        mimetic_init(model, r)
    return model


def sincos_2d(grid: int, d: int):
    """(1 + grid * grid, d): 2D sine-cosine position embeddings (rows in the first half of the
    channels, columns in the second), a zero row for CLS."""
    import torch
    y, x = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                          indexing="ij")
    q = d // 4
    omega = 1.0 / 10000.0 ** (torch.arange(q, dtype=torch.float32) / q)
    oy, ox = y.reshape(-1, 1) * omega, x.reshape(-1, 1) * omega
    pe = torch.cat([oy.sin(), oy.cos(), ox.sin(), ox.cos()], 1)
    return torch.cat([torch.zeros(1, d), pe], 0)


def mimetic_init(model, r: Recipe) -> None:
    """Initialisation only (the architecture is unchanged): 2D sine-cosine position embeddings and
    "mimetic" ViT attention weights (ref: Trockman & Kolter 2023, Mimetic Initialization of
    Self-Attention Layers): W_q W_k^T ~ 0.7 Z + 0.7 I per head, so that tokens start by attending
    to similar tokens (same colour, nearby position), and W_v W_o ~ 0.4 Z - 0.4 I."""
    import torch
    cfg = model.config.encoder
    d, heads = cfg.hidden_size, cfg.num_attention_heads
    hd = d // heads
    gen = torch.Generator().manual_seed(r.init_seed + 1)
    with torch.no_grad():
        grid = cfg.image_size // cfg.patch_size
        model.encoder.embeddings.position_embeddings[0].copy_(r.pos_scale * sincos_2d(grid, d))
        for layer in model.encoder.encoder.layer:
            att, out = layer.attention.attention, layer.attention.output.dense
            for h in range(heads):
                rows = slice(h * hd, (h + 1) * hd)
                z = torch.randn(d, d, generator=gen) / math.sqrt(d)
                u, sv, vh = torch.linalg.svd(0.7 * z + 0.7 * torch.eye(d))
                att.query.weight[rows] = (u[:, :hd] * sv[:hd].sqrt()).T
                att.key.weight[rows] = (vh[:hd].T * sv[:hd].sqrt()).T
            z = torch.randn(d, d, generator=gen) / math.sqrt(d)
            u, sv, vh = torch.linalg.svd(0.4 * z - 0.4 * torch.eye(d))
            att.value.weight.copy_((u * sv.sqrt()).T)
            out.weight.copy_(vh.T * sv.sqrt())


def param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or "embeddings" in name or "wpe" in name or "wte" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def stage_ends(r: Recipe, steps_per_epoch: int) -> Tuple[int, int, int]:
    """Last step (exclusive) of the curriculum, of the main phase and of the warm restart."""
    a = r.curriculum_steps
    b = a + int(round(r.epochs * steps_per_epoch))
    return a, b, b + int(round(r.restart_epochs * steps_per_epoch))


def lr_at(step: int, r: Recipe, steps_per_epoch: int) -> float:
    """Linear warmup, then a half cosine from lr to lr * phase_lr_ratio over the curriculum, a half
    cosine from there to lr * min_lr_ratio over the main phase and, when restart_epochs > 0, a warm
    restart: 100 steps up to restart_lr, then a half cosine back to lr * min_lr_ratio."""
    if step < r.warmup_steps:
        return r.lr * (step + 1) / r.warmup_steps

    def cosine(t, hi, lo):
        return lo + (hi - lo) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, t))))

    a, b, c = stage_ends(r, steps_per_epoch)
    low = r.lr * r.min_lr_ratio
    mid = r.lr * r.phase_lr_ratio if a > 0 else r.lr
    if step < a:
        return cosine((step - r.warmup_steps) / max(1, a - r.warmup_steps), r.lr, mid)
    if step < b:
        start = max(a, r.warmup_steps)
        return cosine((step - start) / max(1, b - start), mid, low)
    ramp = 100
    if step < b + ramp:
        return low + (r.restart_lr - low) * (step - b + 1) / ramp
    return cosine((step - b - ramp) / max(1, c - b - ramp), r.restart_lr, low)


# ---------------------------------------------------------------------------------------------
# greedy decoding and validation metrics

def greedy_batch(model, pixels, max_new_tokens: int = 20, pos_idx=None):
    """Batched greedy decoding (argmax of the raw logits, as the engine's default). Returns
    (token ids per image without the start token, eos included when produced; cross-attention
    (B, steps, layers, heads, N) of the step that produced each token)."""
    import torch
    with torch.no_grad():
        enc = model.project(model.encode(pixels) if pos_idx is None else encode_tokens(model, pixels, pos_idx))
        cross = model.decoder.cross_kv(enc)
        b = pixels.size(0)
        cur = torch.full((b, 1), BOS_ID, dtype=torch.long, device=pixels.device)
        done = torch.zeros(b, dtype=torch.bool, device=pixels.device)
        past = None
        ids, attns = [], []
        for _ in range(max_new_tokens):
            out = model.decoder(cur, past=past, cross=cross, output_attentions=True)
            past = out.past
            nxt = out.logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, PAD_ID), nxt)
            ids.append(nxt)
            attns.append(torch.stack([a[:, :, -1] for a in out.cross_attentions], 1))
            done |= nxt == EOS_ID
            cur = nxt[:, None]
            if bool(done.all()):
                break
        ids = torch.stack(ids, 1).tolist()
        attns = torch.stack(attns, 1).float().cpu().numpy()
    result = []
    for row in ids:
        seq = []
        for t in row:
            seq.append(t)
            if t == EOS_ID:
                break
        result.append(seq)
    return result, attns


def evaluate(model, images_u8, scenes: List[dict], grid: int, batch: int = 100) -> Dict[str, float]:
    """Exact match, object P/R/F1, relation and order accuracy, pointing game (per decoder layer
    and averaged over layers) of greedy captions."""
    import numpy as np
    import torch
    lut = torch.from_numpy(pixel_lut()).to(DEVICE)
    model.eval()
    n = len(scenes)
    tot = dict(exact=0, cap=0, scene=0, matched=0, rel_n=0, rel_ok=0, ord_n=0, ord_ok=0, parsed=0,
               one_n=0, one_shape=0, one_color=0, one_size=0)
    n_layers = None
    hits, trials = None, 0
    examples = []
    for b0 in range(0, n, batch):
        u8 = torch.from_numpy(np.ascontiguousarray(images_u8[b0:b0 + batch])).to(DEVICE)
        pix = lut[u8.long()].permute(0, 3, 1, 2).contiguous()
        seqs, attns = greedy_batch(model, pix)
        if n_layers is None:
            n_layers = attns.shape[2]
            hits = np.zeros(n_layers + 1, dtype=np.int64)
        for j, seq in enumerate(seqs):
            scene = scenes[b0 + j]
            s = score_caption(scene, seq)
            if len(examples) < 4 and not s.exact:
                examples.append(f"{decode_ids(seq)!r} vs {scene['captions'][0]!r}")
            tot["exact"] += s.exact
            tot["parsed"] += s.parsed
            tot["cap"] += s.caption_objects
            tot["scene"] += s.scene_objects
            tot["matched"] += s.matched
            if s.relation_correct is not None:
                tot["rel_n"] += 1
                tot["rel_ok"] += s.relation_correct
            if s.order_correct is not None:
                tot["ord_n"] += 1
                tot["ord_ok"] += s.order_correct
            if not s.parsed:
                continue
            words = split_words(decode_ids(seq))
            if len(scene["objects"]) == 1:
                o = scene["objects"][0]
                tot["one_n"] += 1
                tot["one_shape"] += o["shape"] in words
                tot["one_color"] += o["color"] in words
                tot["one_size"] += o["size"] in words
            # k-th shape word of the caption names caption object k
            shape_steps = [t for t, tok in enumerate(seq) if ID_TOKEN.get(tok) in SHAPES]
            for k, step in enumerate(shape_steps):
                if k >= len(s.matching) or s.matching[k] is None:
                    continue
                obj = scene["objects"][s.matching[k]]
                a = attns[j, step, :, :, 1:].mean(axis=1)  # (layers, patches), heads averaged
                trials += 1
                for layer in range(n_layers):
                    hits[layer] += pointing_hit(a[layer].reshape(grid, grid), scene, obj)
                hits[n_layers] += pointing_hit(a.mean(axis=0).reshape(grid, grid), scene, obj)
    p = tot["matched"] / max(1, tot["cap"])
    r = tot["matched"] / max(1, tot["scene"])
    m = {
        "images": n,
        "exact_match": tot["exact"] / n,
        "parse_rate": tot["parsed"] / n,
        "object_precision": p,
        "object_recall": r,
        "object_f1": 2 * p * r / (p + r) if p + r > 0 else 0.0,
        "relation_accuracy": tot["rel_ok"] / max(1, tot["rel_n"]),
        "order_accuracy": tot["ord_ok"] / max(1, tot["ord_n"]),
        "pointing_trials": trials,
        "one_object_shape": tot["one_shape"] / max(1, tot["one_n"]),
        "one_object_color": tot["one_color"] / max(1, tot["one_n"]),
    }
    for layer in range(n_layers or 0):
        m[f"pointing_layer{layer}"] = hits[layer] / max(1, trials)
    if n_layers:
        m["pointing_mean"] = hits[n_layers] / max(1, trials)
    m["examples"] = examples
    return m


def evaluate_crops(model, images_u8, scenes: List[dict], r: Recipe) -> float:
    """Curriculum monitor: share of 1-object validation scenes whose crop caption names the right
    shape."""
    import numpy as np
    import torch
    lut = torch.from_numpy(pixel_lut()).to(DEVICE)
    grid = r.image_size // r.patch_size
    one = [i for i, s in enumerate(scenes) if len(s["objects"]) == 1]
    u8, pos = crop_batch(images_u8[one], [scenes[i] for i in one], grid, r.patch_size, r.crop_grid,
                         np.random.RandomState(0))
    pix = lut[torch.from_numpy(u8).to(DEVICE).long()].permute(0, 3, 1, 2).contiguous()
    model.eval()
    seqs, _ = greedy_batch(model, pix, pos_idx=torch.from_numpy(pos).to(DEVICE))
    hits = sum(scenes[i]["objects"][0]["shape"] in split_words(decode_ids(q)) for i, q in zip(one, seqs))
    return hits / max(1, len(one))


def format_metrics(m: Dict) -> str:
    keys = ["exact_match", "object_f1", "relation_accuracy", "order_accuracy", "one_object_shape", "one_object_color"]
    keys += sorted(k for k in m if k.startswith("pointing_") and k != "pointing_trials")
    return " ".join(f"{k}={m[k]:.4f}" for k in keys)


# ---------------------------------------------------------------------------------------------
# export

def tokenizer_json() -> dict:
    vocab = dict(TOKEN_ID)
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(SPECIALS)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    }


def tokenizer_config_json(r: Recipe) -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "model_max_length": r.n_positions,
        "clean_up_tokenization_spaces": True,
    }


def export(model, r: Recipe, out: Path) -> None:
    from xcaption_ref.config import GenerationConfig, ImageProcessorConfig, write_json
    from xcaption_ref.modeling import save_pretrained
    gen = GenerationConfig(max_new_tokens=20, num_beams=1, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
                           pad_token_id=PAD_ID, decoder_start_token_id=BOS_ID)
    pre = ImageProcessorConfig(size={"height": r.image_size, "width": r.image_size}, resample=2,
                               image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    out.mkdir(parents=True, exist_ok=True)
    save_pretrained(model, out, dtype=r.storage_dtype, generation_config=gen, preprocessor=pre,
                    tokenizer=tokenizer_json())
    write_json(out / "tokenizer_config.json", tokenizer_config_json(r))


# ---------------------------------------------------------------------------------------------
# training

def save_checkpoint(path: Path, model, opt, step: int, r: Recipe, extra: dict, aux_head=None) -> None:
    import torch
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "aux_head": aux_head.state_dict() if aux_head is not None else None,
                "recipe": r.as_dict(), "recipe_key": r.key(), **extra}, tmp)
    os.replace(tmp, path)


def main(argv=None) -> int:
    args, r = parse_args(argv)
    if argv is None and MALLOC_HUGEPAGES.split("=")[0] not in os.environ.get("GLIBC_TUNABLES", ""):
        # Training allocates and frees the same large blocks (activations, attention maps) every
        # step. glibc hands blocks above its mmap threshold back to the kernel, so each step faults
        # fresh 4 KiB pages in again; on a VM where page faults had become slow that made the main
        # phase 2.5x slower within half an hour (44 -> 17 images/s). Transparent huge pages for
        # malloc's blocks (glibc >= 2.35; older ones ignore the tunable) take 512x fewer faults.
        # glibc reads tunables at start-up only, hence the one re-exec; a GLIBC_TUNABLES that sets
        # glibc.malloc.hugetlb already is left as it is.
        env = dict(os.environ)
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), MALLOC_HUGEPAGES]))
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.blas_threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numpy as np
    import torch
    from xcaption_ref.modeling import shift_tokens_right
    torch.set_num_threads(args.threads)
    global DEVICE
    DEVICE = torch.device(args.device)
    t_start = time.time()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    log(f"recipe {r.key()}: {json.dumps(r.as_dict())}")
    log(f"threads: torch {torch.get_num_threads()}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}; "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')}")

    if r.scene_style not in ("train", "wide", "unseen"):
        raise SystemExit(f"--scene-style must be train or wide, got {r.scene_style!r}")
    if r.scene_style == "unseen":
        raise SystemExit("--scene-style unseen is the evaluation style: no model trains on it")
    tag = "" if r.scene_style == "train" else f"_{r.scene_style}"  # the train style keeps its folder names
    train_dir = work / f"train_s{r.train_seed}_n{r.train_count}{tag}"
    val_dir = work / f"val_s{r.val_seed}_n{r.val_count}{tag}"
    train_scenes = render(args.xcaption, train_dir, r.train_seed, r.train_count, r.scene_style)
    val_scenes = render(args.xcaption, val_dir, r.val_seed, r.val_count, r.scene_style)
    train_u8 = preprocess_split(train_dir, train_scenes, r.image_size)
    val_u8 = preprocess_split(val_dir, val_scenes, r.image_size)
    label_len = 15  # the longest caption has 14 tokens, + eos
    train_labels = torch.from_numpy(make_labels(train_scenes, label_len)).to(DEVICE)
    make_labels(val_scenes, label_len)  # checks the vocabulary
    grid = r.image_size // r.patch_size
    lut = torch.from_numpy(pixel_lut()).to(DEVICE)
    log(f"data ready in {time.time() - t_start:.0f} s: {len(train_scenes)} train, {len(val_scenes)} val")

    model = build_model(r).to(DEVICE)
    aux_head = None
    if r.aux_patch_weight > 0:
        # auxiliary per-patch classifier on the encoder output (not exported)
        torch.manual_seed(r.init_seed + 7)
        aux_head = torch.nn.Linear(r.vit_hidden, 1 + len(SHAPES) + 1 + len(COLORS) + 1 + len(SIZES)).to(DEVICE)
        train_patch = torch.from_numpy(patch_targets(train_scenes, grid)).to(DEVICE)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f} M parameters")
    groups = param_groups(model, r.weight_decay)
    if aux_head is not None:
        groups.append({"params": list(aux_head.parameters()), "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=r.lr, betas=(0.9, 0.98), eps=1e-8)
    steps_per_epoch = len(train_scenes) // r.batch_size
    # curriculum: the first `curriculum_steps` steps draw only scenes with at most
    # `curriculum_max_objects` objects, then `epochs` passes over the whole set follow
    easy = np.array([i for i, s in enumerate(train_scenes) if len(s["objects"]) <= r.curriculum_max_objects])
    easy_steps_per_pass = max(1, len(easy) // r.batch_size)
    total = stage_ends(r, steps_per_epoch)[2]
    ckpt = work / f"checkpoint_{r.key()}.pt"
    step, history, train_seconds = 0, [], 0.0
    if args.init_from is not None:
        model.load_state_dict(torch.load(args.init_from, map_location=DEVICE)["model"])
        log(f"weights from {args.init_from}")
    if args.resume_from is not None and not ckpt.exists():
        state = torch.load(args.resume_from, map_location="cpu")
        log(f"resuming from {args.resume_from} (recipe {state.get('recipe_key')})")
        state["recipe_key"] = r.key()
        torch.save(state, ckpt)
    if ckpt.exists() and not args.fresh:
        state = torch.load(ckpt, map_location=DEVICE)
        if state.get("recipe_key") == r.key():
            model.load_state_dict(state["model"])
            if aux_head is not None:
                aux_head.load_state_dict(state["aux_head"])
            opt.load_state_dict(state["opt"])
            step, history = state["step"], state.get("history", [])
            train_seconds = state.get("train_seconds", 0.0)
            log(f"resumed from {ckpt} at step {step}/{total}")
        else:
            log(f"{ckpt} holds another recipe ({state.get('recipe_key')}); starting afresh")

    if not args.export_only:
        stop = total if args.max_steps is None else min(total, args.max_steps)
        model.train()
        t_win, n_win, loss_win, aux_win = time.time(), 0, [], []
        t_seg = time.time()
        try:
            while step < stop:
                if step < r.curriculum_steps:
                    epoch, k = divmod(step, easy_steps_per_pass)
                    order = easy[np.random.RandomState(r.init_seed * 1000 + 500 + epoch).permutation(len(easy))]
                else:
                    epoch, k = divmod(step - r.curriculum_steps, steps_per_epoch)
                    order = np.random.RandomState(r.init_seed * 1000 + epoch).permutation(len(train_scenes))
                idx = np.sort(order[k * r.batch_size:(k + 1) * r.batch_size])
                stage_b = stage_ends(r, steps_per_epoch)[1]
                crop = r.crop_grid if step < r.curriculum_steps else 0
                tokens = (r.a_tokens if step < r.curriculum_steps else r.b_tokens if step < stage_b else 0)
                pos_idx = select = cells_np = None  # cells_np: original cell of each encoder token
                if tokens:
                    trng = np.random.RandomState(r.init_seed * 7919 + step)
                    u8n = np.array(train_u8[idx])
                    flips = None
                    if step < r.curriculum_steps and r.crop_flips:
                        # 1-object captions do not change under horizontal/vertical flips
                        flips = trng.randint(0, 4, len(idx))
                        u8n[flips & 1 == 1] = u8n[flips & 1 == 1][:, :, ::-1]
                        u8n[flips & 2 == 2] = u8n[flips & 2 == 2][:, ::-1]
                    sel_np = keep_tokens([train_scenes[i] for i in idx], grid, tokens, trng, flips)
                    select = torch.from_numpy(sel_np).to(DEVICE)
                    u8 = torch.from_numpy(np.ascontiguousarray(u8n))
                    # the original cell under each kept (possibly flipped) cell, for the auxiliary head
                    rr, cc = np.divmod(sel_np, grid)
                    if flips is not None:
                        cc = np.where((flips & 1 == 1)[:, None], grid - 1 - cc, cc)
                        rr = np.where((flips & 2 == 2)[:, None], grid - 1 - rr, rr)
                    cells_np = rr * grid + cc
                elif crop:
                    u8c, pos_np = crop_batch(train_u8[idx], [train_scenes[i] for i in idx], grid, r.patch_size,
                                             crop, np.random.RandomState(r.init_seed * 7919 + step))
                    if r.crop_flips:
                        # 1-object captions do not change under horizontal/vertical flips
                        flips = np.random.RandomState(r.init_seed * 7919 + step + 1).randint(0, 4, len(idx))
                        u8c[flips & 1 == 1] = u8c[flips & 1 == 1][:, :, ::-1]
                        u8c[flips & 2 == 2] = u8c[flips & 2 == 2][:, ::-1]
                    # the original cell under each cropped (possibly flipped) patch
                    cells_np = (pos_np - 1).reshape(len(idx), crop, crop)
                    if r.crop_flips:
                        cells_np[flips & 1 == 1] = cells_np[flips & 1 == 1][:, :, ::-1]
                        cells_np[flips & 2 == 2] = cells_np[flips & 2 == 2][:, ::-1]
                    cells_np = cells_np.reshape(len(idx), -1)
                    u8, pos_idx = torch.from_numpy(np.ascontiguousarray(u8c)), torch.from_numpy(pos_np).to(DEVICE)
                else:
                    u8 = torch.from_numpy(train_u8[idx])
                pix = lut[u8.to(DEVICE).long()].permute(0, 3, 1, 2).contiguous()
                labels = train_labels[torch.from_numpy(idx).to(DEVICE)]
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, r, steps_per_epoch)
                # VisionEncoderDecoder.forward(pix, labels=labels), spelled out to reach the
                # encoder output (crops, auxiliary head); bf16 autocast: matrix products in oneDNN
                # bf16 (2-3x faster here than OpenBLAS float32), float32 master weights and loss
                with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=bool(r.amp_bf16)):
                    enc = (model.encode(pix) if pos_idx is None and select is None
                           else encode_tokens(model, pix, pos_idx, select))
                    dec_in = shift_tokens_right(labels, PAD_ID, BOS_ID)
                    logits = model.decoder(dec_in, encoder_hidden_states=model.project(enc)).logits
                    aux_logits = aux_head(enc[:, 1:]) if aux_head is not None else None
                loss = torch.nn.functional.cross_entropy(
                    logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
                caption_loss = float(loss)
                if aux_logits is not None:
                    t = train_patch[torch.from_numpy(idx).to(DEVICE)]  # (B, grid * grid, 3)
                    if cells_np is not None:
                        t = t.gather(1, torch.from_numpy(cells_np).to(DEVICE)[..., None].expand(-1, -1, 3))
                    parts = torch.split(aux_logits.float(), [1 + len(SHAPES), 1 + len(COLORS), 1 + len(SIZES)], -1)
                    aux = sum(torch.nn.functional.cross_entropy(pl.reshape(-1, pl.size(-1)), t[..., j].reshape(-1))
                              for j, pl in enumerate(parts)) / 3
                    loss = loss + r.aux_patch_weight * aux
                    aux_win.append(float(aux))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if r.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
                opt.step()
                step += 1
                n_win += len(idx)
                loss_win.append(caption_loss)
                if step % args.log_every == 0 or step == stop:
                    now = time.time()
                    ips = n_win / (now - t_win)
                    eta = (stop - step) * r.batch_size / ips
                    elapsed = train_seconds + now - t_seg
                    mean_loss = sum(loss_win) / len(loss_win)
                    history.append({"step": step, "loss": mean_loss, "images_per_s": ips, "elapsed_s": elapsed})
                    phase = (f"curriculum {step / easy_steps_per_pass:.2f}" if step <= r.curriculum_steps else
                             f"epoch {(step - r.curriculum_steps) / steps_per_epoch:.2f}")
                    aux_txt = f" aux {sum(aux_win) / len(aux_win):.4f}" if aux_win else ""
                    log(f"step {step}/{stop} {phase} loss {mean_loss:.4f}{aux_txt} "
                        f"lr {lr_at(step - 1, r, steps_per_epoch):.2e} {ips:.1f} img/s elapsed {elapsed / 60:.1f} min "
                        f"ETA {eta / 60:.1f} min")
                    t_win, n_win, loss_win, aux_win = now, 0, [], []
                if step % args.ckpt_every == 0 or step == stop:
                    train_seconds += time.time() - t_seg
                    t_seg = time.time()
                    save_checkpoint(ckpt, model, opt, step, r, {"history": history, "train_seconds": train_seconds}, aux_head)
                if step % args.val_every == 0 and (step < stop or args.max_steps is not None):
                    t_val = time.time()
                    if r.crop_grid and step < r.curriculum_steps:
                        acc = evaluate_crops(model, val_u8[:args.monitor_count], val_scenes[:args.monitor_count], r)
                        log(f"val@{step}: curriculum crops, 1-object shape accuracy {acc:.4f}")
                        m = {"crop_shape_accuracy": acc, "examples": []}
                    else:
                        m = evaluate(model, val_u8[:args.monitor_count], val_scenes[:args.monitor_count], grid)
                        log(f"val@{step} ({args.monitor_count} scenes, {time.time() - t_val:.0f} s): {format_metrics(m)}")
                    for e in m["examples"][:2]:
                        log(f"  e.g. {e}")
                    history.append({"step": step, "val": {k: v for k, v in m.items() if k != "examples"}})
                    model.train()
                    t_seg += time.time() - t_val  # validation time is not training time
                    t_win += time.time() - t_val
        except KeyboardInterrupt:
            train_seconds += time.time() - t_seg
            save_checkpoint(ckpt, model, opt, step, r, {"history": history, "train_seconds": train_seconds}, aux_head)
            log(f"interrupted: checkpoint at step {step} in {ckpt}; run again to resume")
            return 130
        if step < total:
            log(f"stopped at step {step}/{total} (--max-steps); not exporting")
            return 0
        log(f"training done: {total} steps, {train_seconds / 60:.1f} min of training")

    from xcaption_ref.modeling import load_pretrained
    export(model, r, args.out)
    log(f"exported to {args.out} ({sum(f.stat().st_size for f in args.out.iterdir()) / 1e6:.2f} MB)")
    exported = load_pretrained(args.out).model.to(DEVICE)  # the rounded (storage dtype) weights, in float32
    t_val = time.time()
    m = evaluate(exported, val_u8, val_scenes, grid)
    log(f"validation of the exported model ({len(val_scenes)} scenes of seed {r.val_seed}, "
        f"{time.time() - t_val:.0f} s): {format_metrics(m)}")
    summary = {"recipe": r.as_dict(), "recipe_key": r.key(), "parameters": n_params,
               "steps": total, "train_seconds": train_seconds, "wall_seconds": time.time() - t_start,
               "validation": m, "history": history,
               "threads": {"torch": torch.get_num_threads(), "openblas": os.environ["OPENBLAS_NUM_THREADS"]}}
    with open(work / "summary.json", "w") as f:
        json.dump(summary, f, indent=1)
    log(f"summary in {work / 'summary.json'}; total wall time {(time.time() - t_start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
