#!/usr/bin/python3
"""Writes a random-weight Florence-2 folder with the real shapes of microsoft/Florence-2-base
(--size base, 0.23 B) or -large (--size large, 0.77 B), in the hub remote-code layout (default) or
the transformers-native layout (--layout native, florence-community/Florence-2-*), for checks
against the reference at real scale and for benchmarks; the folder is never committed (out/).

  vision  DaViT 768x768: dims base 128/256/512/1024 (large 256/512/1024/2048), depths 1/1/9/1,
          heads = groups = dim / 32, window 12, stage grids 192/96/48/24; projector to 768
          (large 1024), 2-D positions 50x50, temporal table 100 rows: 577 image tokens
  text    BART base: d_model 768, 6 + 6 layers, 12 heads, FFN 3072 (large: 1024, 12 + 12, 16
          heads, 4096), max_position_embeddings 1024 (--max-positions; the -large hub main
          branch holds a 4096-position model), vocab 51289 (remote) / 51328 (native, with
          `<image>` 51289 and the padding rows)
  ids     <s> 0 = forced bos, <pad> 1, </s> 2 = eos = decoder start, <unk> 3, <mask> 50264,
          <od> 50265 ... <loc_0> 50269 ... <loc_999> 51268 ... <and> 51288

config.json / generation_config.json / preprocessor_config.json carry the hub keys (see
tools/xcaption_ref/florence2_files.py). The real BART vocabulary cannot be downloaded here, so
the tokenizer is synthetic and of the right size: BART's specials, the 256 byte tokens, 300 merges
learnt from caption-like text (so the task prompts tokenize into words), then synthetic merges
(letter pairs, triples, ...) up to 50265 entries with `<mask>` last. Captions are gibberish; the
computation is the real one.

Weights: N(0, 0.02)-style linear weights scaled by 1/sqrt(fan-in), layer norms near identity,
embeddings N(0, 0.5) and random-sign gains on the last decoder LayerNorm (the logits do not just
repeat the input token through the tied head); benchmarks pass min_new_tokens anyway.

usage: /usr/bin/python3 tools/make_random_florence2.py OUT_DIR [--size base|large]
       [--layout remote|native] [--seed N] [--max-positions N]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokenizer_reference import BYTE_TO_CHAR, train_bpe  # noqa: E402
from xcaption_ref import florence2 as fl2  # noqa: E402
from xcaption_ref import florence2_files as ff  # noqa: E402

SIZES = {
    "base": dict(vision=dict(dims=[128, 256, 512, 1024], heads=[4, 8, 16, 32], projection_dim=768),
                 text=dict(d_model=768, heads=12, ffn=3072, encoder_layers=6, decoder_layers=6)),
    "large": dict(vision=dict(dims=[256, 512, 1024, 2048], heads=[8, 16, 32, 64], projection_dim=1024),
                  text=dict(d_model=1024, heads=16, ffn=4096, encoder_layers=12, decoder_layers=12)),
}
BASE_VOCAB = 50265
IMAGE_SIZE = 768
CORPUS_MERGES = 300


def vocabulary():
    """BART-sized byte-level BPE: trained merges on caption text, then synthetic ones."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_florence2_golden import CORPUS  # noqa: E402
    byte_vocab, merges = train_bpe(CORPUS, CORPUS_MERGES)
    tokens = dict(byte_vocab)
    merges = list(merges)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    starts = [BYTE_TO_CHAR[0x20] + c for c in letters]  # "Ġa" ... as merges of ("Ġ", "a")
    want = BASE_VOCAB - len(ff.SPECIALS) - 1  # <mask> last

    def add(a, b):
        t = a + b
        if t in tokens or len(tokens) >= want:
            return False
        tokens[t] = len(tokens)
        merges.append((a, b))
        return True

    for c in letters:
        add(BYTE_TO_CHAR[0x20], c)
    level = [s for s in starts if s in tokens] + [a + b for a in letters for b in letters]
    for a in letters:
        for b in letters:
            add(a, b)
    while len(tokens) < want:
        nxt = []
        for t in level:
            for c in letters:
                if add(t, c):
                    nxt.append(t + c)
                if len(tokens) >= want:
                    break
            if len(tokens) >= want:
                break
        level = nxt
    vocab = ff.bart_vocab(tokens)
    assert len(vocab) == BASE_VOCAB, len(vocab)
    return vocab, merges


