#!/usr/bin/python3
"""Builds the BLIP golden fixtures: two tiny random BlipForConditionalGeneration folders and the
values the independent PyTorch reference (tools/xcaption_ref/blip.py) computes for them.

Run:  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread /usr/bin/python3 tools/make_blip_golden.py
(deterministic: rerunning rewrites identical files; tests/data/README.md describes the layout)

Writes under tests/data/:
  tiny-blip/     vision 32x32 / patch 8 (17 tokens), width 32, 2 layers, 4 heads, MLP 64;
                 BERT decoder width 48 (cross-attention key/value read width 32), 2 layers,
                 4 heads, FFN 96, max_position_embeddings 23; F32; LM head weight stored equal
                 to the word embeddings (as the Salesforce checkpoints store it), bias as
                 `cls.predictions.bias`; text_config eos_token_id points at the word "riding" (BLIP
                 stops at sep_token_id, never at eos_token_id); greedy by default.
                 preprocessor_config.json holds only the size (32x32): the BlipImageProcessor
                 defaults apply (bicubic, 1/255, OpenAI CLIP mean/std).
  tiny-blip-b/   vision 30x30 / patch 6 (26 tokens), width 48 (wider than the text, like -large),
                 2 layers, 3 heads, MLP 80, layer_norm_eps 1e-6; decoder width 32, 3 layers,
                 2 heads, FFN 64, max_position_embeddings 32; F16; untied LM head
                 (tie_word_embeddings false), bias stored only as `cls.predictions.decoder.bias`;
                 text_config sets num_beams 3, length_penalty 0.6, no_repeat_ngram_size 2,
                 max_length 16. Preprocessor: size {30, 30}, bilinear, mean = std = 0.5.
  Both: model.safetensors with HF's tensor names plus the I64 buffer
  `text_decoder.bert.embeddings.position_ids`; a BERT uncased WordPiece tokenizer (vocab.txt,
  tokenizer.json, tokenizer_config.json, special_tokens_map.json) whose [DEC] / [ENC] are added
  special tokens after the vocabulary, as in the real checkpoints.
  golden_blip.json: expected values, layout in tests/data/README.md.

Self-checks (the script fails when one does not hold): the folders load back to the same
weights; cross K/V computed once equal recomputing them every step; incremental decoding equals
full-sequence forwards; beam search with one beam equals greedy; float32 within 1e-4 of float64;
every recorded case survives +-1e-4 logit noise; the tokenizer splits the prompts as expected.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from xcaption_ref import blip  # noqa: E402
from xcaption_ref import generate as gen_mod  # noqa: E402
from xcaption_ref import safetensors_io  # noqa: E402
from xcaption_ref.config import write_json  # noqa: E402
from xcaption_ref.preprocess import load_image, preprocess  # noqa: E402
from xcaption_ref.bert_files import write_tokenizer_files  # noqa: E402
from xcaption_ref.blip import BlipTokenizer  # noqa: E402

DATA = ROOT / "tests" / "data"
IMAGES = DATA / "golden_images"
TRANSFORMERS_VERSION = "4.51.3"
NOISE = 1e-4

# ids 0..4 as in BERT's order ([PAD] first, then [UNK] [CLS] [SEP] [MASK]); [DEC] and [ENC] are
# added after the vocabulary, like BLIP's 30522 / 30523.
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)
PUNCT = [".", ",", "'", "!", "?", "-"]
WORDS = ["a", "an", "the", "of", "in", "on", "with", "and", "is", "are", "at", "near", "to", "s",
         "two", "three", "man", "woman", "dog", "cat", "bird", "horse", "car", "bus", "train", "boat",
         "plane", "tree", "house", "street", "field", "beach", "water", "sky", "snow", "grass",
         "table", "plate", "pizza", "ball", "kite", "bench", "sign", "red", "blue", "green", "white",
         "black", "small", "large", "big", "little", "old", "young", "sitting", "standing", "riding",
         "flying", "holding", "eating", "playing", "walking", "running", "looking", "top", "front",
         "next", "group", "people", "person", "child", "picture", "photo", "image", "view", "close",
         "up", "down", "over", "under", "background", "cafe", "couple", "room", "kitchen", "bed",
         "window", "door", "road", "city", "park", "stripe", "check", "light", "dark", "sun"]
PIECES = ["##s", "##ing", "##ed", "##er", "##graph", "##y", "##ly", "##es", "##ful", "##ness",
          "##ure", "##ty", "##al", "##ion", "##ers", "##est"]
VOCAB = SPECIALS + PUNCT + WORDS + PIECES
ADDED = ["[DEC]", "[ENC]"]
DEC, ENC = len(VOCAB), len(VOCAB) + 1
VOCAB_SIZE = len(VOCAB) + len(ADDED)
NEVER = [PAD, UNK, CLS, MASK, DEC, ENC]  # ids a captioning model should not emit

PROMPTS = {
    "tiny-blip": "A photograph of",
    "tiny-blip-b": "the CAF\u00c9's",
}
EXPECTED_PROMPT_TOKENS = {  # what the WordPiece reference must make of them
    "A photograph of": ["a", "photo", "##graph", "of"],
    "the CAF\u00c9's": ["the", "cafe", "'", "s"],
}


# --------------------------------------------------------------------------------------------
# the two models

MODEL_A = dict(
    name="tiny-blip", seed=21, dtype="F32", head="tied", bias_names=("text_decoder.cls.predictions.bias",),
    vision=blip.BlipVisionConfig(hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=2,
                                 num_attention_heads=4, image_size=32, patch_size=8),
    text=blip.BlipTextConfig(vocab_size=VOCAB_SIZE, hidden_size=48, intermediate_size=96, projection_dim=48,
                             num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=23,
                             bos_token_id=DEC, eos_token_id=VOCAB.index("riding"), pad_token_id=PAD,
                             sep_token_id=SEP),
    preprocessor={"size": {"height": 32, "width": 32}}, preprocessor_file="minimal",
    weights=dict(v_emb=3e-3, v_patch=3e-4, v_qkv=0.4, v_out=3e-3, v_ln_gain=0.3, v_post_gain=0.5,
                 t_emb=1e-3, t_pos=3e-3, t_emb_gain=1.0, t_qkv=0.35, t_cross_kv=0.35, t_out=0.3, t_cross_out=0.1,
                 t_ffn=0.3, t_ln_gain=0.3, t_head_dense=0.35, t_head_gain=300.0, t_head_w=None, bias=0.3,
                 ramp=3e-4, ramp_ln=1.0, ramp_a=0.5, ramp_b=0.0, sep_w=4e-2, sep_bias=6.5),
)

MODEL_B = dict(
    name="tiny-blip-b", seed=22, dtype="F16", head="untied",
    bias_names=("text_decoder.cls.predictions.decoder.bias",),
    vision=blip.BlipVisionConfig(hidden_size=48, intermediate_size=80, projection_dim=48, num_hidden_layers=2,
                                 num_attention_heads=3, image_size=30, patch_size=6, layer_norm_eps=1e-6),
    text=blip.BlipTextConfig(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=64, projection_dim=32,
                             num_hidden_layers=3, num_attention_heads=2, max_position_embeddings=32,
                             bos_token_id=DEC, pad_token_id=PAD, sep_token_id=SEP, tie_word_embeddings=False,
                             generation={"num_beams": 3, "length_penalty": 0.6, "no_repeat_ngram_size": 2,
                                         "max_length": 16}),
    preprocessor={"size": {"height": 30, "width": 30}, "resample": 2, "image_mean": [0.5, 0.5, 0.5],
                  "image_std": [0.5, 0.5, 0.5]}, preprocessor_file="full",
    weights=dict(v_emb=3e-3, v_patch=4e-4, v_qkv=0.35, v_out=3e-3, v_ln_gain=0.3, v_post_gain=0.5,
                 t_emb=1e-3, t_pos=3e-3, t_emb_gain=1.0, t_qkv=0.4, t_cross_kv=0.4, t_out=0.35, t_cross_out=0.1,
                 t_ffn=0.35, t_ln_gain=0.3, t_head_dense=0.4, t_head_gain=1.0, t_head_w=0.6, bias=0.3,
                 ramp=3e-4, ramp_ln=1.0, ramp_a=0.5, ramp_b=0.0, sep_w=3.0, sep_bias=5.5),
)

# (case name, explicit generate() arguments, prompt or None)
CASES = {
    "tiny-blip": [  # greedy by default; default max_length 20 -> 20 new tokens
        ("greedy", {}, None),
        ("greedy_max_new_tokens_5", {"max_new_tokens": 5}, None),
        ("greedy_repetition_penalty_1.3", {"repetition_penalty": 1.3}, None),
        ("greedy_no_repeat_ngram_2", {"no_repeat_ngram_size": 2}, None),
        ("greedy_min_new_tokens_12", {"min_new_tokens": 12}, None),
        ("beam3", {"num_beams": 3}, None),
        ("beam4_lp0_early_true", {"num_beams": 4, "length_penalty": 0.0, "early_stopping": True}, None),
        ("prompt_greedy", {}, "prompt"),
        ("prompt_greedy_min_new_tokens_30", {"min_new_tokens": 30}, "prompt"),  # runs to the 23-position cap
        ("prompt_beam3", {"num_beams": 3}, "prompt"),
    ],
    "tiny-blip-b": [  # text_config: num_beams 3, length_penalty 0.6, no_repeat_ngram_size 2, max_length 16
        ("beam_default", {}, None),
        ("greedy", {"num_beams": 1}, None),
        ("greedy_no_ngram", {"num_beams": 1, "no_repeat_ngram_size": 0}, None),
        ("beam2_lp0", {"num_beams": 2, "length_penalty": 0.0}, None),
        ("beam4_early_never", {"num_beams": 4, "early_stopping": "never"}, None),
        ("beam3_max_new_tokens_6", {"max_new_tokens": 6}, None),
        ("prompt_beam_default", {}, "prompt"),
        ("prompt_greedy", {"num_beams": 1}, "prompt"),
    ],
}


def _ln(rng, d, gain, bias):
    return ((gain * (1.0 + 0.3 * rng.standard_normal(d))).astype(np.float32),
            (bias * rng.standard_normal(d)).astype(np.float32))


def init_weights(model: blip.BlipForConditionalGeneration, spec: dict) -> dict:
    """Every tensor of the checkpoint from a numpy RandomState (stable across versions).

    The vision residual stream is small (std ~3e-3: variance near the 1e-5 epsilon), so its layer
    norms depend on epsilon; the text embeddings are smaller still (variance ~1e-5 at most), so
    the embedding LayerNorm output changes a lot if its 1e-12 epsilon were 1e-5. q/k/v and the
    FFN see unit-scale inputs (attention far from uniform); the head transform's GELU sees
    inputs of order 1-2 (the erf and tanh GELUs differ there). Never-emitted specials get a -8
    head bias.
    """
    rng = np.random.RandomState(spec["seed"])
    p = spec["weights"]
    vc, tc = model.config.vision_config, model.config.text_config
    t = {}

    def n(shape, std):
        return (std * rng.standard_normal(shape)).astype(np.float32)

    # vision
    dv, pz = vc.hidden_size, vc.patch_size
    n_tok = (vc.image_size // pz) ** 2 + 1
    e = "vision_model.embeddings."
    t[e + "class_embedding"] = n((1, 1, dv), p["v_emb"])
    t[e + "position_embedding"] = n((1, n_tok, dv), p["v_emb"])
    t[e + "patch_embedding.weight"] = n((dv, vc.num_channels, pz, pz), p["v_patch"])
    t[e + "patch_embedding.bias"] = n((dv,), p["v_emb"])
    for i in range(vc.num_hidden_layers):
        pre = f"vision_model.encoder.layers.{i}."
        t[pre + "self_attn.qkv.weight"] = n((3 * dv, dv), p["v_qkv"])
        t[pre + "self_attn.qkv.bias"] = n((3 * dv,), 0.1)
        t[pre + "self_attn.projection.weight"] = n((dv, dv), p["v_out"])
        t[pre + "self_attn.projection.bias"] = n((dv,), p["v_out"])
        t[pre + "mlp.fc1.weight"] = n((vc.intermediate_size, dv), p["v_qkv"])
        t[pre + "mlp.fc1.bias"] = n((vc.intermediate_size,), 0.1)
        t[pre + "mlp.fc2.weight"] = n((dv, vc.intermediate_size), p["v_out"])
        t[pre + "mlp.fc2.bias"] = n((dv,), p["v_out"])
        for ln in ("layer_norm1", "layer_norm2"):
            t[pre + ln + ".weight"], t[pre + ln + ".bias"] = _ln(rng, dv, p["v_ln_gain"], 0.1)
    t["vision_model.post_layernorm.weight"], t["vision_model.post_layernorm.bias"] = _ln(
        rng, dv, p["v_post_gain"], 0.3)

    # text
    d, V, ffn = tc.hidden_size, tc.vocab_size, tc.intermediate_size
    b = "text_decoder.bert."
    word = n((V, d), p["t_emb"])
    t[b + "embeddings.position_embeddings.weight"] = n((tc.max_position_embeddings, d), p["t_pos"])
    t[b + "embeddings.LayerNorm.weight"], t[b + "embeddings.LayerNorm.bias"] = _ln(
        rng, d, p["t_emb_gain"], p["t_emb_gain"] / 3)
    for i in range(tc.num_hidden_layers):
        pre = f"{b}encoder.layer.{i}."
        for att, kv_in, kv_std in (("attention", d, p["t_qkv"]), ("crossattention", dv, p["t_cross_kv"])):
            t[pre + f"{att}.self.query.weight"] = n((d, d), p["t_qkv"])
            t[pre + f"{att}.self.query.bias"] = n((d,), 0.1)
            for kv in ("key", "value"):
                t[pre + f"{att}.self.{kv}.weight"] = n((d, kv_in), kv_std)
                t[pre + f"{att}.self.{kv}.bias"] = n((d,), 0.1)
            t[pre + f"{att}.output.dense.weight"] = n((d, d), p["t_out"] if att == "attention" else p["t_cross_out"])
            t[pre + f"{att}.output.dense.bias"] = n((d,), 0.05)
            t[pre + f"{att}.output.LayerNorm.weight"], t[pre + f"{att}.output.LayerNorm.bias"] = _ln(
                rng, d, p["t_ln_gain"] if i or att == "crossattention" else 1.0, 0.1)
        t[pre + "intermediate.dense.weight"] = n((ffn, d), p["t_ffn"])
        t[pre + "intermediate.dense.bias"] = n((ffn,), 0.1)
        t[pre + "output.dense.weight"] = n((d, ffn), p["t_ffn"])
        t[pre + "output.dense.bias"] = n((d,), 0.05)
        t[pre + "output.LayerNorm.weight"], t[pre + "output.LayerNorm.bias"] = _ln(rng, d, p["t_ln_gain"], 0.1)
    h = "text_decoder.cls.predictions."
    t[h + "transform.dense.weight"] = n((d, d), p["t_head_dense"])
    t[h + "transform.dense.bias"] = n((d,), 0.2)
    # random-sign gains: the head does not simply favour the current token's own embedding
    t[h + "transform.LayerNorm.weight"] = (p["t_head_gain"] * rng.standard_normal(d)).astype(np.float32)
    t[h + "transform.LayerNorm.bias"] = n((d,), 0.1 * p["t_head_gain"])
    bias = n((V,), p["bias"])
    bias[NEVER] = -8.0
    bias[SEP] = p["sep_bias"]
    if spec["head"] == "untied":
        t[h + "decoder.weight"] = n((V, d), p["t_head_w"])
    # The last text dimension j carries a position ramp that only [SEP] reads, so captions end
    # after a few words, at lengths that vary with the image: no sublayer writes to j, every text
    # LayerNorm passes it with gain 1, the head transform maps it onto itself alone.
    j = d - 1
    t[b + "embeddings.position_embeddings.weight"][:, j] = p["ramp"] * np.arange(tc.max_position_embeddings)
    word[:, j] = 0.0
    for i in range(tc.num_hidden_layers):
        pre = f"{b}encoder.layer.{i}."
        for nm in ("attention.output", "crossattention.output", "output"):
            t[pre + nm + ".dense.weight"][j, :] = 0.0
            t[pre + nm + ".dense.bias"][j] = 0.0
            t[pre + nm + ".LayerNorm.weight"][j], t[pre + nm + ".LayerNorm.bias"][j] = p["ramp_ln"], 0.0
    t[b + "embeddings.LayerNorm.weight"][j], t[b + "embeddings.LayerNorm.bias"][j] = 1.0, 0.0
    hd = t[h + "transform.dense.weight"]
    hd[j, :], hd[:, j] = 0.0, 0.0
    hd[j, j] = p["ramp_a"]
    t[h + "transform.dense.bias"][j] = p["ramp_b"]
    t[h + "transform.LayerNorm.weight"][j] = abs(p["t_head_gain"])
    t[h + "transform.LayerNorm.bias"][j] = 0.0
    head_w = t.get(h + "decoder.weight", word)
    head_w[:, j] = 0.0
    head_w[SEP, j] = p["sep_w"]
    t[b + "embeddings.word_embeddings.weight"] = word
    if spec["head"] == "tied":
        t[h + "decoder.weight"] = word.copy()  # stored, equal to the embeddings
    for name in spec["bias_names"]:
        t[name] = bias
    if spec["dtype"] == "F16":
        t = {k: v.astype(np.float16).astype(np.float32) for k, v in t.items()}
    return t


def build(spec: dict):
    cfg = blip.BlipConfig(vision_config=copy.deepcopy(spec["vision"]), text_config=copy.deepcopy(spec["text"]))
    model = blip.BlipForConditionalGeneration(cfg)
    tensors = init_weights(model, spec)
    blip.load_state(model, tensors)
    return model.eval(), tensors


def write_folder(spec: dict, model, tensors: dict) -> Path:
    folder = DATA / spec["name"]
    folder.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_dict()
    cfg["transformers_version"] = TRANSFORMERS_VERSION
    write_json(folder / "config.json", cfg)
    out = dict(tensors)
    dtypes = {k: spec["dtype"] for k in out}
    out["text_decoder.bert.embeddings.position_ids"] = np.arange(
        model.config.text_config.max_position_embeddings, dtype=np.int64)[None]
    dtypes["text_decoder.bert.embeddings.position_ids"] = "I64"
    safetensors_io.save(folder / "model.safetensors", out, dtypes, metadata={"format": "pt"})
    pre = blip.blip_image_processor(spec["preprocessor"])
    if spec["preprocessor_file"] == "minimal":  # the class defaults fill the rest
        pre_dict = dict(spec["preprocessor"], image_processor_type="BlipImageProcessor",
                        processor_class="BlipProcessor")
    else:  # every key, as transformers saves it
        pre_dict = blip.blip_image_processor_dict(pre)
    write_json(folder / "preprocessor_config.json", pre_dict)
    write_tokenizer_files(folder, VOCAB, ADDED, bos="[DEC]", additional=["[ENC]"],
                          model_max_length=512)
    # round trip: the folder loads back to the same weights
    bundle = blip.load_pretrained(folder)
    a, b = model.state_dict(), bundle.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    return folder


# --------------------------------------------------------------------------------------------
# JSON output (same conventions as tools/make_golden.py)

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
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad} {json.dumps(k, ensure_ascii=False)}: {dumps(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return "[" + ",".join(json.dumps(v, ensure_ascii=False) for v in obj) + "]"
        items = [f"{pad} {dumps(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"non-finite value {obj} in golden output")
    return json.dumps(obj, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# checks and records

def noise_hook(seed: int):
    g = torch.Generator().manual_seed(seed)

    def hook(logits: torch.Tensor) -> torch.Tensor:
        return logits + (torch.rand(logits.shape, generator=g) * 2 - 1) * NOISE
    return hook


def record_case(model, pv, tok: BlipTokenizer, params: dict, prompt, with_step_logits: bool):
    processor_ids = tok.encode(prompt, add_special_tokens=True) if prompt is not None else None
    res = blip.generate(model, pv, processor_ids=processor_ids, output_attentions=with_step_logits, **params)
    rec = {"params": params}
    if prompt is not None:
        rec["prompt"] = prompt
        rec["processor_ids"] = processor_ids
    rec.update({
        "prompt_ids": res.sequence[:res.prompt_len],
        "resolved": res.resolved.to_dict(), "mode": res.mode,
        "sequence": res.sequence, "text": tok.decode(res.sequence, skip_special_tokens=True),
        "token_logprobs": [fl(v) for v in res.token_logprobs],
        "token_scores": [fl(v) for v in res.token_scores],
        "sum_logprobs": fl(res.sum_logprobs)})
    if res.mode == "beam":
        rec["sequences_scores"] = fl(res.score)
        legacy = blip.generate(model, pv, processor_ids=processor_ids, legacy_beam=True, **params)
        rec["legacy_beam_agrees"] = legacy.sequence == res.sequence
        if legacy.sequence != res.sequence:
            rec["legacy_sequence"] = legacy.sequence
            rec["legacy_sequences_scores"] = fl(legacy.score)
    elif with_step_logits:
        rec["step_logits"] = tensor(res.step_logits, 7)
        rec["cross_attentions"] = tensor(res.cross_attentions, 6)
    rec["noise_stable"] = all(
        blip.generate(model, pv, processor_ids=processor_ids, logits_hook=noise_hook(s), **params).sequence
        == res.sequence for s in (1, 2, 3))
    return rec, res


def self_checks(model, pv, processor_ids, params) -> dict:
    out = {}
    base = blip.generate(model, pv, processor_ids=processor_ids, output_attentions=True, **params)
    rec = blip.generate(model, pv, processor_ids=processor_ids, output_attentions=True,
                        recompute_cross_kv=True, **params)
    assert rec.sequence == base.sequence
    full = blip.generate(model, pv, processor_ids=processor_ids, output_attentions=True, use_cache=False,
                         **params)
    assert full.sequence == base.sequence, (full.sequence, base.sequence)
    if base.step_logits is not None:
        out["cross_kv_recompute_max_diff"] = float(np.abs(rec.step_logits - base.step_logits).max())
        assert out["cross_kv_recompute_max_diff"] <= 1e-6, out
        out["kv_cache_vs_full_max_diff"] = float(np.abs(full.step_logits - base.step_logits).max())
        assert out["kv_cache_vs_full_max_diff"] <= 5e-5, out
    out["cross_attn_cache_vs_full_max_diff"] = float(np.abs(full.cross_attentions - base.cross_attentions).max())
    assert out["cross_attn_cache_vs_full_max_diff"] <= 5e-5, out
    return out


def beam1_equals_greedy(model, pv, processor_ids) -> None:
    prompt = blip.decoder_input_ids(model.config, processor_ids)
    gen = model.config.generation_config()
    r = gen_mod.resolve(gen, model.config, input_len=len(prompt),
                        max_positions=model.config.text_config.max_position_embeddings, num_beams=1)
    enc = gen_mod.encode_image(model, pv)
    with torch.no_grad():
        greedy = gen_mod._greedy(model, enc, r, False, False, True, None, prompt)
        for fn in (gen_mod._beam, gen_mod._beam_legacy):
            beam = fn(model, enc, r, False, False, True, None, prompt)
            assert beam.sequence == greedy.sequence, (fn.__name__, beam.sequence, greedy.sequence)
            assert abs(beam.sum_logprobs - greedy.sum_logprobs) <= 1e-4


def teacher_forced_logits(model, pv, sequence) -> torch.Tensor:
    ids = torch.tensor([sequence])
    with torch.no_grad():
        return model.text_decoder(ids, encoder_hidden_states=model.encode(pv)).logits


def sensitivity(model, pv, sequence) -> dict:
    """max |logit change| on a teacher-forced sequence under the mistakes a port could make."""
    base = teacher_forced_logits(model, pv, sequence)
    out = {}

    def lns(prefix):
        return [m for nm, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm) and nm.startswith(prefix)]

    for key, prefix, eps in (("vision_eps_1e-12", "vision_model", 1e-12), ("text_eps_1e-5", "text_decoder", 1e-5)):
        mods = lns(prefix)
        saved = [m.eps for m in mods]
        for m in mods:
            m.eps = eps
        out[key] = fl(float((teacher_forced_logits(model, pv, sequence) - base).abs().max()))
        for m, e in zip(mods, saved):
            m.eps = e
    tanh = blip.activation("gelu_new")
    for key, owners in (("vision_gelu_tanh", [m for m in model.vision_model.modules() if isinstance(m, blip.BlipMLP)]),
                        ("text_gelu_tanh", [m for m in model.text_decoder.modules()
                                            if isinstance(m, (blip.BlipTextIntermediate,
                                                              blip.BlipTextPredictionHeadTransform))])):
        saved = [m.act for m in owners]
        for m in owners:
            m.act = tanh
        out[key] = fl(float((teacher_forced_logits(model, pv, sequence) - base).abs().max()))
        for m, a in zip(owners, saved):
            m.act = a
    # the causal mask value: -inf instead of HF's -10000 must not matter
    saved = blip.MASKED
    blip.MASKED = float("-inf")
    out["mask_minus_inf"] = fl(float((teacher_forced_logits(model, pv, sequence) - base).abs().max()))
    blip.MASKED = saved
    return out


def float64_agreement(model, pv, sequence) -> float:
    m64 = copy.deepcopy(model).double()
    ids = torch.tensor([sequence])
    with torch.no_grad():
        l32 = model.text_decoder(ids, encoder_hidden_states=model.encode(pv)).logits
        l64 = m64.text_decoder(ids, encoder_hidden_states=m64.encode(pv.double())).logits
    return float((l32.double() - l64).abs().max())


def check_tokenizer(tok: BlipTokenizer) -> None:
    for text, want in EXPECTED_PROMPT_TOKENS.items():
        assert tok.tokenize(text) == want, (text, tok.tokenize(text))
    assert tok.encode("a [SEP] dog") == [CLS, VOCAB.index("a"), SEP, VOCAB.index("dog"), SEP]
    assert tok.tokenize("x" * 101) == ["[UNK]"]
    assert tok.decode([DEC, VOCAB.index("a"), VOCAB.index("photo"), VOCAB.index("##graph"), VOCAB.index("."),
                       SEP], skip_special_tokens=True) == "a photograph."


def main() -> None:
    torch.set_num_threads(1)
    image_names = sorted(p.name for p in IMAGES.glob("*.png"))
    assert image_names, "tests/data/golden_images is empty: run tools/make_golden.py first"
    golden = {
        "format": "xcaption-golden-blip-1",
        "generator": "tools/make_blip_golden.py (independent PyTorch reference, tools/xcaption_ref/blip.py)",
        "semantics": "transformers BlipForConditionalGeneration, eager attention, float32, BlipImageProcessor "
                     "slow (PIL) path, BertTokenizerFast (tokenizer.json), generate() of transformers >= 4.50 "
                     "(vectorised beam search; see legacy_beam_agrees for 4.36-4.49): the text decoder's "
                     "GenerationConfig from text_config, eos = sep_token_id, lengths count the prompt, an "
                     "untouched max_length 20 means 20 new tokens capped at max_position_embeddings",
        "noise": NOISE,
        "models": {},
    }
    checks, unstable = {}, []
    for spec in (MODEL_A, MODEL_B):
        model, tensors = build(spec)
        folder = write_folder(spec, model, tensors)
        bundle = blip.load_pretrained(folder)
        model, cfg, pre, tok = bundle.model, bundle.config, bundle.preprocessor, bundle.tokenizer
        check_tokenizer(tok)
        vc, tc = cfg.vision_config, cfg.text_config
        n_tok = (vc.image_size // vc.patch_size) ** 2 + 1
        prompt = PROMPTS[spec["name"]]
        m = {
            "encoder_tokens": n_tok, "vocab_size": tc.vocab_size, "encoder_hidden_size": vc.hidden_size,
            "decoder_hidden_size": tc.hidden_size, "bos_token_id": tc.bos_token_id, "sep_token_id": tc.sep_token_id,
            "eos_token_id": tc.eos_token_id, "pad_token_id": tc.pad_token_id, "weights_dtype": spec["dtype"],
            "lm_head": spec["head"], "lm_bias_names": list(spec["bias_names"]),
            "max_position_embeddings": tc.max_position_embeddings,
            "generation_defaults": gen_mod.resolve(cfg.generation_config(), cfg, input_len=1,
                                                   max_positions=tc.max_position_embeddings).to_dict(),
            "prompt": {"text": prompt, "tokens": tok.tokenize(prompt),
                       "processor_ids": tok.encode(prompt, add_special_tokens=True),
                       "decoder_input_ids": blip.decoder_input_ids(cfg, tok.encode(prompt, add_special_tokens=True))},
            "images": {},
        }
        for img_name in image_names:
            pv_np, resized = preprocess(load_image(IMAGES / img_name), pre)
            pv = torch.from_numpy(pv_np)[None]
            first_image = img_name == image_names[0]
            with torch.no_grad():
                enc = model.encode(pv)
                k0, v0 = model.text_decoder.cross_kv(enc)[0]
                first = model.text_decoder(torch.tensor([[tc.bos_token_id]]), encoder_hidden_states=enc).logits[0, -1]
            rec = {"resized_u8": tensor(resized)}
            if first_image:
                rec["pixel_values"] = tensor(pv_np)
                rec["encoder_last_hidden_state"] = tensor(enc[0].numpy(), 7)
                rec["cross_k_layer0"] = tensor(k0[0].numpy(), 7)
                rec["cross_v_layer0"] = tensor(v0[0].numpy(), 7)
            rec["first_step_logits"] = tensor(first.numpy(), 7)
            rec["cases"] = {}
            for case, params, use_prompt in CASES[spec["name"]]:
                p = prompt if use_prompt else None
                step_logits = first_image and (case == "greedy" or case == "prompt_greedy")
                crec, res = record_case(model, pv, tok, params, p, step_logits)
                rec["cases"][case] = crec
                if not crec["noise_stable"]:
                    unstable.append(f"{spec['name']} {img_name} {case}")
            processor_ids = tok.encode(prompt, add_special_tokens=True)
            for label, ids in (("noprompt", None), ("prompt", processor_ids)):
                checks[f"{spec['name']}/{img_name}/{label}/greedy"] = self_checks(model, pv, ids, {"num_beams": 1})
                checks[f"{spec['name']}/{img_name}/{label}/beam"] = self_checks(
                    model, pv, ids, {"num_beams": 3, "length_penalty": 1.0})
                beam1_equals_greedy(model, pv, ids)
            seq = rec["cases"]["prompt_greedy"]["sequence"]
            checks[f"{spec['name']}/{img_name}/f64"] = {"float32_vs_float64_max_logit_diff":
                                                        float64_agreement(model, pv, seq)}
            assert checks[f"{spec['name']}/{img_name}/f64"]["float32_vs_float64_max_logit_diff"] <= 1e-4
            m["images"][img_name] = rec
        first_pv = torch.from_numpy(preprocess(load_image(IMAGES / image_names[0]), pre)[0])[None]
        m["sensitivity"] = sensitivity(model, first_pv,
                                       m["images"][image_names[0]]["cases"]["prompt_greedy"]["sequence"])
        golden["models"][spec["name"]] = m
    with open(DATA / "golden_blip.json", "w", encoding="utf-8") as f:
        f.write(dumps(golden))
        f.write("\n")

    for name, m in golden["models"].items():
        print(f"{name}: sensitivity {m['sensitivity']}")
        for img, rec in m["images"].items():
            for case, c in rec["cases"].items():
                flags = ("" if c["noise_stable"] else " UNSTABLE") + (
                    "" if c.get("legacy_beam_agrees", True) else " legacy-differs")
                score = c.get("sequences_scores", c["sum_logprobs"])
                n_new = len(c["sequence"]) - len(c["prompt_ids"])
                print(f"  {img:20s} {case:34s} {score:9.4f} {n_new:2d} {c['text']}{flags}")
    worst = {}
    for v in checks.values():
        for k, x in v.items():
            worst[k] = max(worst.get(k, 0.0), x)
    print("self-checks (max over images):", worst)
    for name in ("tiny-blip", "tiny-blip-b"):
        size = sum(p.stat().st_size for p in (DATA / name).iterdir())
        print(f"{name}: {size} bytes")
    print(f"golden_blip.json: {(DATA / 'golden_blip.json').stat().st_size} bytes")
    if unstable:
        raise SystemExit(f"cases that flip under +-{NOISE} logit noise (retune the weights): {unstable}")


if __name__ == "__main__":
    main()
