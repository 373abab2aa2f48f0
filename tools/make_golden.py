#!/usr/bin/python3
"""Builds the golden fixtures that xcaption's end-to-end tests compare against.

Run:  /usr/bin/python3 tools/make_golden.py      (deterministic: rerunning rewrites identical files)

Writes under tests/data/:
  tiny-vit-gpt2/     HF VisionEncoderDecoder folder (config.json, generation_config.json,
                     preprocessor_config.json, model.safetensors F32, tokenizer.json).
                     ViT 32x32 / patch 8 (17 tokens), hidden 32, 2 layers, 4 heads, MLP 64;
                     GPT-2 n_embd 48 (so enc_to_dec_proj exists), 2 layers, 4 heads, n_inner 96,
                     n_positions 64, vocab 60, lm_head tied (absent from the file); the file also holds the unused
                     ViT pooler and legacy GPT-2 buffers attn.bias (U8), attn.masked_bias (F32
                     scalar), crossattention.bias/masked_bias, which a loader must ignore.
                     Preprocessor: "size": 32 (int form), resample 2 (bilinear), mean [0.5,0.4,0.5],
                     std 0.5. No max_length in generation_config.json: HF's default 20 applies,
                     which means 20 new tokens (max_length 21 including the start token).
  tiny-vit-gpt2-b/   ViT 24x24 / patch 6 (17 tokens), hidden 32, 2 layers, 4 heads, MLP 48;
                     GPT-2 n_embd 32 (no enc_to_dec_proj), 3 layers, 2 heads, n_inner null
                     (= 4 * 32),
                     n_positions 32, scale_attn_by_inverse_layer_idx true, untied lm_head
                     (decoder tie_word_embeddings false), stored BF16 (the reference runs the
                     bf16-rounded weights in float32). Preprocessor: size {height 24, width 24},
                     resample 3 (bicubic), ImageNet mean/std. generation_config.json: num_beams 3,
                     length_penalty 0.7, no_repeat_ngram_size 2, max_length 12.
  golden_images/*.png  three small test images (45x30 RGB, 64x64 RGB, 23x37 RGBA)
  golden.json        expected values, layout below
  (tests/data/README.md describes the same layout)
"First image" is the first PNG name in sorted order; the bulky tensors are stored for it only, to
keep the fixtures small.

Both models share the word-level tokenizer: <pad>=0, <s>=1 (bos, decoder_start), </s>=2 (eos),
<unk>=3, then 56 words. Layer norms see small variances (ViT residual stream ~1e-8, GPT-2
~1e-5 to 1e-4), so a wrong epsilon moves the logits by a lot, not by 1e-4. Both config.json
files say "torch_dtype": "float32" (transformers >= 5 would otherwise run a BF16 file in bf16).

golden.json layout (tensors are {"shape": [...], "data": [row-major floats]}):
{
  "format": "xcaption-golden-1",
  "semantics": "...",                    # which HF behaviour the values follow
  "models": {
    "<model folder name>": {
      "encoder_tokens": N, "vocab_size": V, "decoder_start_token_id", "eos_token_id",
      "pad_token_id", "has_enc_to_dec_proj", "tied_lm_head", "weights_dtype",
      "generation_defaults": {resolved settings of generate() with no arguments},
      "sensitivity": {max |logit change| if ViT eps were 1e-6 / GPT-2 eps were 1e-12},
      "images": {
        "<png file name>": {
          "resized_u8": tensor (H, W, 3) uint8 values after the PIL resize,
          "pixel_values": tensor (3, H, W)                    [first image only, see below]
          "encoder_last_hidden_state": tensor (N, enc_hidden), after the ViT final layernorm,
          "encoder_projected": tensor (N, dec_hidden), enc_to_dec_proj output (if it exists),
          "cross_k_layer0", "cross_v_layer0": tensors (heads, N, head_dim), decoder layer 0
                     cross-attention K and V,              [these four: first image only]
          "first_step_logits": tensor (V), logits for the decoder start token,
          "cases": {
            "<case name>": {
              "params": {explicit generate() arguments, on top of generation_config.json},
              "resolved": {max_length (incl. start token), min_length, num_beams, ...},
              "mode": "greedy" | "beam",
              "sequence": [ids], HF's output: decoder start token first, eos last if produced,
              "text": decoded with skip_special_tokens (words joined by spaces),
              "token_logprobs": [log_softmax(raw logits)[token] per generated token],
              "token_scores": [processed score per generated token: for beams the processed
                              log-prob added to the beam score; for greedy the processed logit],
              "sum_logprobs": float32 sum of token_logprobs (greedy) / token_scores (beam),
              "sequences_scores": beams only: HF's sequences_scores (sum / generated_len**lp),
              "step_logits": plain greedy case of the first image, tensor (generated, V) raw
                              logits per step,
              "cross_attentions": cases marked in CASES, tensor (generated, layers, heads, N): the
                              cross-attention probabilities at the step that produced each
                              generated token (query = the token before it), for beams taken
                              along the returned hypothesis through every reordering,
              "legacy_beam_agrees": beams only: the transformers 4.36-4.49 algorithm gives the
                              same sequence,
              "legacy_sequence", "legacy_sequences_scores": only when it does not agree,
              "noise_stable": the result is unchanged when every logit gets uniform +-1e-4
                              noise (the float32 reference is within ~1e-5 of float64, so a
                              float32 engine must reproduce the sequence exactly)
            }
          }
        }
      }
    }
  }
}

Self-checks (the script fails if one does not hold): safetensors round trip (F32, BF16, U8) and
bf16 rounding equal to torch's; cross K/V cached once vs recomputed every step give the same
logits; KV-cache incremental logits vs full-sequence forward agree to 1e-5; beam search with
num_beams=1 (current and legacy code) equals greedy; the float32 reference is within 1e-4 of a
float64 run; every case is noise-stable.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from xcaption_ref import generate as gen_mod  # noqa: E402
from xcaption_ref import safetensors_io  # noqa: E402
from xcaption_ref.config import (GenerationConfig, GPT2Config, ImageProcessorConfig,  # noqa: E402
                                 ViTConfig, VisionEncoderDecoderConfig)
from xcaption_ref.modeling import (VisionEncoderDecoder, load_pretrained,  # noqa: E402
                                   save_pretrained)
from xcaption_ref.preprocess import load_image, preprocess  # noqa: E402
from xcaption_ref.tokenizer import decode, word_level_tokenizer  # noqa: E402

DATA = ROOT / "tests" / "data"
IMAGES = DATA / "golden_images"

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD, BOS, EOS, UNK = 0, 1, 2, 3
WORDS = ["a", "an", "the", "man", "woman", "dog", "cat", "bird", "horse", "car", "bus", "train",
         "boat", "plane", "tree", "house", "street", "field", "beach", "water", "sky", "snow",
         "grass", "table", "plate", "pizza", "ball", "kite", "bench", "sign", "red", "blue",
         "green", "white", "black", "small", "large", "two", "on", "in", "with", "of", "near",
         "next", "to", "is", "are", "sitting", "standing", "riding", "flying", "holding", "eating",
         "playing", "and", "."]
VOCAB = len(SPECIALS) + len(WORDS)
TRANSFORMERS_VERSION = "4.51.3"
NOISE = 1e-4


# --------------------------------------------------------------------------------------------
# images

def make_images() -> dict:
    """Three deterministic images with structure: gradients, shapes, stripes, texture."""
    rng = np.random.RandomState(1234)
    out = {}
    # 45 wide x 30 high, RGB: diagonal gradient, a red rectangle, a dark disc
    h, w = 30, 45
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3), np.float64)
    img[..., 0] = 40 + 180 * x / (w - 1)
    img[..., 1] = 30 + 200 * y / (h - 1)
    img[..., 2] = 120 + 60 * np.sin(x / 3.0)
    img[6:14, 8:20] = [230, 30, 40]
    img[(x - 32) ** 2 + (y - 18) ** 2 < 36] = [20, 25, 60]
    out["img_45x30.png"] = Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8), "RGB")
    # 64 x 64, RGB: checkerboard, diagonal stripes, noisy sky band
    h = w = 64
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float64)
    checker = ((x // 8 + y // 8) % 2).astype(np.float64)
    img[..., 0] = 60 + 150 * checker
    img[..., 1] = 100 + 100 * (((x + y) // 5) % 2)
    img[..., 2] = 200 - 2 * y
    img[:16] = [90, 160, 235]
    img += rng.normal(0, 12, img.shape)
    out["img_64x64.png"] = Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8), "RGB")
    # 23 wide x 37 high, RGBA: vertical bars, alpha ramp (alpha is dropped, not composited)
    h, w = 37, 23
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 4), np.float64)
    img[..., 0] = np.where((x // 4) % 2 == 0, 210, 50)
    img[..., 1] = 255 * y / (h - 1)
    img[..., 2] = rng.randint(0, 256, (h, w))
    img[..., 3] = 255 * x / (w - 1)
    out["img_23x37_rgba.png"] = Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8), "RGBA")
    return out


# --------------------------------------------------------------------------------------------
# tiny models

def _ln(rng, d, gain=0.3, bias=0.1, center=1.0):
    return (center + gain * rng.standard_normal(d)).astype(np.float32), (bias * rng.standard_normal(d)).astype(np.float32)


def init_weights(model: VisionEncoderDecoder, seed: int, p: dict) -> None:
    """Fills every parameter from a numpy RandomState (stable across platforms and versions).

    The ViT and GPT-2 residual streams are kept tiny (embeddings and the output projections of
    attention/MLP are small), so every layer norm sees a small variance; q/k/v, MLP inputs and
    the final norms use unit-ish scales so attention and logits are far from uniform.
    """
    rng = np.random.RandomState(seed)
    cfg = model.config
    ev, dv = cfg.encoder, cfg.decoder
    t = {}

    def n(shape, std):
        return (std * rng.standard_normal(shape)).astype(np.float32)

    # ViT
    de = ev.hidden_size
    t["encoder.embeddings.cls_token"] = n((1, 1, de), p["vit_emb"])
    n_tok = (ev.image_size // ev.patch_size) ** 2 + 1
    t["encoder.embeddings.position_embeddings"] = n((1, n_tok, de), p["vit_emb"])
    t["encoder.embeddings.patch_embeddings.projection.weight"] = n(
        (de, ev.num_channels, ev.patch_size, ev.patch_size), p["vit_patch"])
    t["encoder.embeddings.patch_embeddings.projection.bias"] = n((de,), p["vit_emb"])
    for i in range(ev.num_hidden_layers):
        pre = f"encoder.encoder.layer.{i}."
        for nm in ("query", "key", "value"):
            t[pre + f"attention.attention.{nm}.weight"] = n((de, de), p["vit_qkv"])
            t[pre + f"attention.attention.{nm}.bias"] = n((de,), 0.1)
        t[pre + "attention.output.dense.weight"] = n((de, de), p["vit_out"])
        t[pre + "attention.output.dense.bias"] = n((de,), p["vit_out"])
        t[pre + "intermediate.dense.weight"] = n((ev.intermediate_size, de), p["vit_qkv"])
        t[pre + "intermediate.dense.bias"] = n((ev.intermediate_size,), 0.1)
        t[pre + "output.dense.weight"] = n((de, ev.intermediate_size), p["vit_out"])
        t[pre + "output.dense.bias"] = n((de,), p["vit_out"])
        for ln in ("layernorm_before", "layernorm_after"):
            g, b = _ln(rng, de)
            t[pre + ln + ".weight"], t[pre + ln + ".bias"] = g, b
    g, b = _ln(rng, de, gain=0.3, bias=0.3)
    t["encoder.layernorm.weight"], t["encoder.layernorm.bias"] = g, b
    t["encoder.pooler.dense.weight"] = n((de, de), 0.1)
    t["encoder.pooler.dense.bias"] = n((de,), 0.1)
    # projection
    dd = dv.n_embd
    if model.enc_to_dec_proj is not None:
        t["enc_to_dec_proj.weight"] = n((dd, de), p["proj"])
        t["enc_to_dec_proj.bias"] = n((dd,), 0.1)
    # GPT-2
    wte = n((dv.vocab_size, dd), p["gpt_emb"])
    wpe = n((dv.n_positions, dd), p["gpt_emb"])
    inner = dv.inner_dim
    for i in range(dv.n_layer):
        pre = f"decoder.transformer.h.{i}."
        for ln in ("ln_1", "ln_cross_attn", "ln_2"):
            g, b = _ln(rng, dd, bias=p["gpt_bias"])
            t[pre + ln + ".weight"], t[pre + ln + ".bias"] = g, b
        t[pre + "attn.c_attn.weight"] = n((dd, 3 * dd), p["gpt_qkv"])
        t[pre + "attn.c_attn.bias"] = n((3 * dd,), p["gpt_bias"])
        t[pre + "attn.c_proj.weight"] = n((dd, dd), p["gpt_self_out"])
        t[pre + "attn.c_proj.bias"] = n((dd,), p["gpt_self_out"])
        t[pre + "crossattention.q_attn.weight"] = n((dd, dd), p["gpt_qkv"])
        t[pre + "crossattention.q_attn.bias"] = n((dd,), p["gpt_bias"])
        t[pre + "crossattention.c_attn.weight"] = n((dd, 2 * dd), p["gpt_cross_kv"])
        t[pre + "crossattention.c_attn.bias"] = n((2 * dd,), p["gpt_bias"])
        t[pre + "crossattention.c_proj.weight"] = n((dd, dd), p["gpt_cross_out"])
        t[pre + "crossattention.c_proj.bias"] = n((dd,), p["gpt_self_out"])
        t[pre + "mlp.c_fc.weight"] = n((dd, inner), p["gpt_qkv"])
        t[pre + "mlp.c_fc.bias"] = n((inner,), p["gpt_bias"])
        t[pre + "mlp.c_proj.weight"] = n((inner, dd), p["gpt_mlp_out"])
        t[pre + "mlp.c_proj.bias"] = n((dd,), p["gpt_self_out"])
    # random-sign gains decorrelate the logits from the current token's own embedding (tied head)
    gf = (p["lnf_gain"] * rng.standard_normal(dd)).astype(np.float32)
    bf = (p["lnf_bias"] * rng.standard_normal(dd)).astype(np.float32)
    # pad, bos and unk point against ln_f's bias, so a trained-looking model rarely emits them
    supp = -bf / np.linalg.norm(bf)
    if not dv.tie_word_embeddings:
        head = n((dv.vocab_size, dd), p["head"])
        for s in (PAD, BOS, UNK):
            head[s] = p["special_supp"] * np.linalg.norm(head[EOS]) * supp
    else:
        for s in (PAD, BOS, UNK):
            wte[s] = p["special_supp"] * np.linalg.norm(wte[EOS]) * supp
        head = wte
    # The last dimension of the decoder stream carries only a position ramp (no token embedding,
    # no attention/MLP output), and only eos reads it: captions end after a few words.
    j = dd - 1
    wpe[:, j] = p["eos_ramp"] * np.arange(dv.n_positions) / 16.0
    wte[:, j] = 0.0
    head[:, j] = 0.0
    head[EOS, j] = p["eos_w"]
    for i in range(dv.n_layer):
        pre = f"decoder.transformer.h.{i}."
        for nm in ("attn.c_proj", "crossattention.c_proj", "mlp.c_proj"):
            t[pre + nm + ".weight"][:, j] = 0.0
            t[pre + nm + ".bias"][j] = 0.0
    gf[j], bf[j] = abs(p["lnf_gain"]), 0.0
    t["decoder.transformer.ln_f.weight"], t["decoder.transformer.ln_f.bias"] = gf, bf
    t["decoder.transformer.wte.weight"] = wte
    t["decoder.transformer.wpe.weight"] = wpe
    if not dv.tie_word_embeddings:
        t["decoder.lm_head.weight"] = head
    if p.get("bf16"):
        t = {k: safetensors_io.round_to_bf16(v) for k, v in t.items()}
    state = model.state_dict()
    expected = {k for k in state if not (k == "decoder.lm_head.weight" and dv.tie_word_embeddings)}
    assert expected == set(t), (sorted(expected - set(t)), sorted(set(t) - expected))
    with torch.no_grad():
        for k, v in t.items():
            state[k].copy_(torch.from_numpy(v))


def legacy_buffers(dv: GPT2Config) -> tuple:
    """GPT-2 buffers as older transformers versions saved them (uint8 causal tril, -1e4)."""
    tril = np.tril(np.ones((dv.n_positions, dv.n_positions), np.uint8)).reshape(1, 1, dv.n_positions, dv.n_positions)
    tensors, dtypes = {}, {}
    for i in range(dv.n_layer):
        for mod in ("attn", "crossattention"):
            tensors[f"decoder.transformer.h.{i}.{mod}.bias"] = tril
            dtypes[f"decoder.transformer.h.{i}.{mod}.bias"] = "U8"
            tensors[f"decoder.transformer.h.{i}.{mod}.masked_bias"] = np.array(-1e4, np.float32)
            dtypes[f"decoder.transformer.h.{i}.{mod}.masked_bias"] = "F32"
    return tensors, dtypes


MODEL_A = dict(
    name="tiny-vit-gpt2", seed=1, dtype="F32",
    encoder=ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                      image_size=32, patch_size=8, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    decoder=GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=48, n_layer=2, n_head=4, n_inner=96,
                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=BOS, eos_token_id=EOS,
                       pad_token_id=PAD, decoder_start_token_id=BOS, tie_word_embeddings=True),
    generation=GenerationConfig(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=BOS),
    preprocessor=ImageProcessorConfig.from_dict(dict(size=32, resample=2, image_mean=[0.5, 0.4, 0.5],
                                                     image_std=[0.5, 0.5, 0.5], rescale_factor=1 / 255)),
    weights=dict(vit_emb=3e-5, vit_patch=1e-5, vit_qkv=0.3, vit_out=2e-5, proj=0.25,
                 gpt_emb=3e-3, gpt_qkv=0.2, gpt_self_out=5e-4, gpt_cross_kv=0.2, gpt_cross_out=6e-4, gpt_bias=0.02,
                 gpt_mlp_out=4e-4, lnf_gain=100.0, lnf_bias=60.0, head=None, eos_ramp=0.01, eos_w=0.05, special_supp=2.0),
)

MODEL_B = dict(
    name="tiny-vit-gpt2-b", seed=10, dtype="BF16",
    encoder=ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                      image_size=24, patch_size=6, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    decoder=GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=3, n_head=2, n_inner=None,
                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=BOS, eos_token_id=EOS,
                       pad_token_id=PAD, decoder_start_token_id=BOS, tie_word_embeddings=False,
                       scale_attn_by_inverse_layer_idx=True),
    generation=GenerationConfig(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, decoder_start_token_id=BOS,
                                num_beams=3, length_penalty=0.7, no_repeat_ngram_size=2, max_length=12),
    preprocessor=ImageProcessorConfig.from_dict(dict(size={"height": 24, "width": 24}, resample=3,
                                                     image_mean=[0.485, 0.456, 0.406],
                                                     image_std=[0.229, 0.224, 0.225], rescale_factor=1 / 255)),
    weights=dict(vit_emb=3e-5, vit_patch=1e-5, vit_qkv=0.3, vit_out=2e-5, proj=None,
                 gpt_emb=6e-3, gpt_qkv=0.25, gpt_self_out=5e-4, gpt_cross_kv=0.25, gpt_cross_out=8e-4, gpt_bias=0.02,
                 gpt_mlp_out=6e-4, lnf_gain=1.0, lnf_bias=0.3, head=0.35, eos_ramp=0.01, eos_w=8.0, special_supp=2.0, bf16=True),
)


def build_model(spec: dict) -> VisionEncoderDecoder:
    cfg = VisionEncoderDecoderConfig(encoder=spec["encoder"], decoder=spec["decoder"],
                                     decoder_start_token_id=BOS, pad_token_id=PAD, eos_token_id=EOS,
                                     bos_token_id=BOS, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = VisionEncoderDecoder(cfg)
    init_weights(model, spec["seed"], spec["weights"])
    return model.eval()


# --------------------------------------------------------------------------------------------
# generation cases: (name, explicit generate() arguments, record cross-attentions for "all"
# images, the "first" image only, or None)

CASES = {
    "tiny-vit-gpt2": [  # generation_config.json: greedy, HF default max_length 20 -> 21
        ("greedy", {}, "first"),
        ("greedy_max_new_tokens_5", {"max_new_tokens": 5}, None),
        ("greedy_max_length_8", {"max_length": 8}, None),
        ("greedy_min_new_tokens_14", {"min_new_tokens": 14}, None),
        ("greedy_min_length_13", {"min_length": 13}, None),
        ("greedy_repetition_penalty_1.3", {"repetition_penalty": 1.3}, None),
        ("greedy_no_repeat_ngram_2", {"no_repeat_ngram_size": 2}, None),
        ("beam2", {"num_beams": 2}, None),
        ("beam3_lp0_early_true", {"num_beams": 3, "length_penalty": 0.0, "early_stopping": True}, None),
        ("beam4_lp2", {"num_beams": 4, "length_penalty": 2.0}, None),
        ("beam4_early_never", {"num_beams": 4, "early_stopping": "never"}, None),
        ("beam3_lp0_early_never", {"num_beams": 3, "length_penalty": 0.0, "early_stopping": "never"}, None),
        ("beam3_rep1.3_ngram2", {"num_beams": 3, "repetition_penalty": 1.3, "no_repeat_ngram_size": 2}, None),
        ("beam3_min_new_tokens_12", {"num_beams": 3, "min_new_tokens": 12}, None),
        ("beam4_max_new_tokens_6", {"num_beams": 4, "max_new_tokens": 6}, None),
        ("beam4_max_length_16", {"num_beams": 4, "max_length": 16}, None),
    ],
    "tiny-vit-gpt2-b": [  # generation_config.json: num_beams 3, lp 0.7, no_repeat_ngram 2, max_length 12
        ("beam_default", {}, "all"),
        ("greedy", {"num_beams": 1}, "first"),
        ("greedy_no_ngram", {"num_beams": 1, "no_repeat_ngram_size": 0}, None),
        ("beam2_lp0", {"num_beams": 2, "length_penalty": 0.0}, None),
        ("beam4_early_true", {"num_beams": 4, "early_stopping": True}, None),
        ("beam4_lp2_max_new_tokens_20", {"num_beams": 4, "length_penalty": 2.0, "max_new_tokens": 20}, None),
        ("beam3_early_never", {"early_stopping": "never"}, None),
        ("beam3_repetition_penalty_1.3", {"repetition_penalty": 1.3}, None),
        ("beam3_min_new_tokens_9", {"min_new_tokens": 9}, None),
        ("beam3_no_repeat_ngram_1", {"no_repeat_ngram_size": 1}, None),
        ("beam3_max_length_20_early_true", {"max_length": 20, "early_stopping": True}, None),
    ],
}


# --------------------------------------------------------------------------------------------
# JSON output

def tensor(a, digits: int = 9) -> dict:
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        data = [int(v) for v in a.reshape(-1)]
    else:
        data = [float(format(float(v), f".{digits}g")) for v in a.reshape(-1).astype(np.float64)]
    return {"shape": list(a.shape), "data": data}


def fl(x: float) -> float:
    return float(format(float(x), ".9g"))


def dumps(obj, indent: int = 0) -> str:
    """JSON with one line per list of scalars (keeps the file small and diffable)."""
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return "[" + ",".join(json.dumps(v) for v in obj) + "]"
        items = [f"{pad} {dumps(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"non-finite value {obj} in golden output")
        return json.dumps(obj)
    return json.dumps(obj)


# --------------------------------------------------------------------------------------------
# checks and records

def noise_hook(seed: int):
    g = torch.Generator().manual_seed(seed)

    def hook(logits: torch.Tensor) -> torch.Tensor:
        return logits + (torch.rand(logits.shape, generator=g) * 2 - 1) * NOISE
    return hook


def record_case(model, pv, gen_cfg, tok, params, with_attn, first_image) -> dict:
    res = gen_mod.generate(model, pv, gen_cfg, output_attentions=with_attn, **params)
    rec = {"params": params, "resolved": res.resolved.to_dict(), "mode": res.mode,
           "sequence": res.sequence, "text": decode(tok, res.sequence),
           "token_logprobs": [fl(v) for v in res.token_logprobs],
           "token_scores": [fl(v) for v in res.token_scores],
           "sum_logprobs": fl(res.sum_logprobs)}
    if res.mode == "beam":
        rec["sequences_scores"] = fl(res.score)
        legacy = gen_mod.generate(model, pv, gen_cfg, legacy_beam=True, **params)
        rec["legacy_beam_agrees"] = legacy.sequence == res.sequence
        if legacy.sequence != res.sequence:
            rec["legacy_sequence"] = legacy.sequence
            rec["legacy_sequences_scores"] = fl(legacy.score)
    elif first_image and (not params or params == {"num_beams": 1}):
        rec["step_logits"] = tensor(res.step_logits, 7)
    if with_attn:
        rec["cross_attentions"] = tensor(res.cross_attentions, 6)
    stable = all(gen_mod.generate(model, pv, gen_cfg, logits_hook=noise_hook(s), **params).sequence
                 == res.sequence for s in (1, 2, 3))
    rec["noise_stable"] = stable
    return rec, res


def self_checks(model, pv, gen_cfg, params) -> dict:
    """Returns the measured differences; raises when a property fails."""
    out = {}
    base = gen_mod.generate(model, pv, gen_cfg, output_attentions=True, **params)
    # 1. cross K/V computed once vs recomputed at every step (HF)
    rec = gen_mod.generate(model, pv, gen_cfg, output_attentions=True, recompute_cross_kv=True, **params)
    assert rec.sequence == base.sequence
    if base.step_logits is not None:
        out["cross_kv_recompute_max_diff"] = float(np.abs(rec.step_logits - base.step_logits).max())
        assert out["cross_kv_recompute_max_diff"] <= 1e-6, out
    # 2. KV cache (incremental) vs full-sequence forward at every step
    full = gen_mod.generate(model, pv, gen_cfg, output_attentions=True, use_cache=False, **params)
    assert full.sequence == base.sequence, (full.sequence, base.sequence)
    if base.step_logits is not None:
        out["kv_cache_vs_full_max_diff"] = float(np.abs(full.step_logits - base.step_logits).max())
        assert out["kv_cache_vs_full_max_diff"] <= 1e-5, out
    out["cross_attn_cache_vs_full_max_diff"] = float(np.abs(full.cross_attentions - base.cross_attentions).max())
    assert out["cross_attn_cache_vs_full_max_diff"] <= 1e-5, out
    return out


def beam1_equals_greedy(model, pv, gen_cfg, params) -> None:
    """Beam search with one beam, run through the beam code, reproduces greedy search."""
    r = gen_mod.resolve(gen_cfg, model.config, **dict(params, num_beams=1))
    assert r.repetition_penalty == 1.0  # a penalty acts on logits in greedy, on log-probs in beams
    enc = gen_mod.encode_image(model, pv)
    with torch.no_grad():
        greedy = gen_mod._greedy(model, enc, r, False, False, True, None)
        for legacy in (False, True):
            fn = gen_mod._beam_legacy if legacy else gen_mod._beam
            beam = fn(model, enc, r, False, False, True, None)
            assert beam.sequence == greedy.sequence, (legacy, beam.sequence, greedy.sequence)
            assert abs(beam.sum_logprobs - greedy.sum_logprobs) <= 1e-4, (beam.sum_logprobs, greedy.sum_logprobs)


def sensitivity(model, pv, sequence) -> dict:
    """How much the logits of a teacher-forced sequence move under a wrong layer-norm epsilon."""
    ids = torch.tensor([sequence])

    def logits():
        with torch.no_grad():
            return model.decoder(ids, encoder_hidden_states=model.project(model.encode(pv))).logits

    base = logits()
    out = {}
    for prefix, eps, key in (("encoder", 1e-6, "vit_eps_1e-6"), ("decoder", 1e-12, "gpt2_eps_1e-12")):
        mods = [m for n, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm) and n.startswith(prefix)]
        saved = [m.eps for m in mods]
        for m in mods:
            m.eps = eps
        out[key] = fl(float((logits() - base).abs().max()))
        for m, e in zip(mods, saved):
            m.eps = e
    return out


# --------------------------------------------------------------------------------------------

def write_folder(spec: dict, model: VisionEncoderDecoder, tok: dict) -> Path:
    folder = DATA / spec["name"]
    extra, extra_dtypes = ({}, {})
    if spec["name"] == "tiny-vit-gpt2":
        extra, extra_dtypes = legacy_buffers(spec["decoder"])
    save_pretrained(model, folder, dtype=spec["dtype"], generation_config=spec["generation"],
                    preprocessor=spec["preprocessor"], tokenizer=tok, extra_tensors=extra,
                    extra_dtypes=extra_dtypes, transformers_version=TRANSFORMERS_VERSION)
    # round trip: the folder loads back to the same weights, every stored tensor has its dtype
    bundle = load_pretrained(folder)
    a, b = model.state_dict(), bundle.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k, d in bundle.dtypes.items():
        assert d == extra_dtypes.get(k, spec["dtype"]), (k, d)
    return folder


def float64_agreement(model, pv, sequence) -> float:
    """Max |logit| difference between this float32 reference and the same model in float64."""
    m64 = copy.deepcopy(model).double()
    ids = torch.tensor([sequence])
    with torch.no_grad():
        l32 = model.decoder(ids, encoder_hidden_states=model.project(model.encode(pv))).logits
        l64 = m64.decoder(ids, encoder_hidden_states=m64.project(m64.encode(pv.double()))).logits
    return float((l32.double() - l64).abs().max())


def check_bf16_rounding() -> None:
    """Our float32 -> bfloat16 rounding equals torch's (round to nearest even)."""
    rng = np.random.RandomState(7)
    x = np.concatenate([rng.standard_normal(4096).astype(np.float32) * 10.0 ** rng.randint(-6, 4, 4096),
                        # exact ties between two bfloat16 values, both parities
                        (np.arange(1, 512, dtype=np.uint32) << 15 | np.uint32(0x3F800000)).view(np.float32)])
    ours = safetensors_io.f32_to_bf16_bits(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ours, theirs)