def fill_weights(model: fl2.Florence2, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cfg = model.config
    with torch.no_grad():
        for name, v in model.state_dict().items():
            shape = tuple(v.shape)
            if name.endswith("pos_idx_to_embed") or name == "final_logits_bias":
                continue
            leaf = name.rsplit(".", 1)[-1]
            parts = name.split(".")
            is_norm = (len(parts) > 1 and "norm" in parts[-2]) or "layernorm" in name or "layer_norm" in name
            if is_norm:
                a = 1.0 + 0.1 * rng.standard_normal(shape) if leaf == "weight" else 0.02 * rng.standard_normal(shape)
            elif leaf == "bias":
                a = 0.02 * rng.standard_normal(shape)
            elif "embed_positions" in name or "position_embed" in name:
                a = 0.1 * rng.standard_normal(shape)
            elif name == "language_model.shared.weight":
                a = 0.5 * rng.standard_normal(shape)
            elif len(shape) == 4:
                fan_in = shape[1] * shape[2] * shape[3]
                a = (0.3 if shape[1] == 1 else 1.0) / math.sqrt(fan_in) * rng.standard_normal(shape)
            else:
                a = 1.0 / math.sqrt(shape[1]) * rng.standard_normal(shape)
            v.copy_(torch.from_numpy(a.astype(np.float32)))
        last = model.language_model.decoder.layers[-1].final_layer_norm.weight
        signs = torch.from_numpy(np.where(rng.standard_normal(cfg.d_model) < 0, -1.0, 1.0).astype(np.float32))
        last.mul_(signs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", choices=sorted(SIZES), default="base")
    ap.add_argument("--layout", choices=["remote", "native"], default="remote")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-positions", type=int, default=1024)
    args = ap.parse_args()
    s = SIZES[args.size]
    vision = dict(s["vision"], depths=[1, 1, 9, 1], groups=s["vision"]["heads"], window=12, max_pos=50, max_temporal=100)
    text = dict(s["text"], max_position_embeddings=args.max_positions)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = vocabulary()
    n_tokens = ff.write_tokenizer(out, args.layout, vocab, merges)
    rcfg = ff.remote_config(vision, text, BASE_VOCAB + len(fl2.FLORENCE_ADDED_TOKENS))
    if args.layout == "remote":
        cfg = rcfg
    else:
        cfg = ff.native_config(rcfg, ((n_tokens + 63) // 64) * 64, n_tokens - 1)
    ff.write_json(out / "config.json", cfg)
    ff.write_json(out / "generation_config.json", ff.generation_config(args.layout))
    grid = IMAGE_SIZE
    for k, st, p in zip([7, 3, 3, 3], [4, 2, 2, 2], [3, 1, 1, 1]):
        grid = (grid + 2 * p - k) // st + 1
    ff.write_json(out / "preprocessor_config.json", ff.preprocessor_config(args.layout, IMAGE_SIZE, 1 + grid * grid))
    if args.layout == "native":
        ff.write_json(out / "processor_config.json", ff.processor_config())
    model = fl2.Florence2(fl2.parse_config(cfg))
    fill_weights(model, args.seed)
    tensors = fl2.to_checkpoint(model, args.layout)
    n_params = sum(a.size for a in tensors.values())
    if args.layout == "remote":
        ff.save_remote_bin(out / "pytorch_model.bin", tensors, "language_model.model.shared.weight", fl2.REMOTE_TIED)
    else:
        ff.save_native(out / "model.safetensors", tensors)
    print(f"{out}: Florence-2-{args.size} {args.layout}, {n_params / 1e6:.1f} M parameters, "
          f"{n_tokens} tokens, vocab_size {cfg['text_config']['vocab_size']}, {1 + grid * grid} image tokens")


if __name__ == "__main__":
    main()
