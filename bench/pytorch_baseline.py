#!/usr/bin/python3
"""PyTorch eager baseline for `xcaption bench`: the Hugging Face computation (tools/xcaption_ref,
which writes out transformers' ViT, GPT-2, BLIP and generate() math; transformers itself cannot
be installed here) on the same model folder and image, timed the same way. The family comes from
config.json: vision-encoder-decoder (vit-gpt2, tools/xcaption_ref/modeling.py), blip
(BlipForConditionalGeneration, tools/xcaption_ref/blip.py; decoder input [DEC], eos [SEP]) or
florence2 (tools/xcaption_ref/florence2.py, either checkpoint layout: DaViT + projector, the BART
encoder over the image tokens and the --task prompt, the decoder with the language model's
generation settings: forced <s> first, forced </s> last, no_repeat_ngram_size 3; --beams
overrides num_beams as for the other families).

Variants:
  hf      cross-attention K/V recomputed from the encoder states at every step and for every beam,
          as transformers' GPT-2 does, and as its BLIP text decoder does in the releases with
          tuple caches (BlipTextSelfAttention projects the 577 image tokens of all 12 layers
          again at each step; newer releases keep them in an EncoderDecoderCache, which is the
          `cached` variant);
  cached  cross K/V computed once per image (what xcaption does), everything else unchanged.
          Florence-2: transformers' BART caches the cross K/V (past_key_values), so both variants
          compute them once.
dtypes: f32 (torch float32; matrix products through OpenBLAS), bf16 (the model converted with
.to(torch.bfloat16); CPU products through oneDNN's bf16 gemm, as torch does for bfloat16; the
logits are cast to float32 before the logits processors, as generate() does).

Timings per run (median over --repeats after one warm-up): preprocess (PIL resize + rescale +
normalize), encoder (ViT + projection), decode (generate()'s token loop incl. cross K/V),
end to end; for Florence-2 "encoder" is the image tower + projector + BART encoder. Prints one JSON object per (dtype, beams, variant) line with --json, else a table.

Threads: OPENBLAS_NUM_THREADS and OMP_NUM_THREADS are set from --blas-threads / --threads before
torch is imported; torch.set_num_threads(--threads).

usage: /usr/bin/python3 bench/pytorch_baseline.py --model DIR [--image FILE] [--beams 1,4]
       [--dtypes f32,bf16] [--variants hf,cached] [--new-tokens 16] [--threads 2] [--repeats 3]
       [--task "<CAPTION>"]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--image", type=Path, help="default: a 640x480 test card drawn like xcaption bench's")
    ap.add_argument("--beams", default="1", help="comma-separated beam counts")
    ap.add_argument("--dtypes", default="f32", help="comma-separated: f32, bf16")
    ap.add_argument("--variants", default="hf,cached", help="comma-separated: hf, cached")
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blas-threads", type=int, help="OpenBLAS threads (default: --threads)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--task", default="<CAPTION>", help="Florence-2 task token (default <CAPTION>)")
    ap.add_argument("--json", action="store_true")
    return ap.parse_args()


ARGS = parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.blas_threads or ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)

import ctypes  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from xcaption_ref import blip, florence2, modeling, preprocess  # noqa: E402
from xcaption_ref import generate as G  # noqa: E402
from xcaption_ref.config import read_json  # noqa: E402


def blas_info() -> str:
    """The BLAS torch's products go to: OpenBLAS's build config and the kernel it picked."""
    try:
        lib = ctypes.CDLL("libblas.so.3")
        lib.openblas_get_config.restype = ctypes.c_char_p
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return f"{lib.openblas_get_config().decode()} core {lib.openblas_get_corename().decode()}"
    except (OSError, AttributeError):
        return "not OpenBLAS"


def test_card(width=640, height=480) -> Image.Image:
    """Same pixels as xcaption bench's built-in test card."""
    y, x = np.mgrid[0:height, 0:width]
    dx, dy = x - width // 2, y - height // 2
    disc = dx * dx + dy * dy < (height // 4) * (height // 4)
    grid = (x % 32 == 0) | (y % 32 == 0)
    r = np.where(disc, 220, 255 * x // width)
    g = np.where(grid, 0, 255 * y // height)
    b = np.where(disc, 40, 128)
    return Image.fromarray(np.stack([r, g, b], axis=-1).astype(np.uint8), "RGB")


class Float32Logits(torch.nn.Module):
    """Wraps a bf16 LM head so that generate() sees float32 logits (transformers casts
    next-token logits to float32 before its processors)."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, x):
        return self.head(x).float()


class Family:
    """What differs between the two families here: loading, the generation config, the LM head
    module to wrap for bf16."""

    def __init__(self, folder: Path):
        model_type = read_json(folder / "config.json").get("model_type")
        self.name = {"blip": "blip", "florence2": "florence2"}.get(model_type, "vit-gpt2")
        if self.name == "florence2":
            b = florence2.load_pretrained(folder)
            self.model, self.config, self.preprocessor = b.model, b.config, b.preprocessor
            self.prompt_ids = florence2.prompt_ids(b.tokenizer, ARGS.task, b.config.layout)
        elif self.name == "blip":
            b = blip.load_pretrained(folder)
            self.model, self.config, self.preprocessor = b.model, b.config, b.preprocessor
            # the text decoder's GenerationConfig from text_config, eos = [SEP] (see blip.py)
            self.generation_config = b.config.generation_config()
            self.max_positions = b.config.text_config.max_position_embeddings
        else:
            b = modeling.load_pretrained(folder)
            self.model, self.config, self.preprocessor = b.model, b.config, b.preprocessor
            self.generation_config = b.generation_config
            self.max_positions = None

    def wrap_head_float32(self):
        if self.name == "florence2":
            head = self.model.lm_logits
            self.model.lm_logits = lambda h: head(h).float()
        elif self.name == "blip":
            preds = self.model.text_decoder.cls
            preds.predictions = Float32Logits(preds.predictions)
        else:
            self.model.decoder.lm_head = Float32Logits(self.model.decoder.lm_head)


def run_once(bundle, image, dtype, beams, variant, new_tokens):
    model = bundle.model
    t0 = time.perf_counter()
    pixels, _ = preprocess.preprocess(image, bundle.preprocessor)
    px = torch.from_numpy(pixels).unsqueeze(0)
    if dtype == "bf16":
        px = px.to(torch.bfloat16)
    t1 = time.perf_counter()
    if bundle.name == "florence2":
        with torch.no_grad():
            enc = model.encode(model.image_features(px), bundle.prompt_ids)
        t2 = time.perf_counter()
        r = florence2.resolved(bundle.config, num_beams=beams, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        with torch.no_grad():
            if beams == 1:
                res = G._greedy(model, enc, r, False, False, True, None, [r.decoder_start_token_id])
            else:
                res = G._beam(model, enc, r, False, False, True, None, [r.decoder_start_token_id])
        t3 = time.perf_counter()
        return {"preprocess": (t1 - t0) * 1e3, "encoder": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3,
                "end_to_end": (t3 - t0) * 1e3, "tokens": len(res.generated)}
    with torch.no_grad():
        enc = model.project(model.encode(px))
    t2 = time.perf_counter()
    r = G.resolve(bundle.generation_config, bundle.config, num_beams=beams, max_positions=bundle.max_positions,
                  max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    recompute = variant == "hf"
    with torch.no_grad():
        if beams == 1:
            res = G._greedy(model, enc, r, False, recompute, True, None)
        else:
            res = G._beam(model, enc, r, False, recompute, True, None)
    t3 = time.perf_counter()
    return {"preprocess": (t1 - t0) * 1e3, "encoder": (t2 - t1) * 1e3, "decode": (t3 - t2) * 1e3,
            "end_to_end": (t3 - t0) * 1e3, "tokens": len(res.generated)}


def main():
    torch.set_num_threads(ARGS.threads)
    image = preprocess.load_image(ARGS.image) if ARGS.image else test_card()
    t0 = time.perf_counter()
    bundle = Family(ARGS.model)
    load_ms = (time.perf_counter() - t0) * 1e3
    info = {"family": bundle.name, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "openblas_threads": int(os.environ["OPENBLAS_NUM_THREADS"]), "blas": blas_info()}
    rows = []
    for dtype in ARGS.dtypes.split(","):
        if dtype == "bf16":
            bundle.model.to(torch.bfloat16)
            bundle.wrap_head_float32()
        elif dtype != "f32":
            raise SystemExit(f"unknown dtype {dtype}")
        for beams in (int(b) for b in ARGS.beams.split(",")):
            for variant in ARGS.variants.split(","):
                runs = [run_once(bundle, image, dtype, beams, variant, ARGS.new_tokens)
                        for _ in range(ARGS.repeats + 1)][1:]
                med = {k: statistics.median(r[k] for r in runs)
                       for k in ("preprocess", "encoder", "decode", "end_to_end")}
                tokens = runs[-1]["tokens"]
                med["per_token"] = med["decode"] / max(tokens, 1)
                row = dict(info, dtype=dtype, beams=beams, variant=variant, new_tokens=ARGS.new_tokens,
                           generated_tokens=tokens, repeats=ARGS.repeats, load_ms=load_ms, median_ms=med,
                           end_to_end_ms=[r["end_to_end"] for r in runs],
                           peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
                rows.append(row)
                if ARGS.json:
                    print(json.dumps(row), flush=True)
                else:
                    print(f"{dtype} beams {beams} {variant:6s}: preprocess {med['preprocess']:.1f} ms, "
                          f"encoder {med['encoder']:.1f} ms, decode {med['decode']:.1f} ms "
                          f"({med['per_token']:.1f} ms/token), end to end {med['end_to_end']:.1f} ms",
                          flush=True)
    if not ARGS.json:
        print(f"load {load_ms:.0f} ms; {info}")


if __name__ == "__main__":
    main()
