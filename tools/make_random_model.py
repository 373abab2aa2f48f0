#!/usr/bin/python3
"""Writes a random-weight model folder with the shapes of nlpconnect/vit-gpt2-image-captioning:
ViT-B/16 at 224x224 (12 layers, 768 wide, 12 heads, MLP 3072) -> GPT-2 small with cross-attention
(12 layers, 768 wide, 12 heads, vocab 50257, n_positions 1024), every special id 50256, image
mean/std 0.5, bilinear resize. For benchmarks at real scale; the folder is never committed.

The real GPT-2 vocabulary cannot be downloaded here, so the tokenizer is a synthetic byte-level BPE
of the right size: the 256 byte symbols, 50000 merges of two byte symbols, and <|endoftext|>.
Captions are gibberish; the computation is the real one.

Weights are N(0, 0.02) like GPT-2's initialisation (residual projections scaled by
1/sqrt(2 * n_layer)), biases zero, layer norms identity, so activations stay in a sane range. The
end-of-text row of the tied embedding is shrunk so that greedy decoding does not stop at once
(benchmarks also pass min_new_tokens).

usage: /usr/bin/python3 tools/make_random_model.py OUT_DIR [--seed N] [--dtype F32|BF16]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xcaption_ref import safetensors_io  # noqa: E402

D, LAYERS, HEADS, MLP = 768, 12, 12, 3072
IMAGE, PATCH, CHANNELS = 224, 16, 3
VOCAB, POSITIONS, EOS = 50257, 1024, 50256


def config() -> dict:
    encoder = {
        "model_type": "vit", "architectures": ["ViTModel"], "hidden_size": D,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": MLP,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "image_size": IMAGE,
        "patch_size": PATCH, "num_channels": CHANNELS, "qkv_bias": True,
    }
    decoder = {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": VOCAB,
        "n_positions": POSITIONS, "n_ctx": POSITIONS, "n_embd": D, "n_layer": LAYERS,
        "n_head": HEADS, "n_inner": None, "activation_function": "gelu_new",
        "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02, "scale_attn_weights": True, "add_cross_attention": True,
        "is_decoder": True, "bos_token_id": EOS, "eos_token_id": EOS, "pad_token_id": EOS,
        "decoder_start_token_id": EOS, "tie_word_embeddings": True, "use_cache": True,
    }
    return {
        "architectures": ["VisionEncoderDecoderModel"], "model_type": "vision-encoder-decoder",
        "is_encoder_decoder": True, "tie_word_embeddings": False, "torch_dtype": "float32",
        "bos_token_id": EOS, "eos_token_id": EOS, "pad_token_id": EOS,
        "decoder_start_token_id": EOS, "encoder": encoder, "decoder": decoder,
    }


def tensors(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {}

    def normal(name, shape, std=0.02):
        out[name] = (rng.standard_normal(shape, dtype=np.float32) * np.float32(std))

    def zeros(name, shape):
        out[name] = np.zeros(shape, np.float32)

    def layer_norm(name):
        out[name + ".weight"] = np.ones(D, np.float32)
        zeros(name + ".bias", (D,))

    def linear(name, n_out, n_in, std=0.02):  # nn.Linear: (out, in)
        normal(name + ".weight", (n_out, n_in), std)
        zeros(name + ".bias", (n_out,))

    def conv1d(name, n_in, n_out, std=0.02):  # GPT-2 Conv1D: (in, out)
        normal(name + ".weight", (n_in, n_out), std)
        zeros(name + ".bias", (n_out,))

    grid = IMAGE // PATCH
    e = "encoder.embeddings."
    normal(e + "cls_token", (1, 1, D))
    normal(e + "position_embeddings", (1, 1 + grid * grid, D))
    normal(e + "patch_embeddings.projection.weight", (D, CHANNELS, PATCH, PATCH))
    zeros(e + "patch_embeddings.projection.bias", (D,))
    resid = 0.02 / np.sqrt(2 * LAYERS)
    for i in range(LAYERS):
        n = f"encoder.encoder.layer.{i}."
        for p in ("query", "key", "value"):
            linear(n + "attention.attention." + p, D, D)
        linear(n + "attention.output.dense", D, D, resid)
        linear(n + "intermediate.dense", MLP, D)
        linear(n + "output.dense", D, MLP, resid)
        layer_norm(n + "layernorm_before")
        layer_norm(n + "layernorm_after")
    layer_norm("encoder.layernorm")
    linear("encoder.pooler.dense", D, D)

    t = "decoder.transformer."
    normal(t + "wte.weight", (VOCAB, D))
    out[t + "wte.weight"][EOS] *= np.float32(0.05)
    normal(t + "wpe.weight", (POSITIONS, D), 0.01)
    for i in range(LAYERS):
        n = f"{t}h.{i}."
        layer_norm(n + "ln_1")
        conv1d(n + "attn.c_attn", D, 3 * D)
        conv1d(n + "attn.c_proj", D, D, resid)
        layer_norm(n + "ln_cross_attn")
        conv1d(n + "crossattention.q_attn", D, D)
        conv1d(n + "crossattention.c_attn", D, 2 * D)
        conv1d(n + "crossattention.c_proj", D, D, resid)
        layer_norm(n + "ln_2")
        conv1d(n + "mlp.c_fc", D, MLP)
        conv1d(n + "mlp.c_proj", MLP, D, resid)
    layer_norm(t + "ln_f")
    return out


def byte_symbols() -> list:
    """The 256 byte-level BPE symbols: printable Latin-1 bytes stand for themselves, the others are
    shifted to code points from 256 on (the scheme GPT-2's tokenizer uses)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def tokenizer(folder: Path) -> None:
    symbols = byte_symbols()
    merges_needed = VOCAB - 256 - 1
    # Merge order: letters and space first so that ordinary text gets merged at all.
    preferred = [s for s in symbols if s.isalpha() or s == "\u0120"] + [s for s in symbols if not (s.isalpha() or s == "\u0120")]
    merges = []
    for a in preferred:
        for b in preferred:
            merges.append((a, b))
            if len(merges) == merges_needed:
                break
        if len(merges) == merges_needed:
            break
    vocab = {s: i for i, s in enumerate(symbols)}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    assert len(vocab) == VOCAB and vocab["<|endoftext|>"] == EOS
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with open(folder / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=1))
    cfg = dict(special, add_prefix_space=False, model_max_length=1024, tokenizer_class="GPT2Tokenizer")
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("F32", "BF16"), default="F32", help="stored weight dtype")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "config.json").write_text(json.dumps(config(), indent=2))
    pre = {"do_normalize": True, "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255,
           "feature_extractor_type": "ViTFeatureExtractor", "image_processor_type": "ViTImageProcessor",
           "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2,
           "size": {"height": IMAGE, "width": IMAGE}}
    (a.out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    gen = {"decoder_start_token_id": EOS, "bos_token_id": EOS, "eos_token_id": EOS, "pad_token_id": EOS,
           "max_length": 16, "num_beams": 4}
    (a.out / "generation_config.json").write_text(json.dumps(gen, indent=2))
    tokenizer(a.out)
    ts = tensors(a.seed)
    safetensors_io.save(a.out / "model.safetensors", ts, default_dtype=a.dtype, metadata={"format": "pt"})
    n = sum(v.size for v in ts.values())
    print(f"{a.out}: {n / 1e6:.1f} M parameters ({a.dtype}), vocab {VOCAB}")


if __name__ == "__main__":
    main()