def main() -> None:
    torch.set_num_threads(1)
    check_bf16_rounding()
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name, im in make_images().items():
        im.save(IMAGES / name, format="PNG", optimize=False)
    tok = word_level_tokenizer(SPECIALS, WORDS, "<unk>")
    golden = {
        "format": "xcaption-golden-1",
        "generator": "tools/make_golden.py (independent PyTorch reference, tools/xcaption_ref)",
        "semantics": "transformers VisionEncoderDecoderModel, eager attention, float32, "
                     "ViTImageProcessor slow (PIL) path, generate() of transformers >= 4.50 "
                     "(vectorised beam search; see legacy_beam_agrees for 4.36-4.49)",
        "noise": NOISE,
        "models": {},
    }
    image_names = sorted(p.name for p in IMAGES.glob("*.png"))
    checks = {}
    unstable = []
    for spec in (MODEL_A, MODEL_B):
        model = build_model(spec)
        write_folder(spec, model, tok)
        bundle = load_pretrained(DATA / spec["name"])
        model, gen_cfg, pre = bundle.model, bundle.generation_config, bundle.preprocessor
        cfg = model.config
        n_tok = (cfg.encoder.image_size // cfg.encoder.patch_size) ** 2 + 1
        m = {
            "encoder_tokens": n_tok, "vocab_size": cfg.decoder.vocab_size,
            "decoder_start_token_id": BOS, "eos_token_id": EOS, "pad_token_id": PAD,
            "has_enc_to_dec_proj": cfg.has_enc_to_dec_proj, "tied_lm_head": cfg.decoder.tie_word_embeddings,
            "weights_dtype": spec["dtype"],
            "generation_defaults": gen_mod.resolve(gen_cfg, cfg).to_dict(),
            "images": {},
        }
        for img_name in image_names:
            pv_np, resized = preprocess(load_image(IMAGES / img_name), pre)
            pv = torch.from_numpy(pv_np)[None]
            with torch.no_grad():
                enc = model.encode(pv)
                proj = model.project(enc)
                k0, v0 = model.decoder.cross_kv(proj)[0]
                first = model.decoder(torch.tensor([[BOS]]), encoder_hidden_states=proj).logits[0, -1]
            first_image = img_name == image_names[0]
            rec = {"resized_u8": tensor(resized)}
            if first_image:  # bulky intermediate tensors: first image only
                rec["pixel_values"] = tensor(pv_np)
                rec["encoder_last_hidden_state"] = tensor(enc[0].numpy(), 7)
                if cfg.has_enc_to_dec_proj:
                    rec["encoder_projected"] = tensor(proj[0].numpy(), 7)
                rec["cross_k_layer0"] = tensor(k0[0].numpy(), 7)
                rec["cross_v_layer0"] = tensor(v0[0].numpy(), 7)
            rec["first_step_logits"] = tensor(first.numpy(), 7)
            rec["cases"] = {}
            for case, params, attn_where in CASES[spec["name"]]:
                with_attn = attn_where == "all" or (attn_where == "first" and first_image)
                crec, res = record_case(model, pv, gen_cfg, tok, params, with_attn, first_image)
                rec["cases"][case] = crec
                if not crec["noise_stable"]:
                    unstable.append(f"{spec['name']} {img_name} {case}")
            greedy_params = {"num_beams": 1}
            checks[f"{spec['name']}/{img_name}/greedy"] = self_checks(model, pv, gen_cfg, greedy_params)
            checks[f"{spec['name']}/{img_name}/beam"] = self_checks(
                model, pv, gen_cfg, {"num_beams": 3, "length_penalty": 1.0})
            beam1_equals_greedy(model, pv, gen_cfg, {})
            checks[f"{spec['name']}/{img_name}/f64"] = {
                "float32_vs_float64_max_logit_diff": float64_agreement(model, pv, rec["cases"][CASES[spec["name"]][0][0]]["sequence"])}
            assert checks[f"{spec['name']}/{img_name}/f64"]["float32_vs_float64_max_logit_diff"] <= 1e-4
            m["images"][img_name] = rec
        first_img = m["images"][image_names[0]]
        greedy_case = "greedy"
        m["sensitivity"] = sensitivity(
            model, torch.from_numpy(preprocess(load_image(IMAGES / image_names[0]), pre)[0])[None],
            first_img["cases"][greedy_case]["sequence"])
        golden["models"][spec["name"]] = m
    with open(DATA / "golden.json", "w", encoding="utf-8") as f:
        f.write(dumps(golden))
        f.write("\n")
    # summary
    for name, m in golden["models"].items():
        print(f"{name}: sensitivity {m['sensitivity']}")
        for img, rec in m["images"].items():
            for case, c in rec["cases"].items():
                flags = ("" if c["noise_stable"] else " UNSTABLE") + (
                    "" if c.get("legacy_beam_agrees", True) else " legacy-differs")
                score = c.get("sequences_scores", c["sum_logprobs"])
                print(f"  {img:20s} {case:32s} {score:10.4f} {c['text']}{flags}")
    worst = {}
    for v in checks.values():
        for k, x in v.items():
            worst[k] = max(worst.get(k, 0.0), x)
    print("self-checks (max over images):", worst)
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    print(f"tests/data total size: {total} bytes")
    if unstable:
        raise SystemExit(f"cases that flip under +-{NOISE} logit noise (retune the weights): {unstable}")


if __name__ == "__main__":
    main()
