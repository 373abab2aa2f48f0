#!/usr/bin/python3
"""Builds the Florence-2 golden fixtures: two tiny random Florence-2 folders (the hub remote-code
layout and the transformers-native layout, same weights) and the values the independent PyTorch
reference (tools/xcaption_ref/florence2.py) computes for them.

Run:  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread /usr/bin/python3 tools/make_florence2_golden.py
(deterministic: rerunning rewrites identical files)

Writes under tests/data/:
  tiny-florence2-remote/  config.json as the hub's (vision_config dim_embed / image_pos_embed /
        visual_temporal_embedding, text_config with the BART generation keys), generation_config.json,
        preprocessor_config.json (CLIPImageProcessor, 200x200, bicubic, ImageNet mean/std,
        image_seq_length 50), pytorch_model.bin (fp16, torch.save; the tied embedding copies
        language_model.model.{encoder,decoder}.embed_tokens.weight and language_model.lm_head.weight
        share the storage of language_model.model.shared.weight; image_projection stored (in, out);
        language_model.final_logits_bias nonzero), tokenizer.json / vocab.json / tokenizer_config.json
        of a small BART byte-level BPE without the Florence tokens (the processor adds them: ids
        TOKENS..TOKENS+1023 after the base vocabulary).
  tiny-florence2-native/  the florence-community layout: model.safetensors (F32, the same values as
        the fp16 remote weights; model.* / lm_head names, no final_logits_bias, no lm_head.weight or
        embed_tokens copies: tied to model.language_model.shared.weight; vocabulary padded with
        `<image>` and rows near the mean embedding to a multiple of 64), config.json with image_token_id,
        tokenizer files holding the Florence tokens and `<image>`, processor_config.json.
  golden_florence2.json: expected values (layout described in tests/data/README.md).

Shapes: DaViT dims 8/16/24/32, depths 1/1/2/1, heads = groups = 1/2/3/4 (head and group dim 8),
window 12; the 200x200 image gives stage grids 50, 25, 13, 7: every stage's windows need zero
padding (60, 36, 24, 12) and the strided convolutions see odd sizes; the projector adds positions
to the 7x7 grid and prepends the mean token: 50 image tokens of width 32. BART d_model 32, 4 heads,
FFN 64, 2 encoder + 2 decoder layers, max_position_embeddings 128.

Self-checks (the script fails when one does not hold): the folders load back; native logits equal
remote logits minus final_logits_bias on the shared vocabulary; incremental decoding equals full
forwards; cross K/V computed once equal recomputing them; beam search with one beam equals
greedy; float32 within 1e-4 of float64; every recorded generation survives +-1e-4 logit noise.
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

from tokenizer_reference import train_bpe  # noqa: E402
from xcaption_ref import florence2 as fl2  # noqa: E402
from xcaption_ref import florence2_files as ff  # noqa: E402
from xcaption_ref import generate as gen_mod  # noqa: E402
from xcaption_ref.preprocess import load_image, preprocess  # noqa: E402

DATA = ROOT / "tests" / "data"
IMAGES = DATA / "golden_images"
REMOTE, NATIVE = "tiny-florence2-remote", "tiny-florence2-native"
NOISE = 1e-4
IMAGE_SIZE = 200
SEED = 7

VISION = dict(dims=[8, 16, 24, 32], depths=[1, 1, 2, 1], heads=[1, 2, 3, 4], groups=[1, 2, 3, 4], window=12,
              projection_dim=32, max_pos=10, max_temporal=8)
TEXT = dict(d_model=32, heads=4, ffn=64, encoder_layers=2, decoder_layers=2, max_position_embeddings=128)

CORPUS = """\
What does the image describe? Describe in detail what is shown in the image.
Describe with a paragraph what is shown in the image. Locate the objects with category name in the image.
Locate the objects in the image, with their descriptions. Locate the region proposals in the image.
What is the text in the image? What is the text in the image, with regions?
Locate the phrases in the caption: a man riding a horse on the beach.
What is the polygon mask of region? Locate in the image with mask. What is the region? What text is in the region?
A man riding a red bike down a street next to a white car.
A dog is sitting on a wooden bench in a green park.
Two people are standing on the beach near the water.
A cat sitting on top of a table with a plate of food.
A close up of a pizza on a plate on a table.
The image shows a small house with a blue door and a tree in front of it.
A group of people walking down a city street at night.
A train traveling down the tracks next to a tall building.
A woman holding an umbrella in the rain while she walks.
The picture shows a bowl of fruit, a cup of coffee and a book on a table.
There is a sign on the wall that reads OPEN and a clock above the door.
car, wheel, person, dog, cat, bird, tree, house, window, door, sign, table, chair, plate, cup, bus.
"""
NUM_MERGES = 300

TASKS = ["<CAPTION>", "<DETAILED_CAPTION>", "<OD>", "<OCR_WITH_REGION>", "<CAPTION_TO_PHRASE_GROUNDING>"]
GROUNDING_TEXT = "A man riding a red bike"
ALL_TASK_INPUTS = {  # every task of the processor, with an input where the task takes one
    "<OCR>": "<OCR>", "<OCR_WITH_REGION>": "<OCR_WITH_REGION>", "<CAPTION>": "<CAPTION>",
    "<DETAILED_CAPTION>": "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>": "<MORE_DETAILED_CAPTION>",
    "<OD>": "<OD>", "<DENSE_REGION_CAPTION>": "<DENSE_REGION_CAPTION>", "<REGION_PROPOSAL>": "<REGION_PROPOSAL>",
    "<CAPTION_TO_PHRASE_GROUNDING>": "<CAPTION_TO_PHRASE_GROUNDING>" + GROUNDING_TEXT,
    "<REFERRING_EXPRESSION_SEGMENTATION>": "<REFERRING_EXPRESSION_SEGMENTATION>a green car",
    "<REGION_TO_SEGMENTATION>": "<REGION_TO_SEGMENTATION><loc_702><loc_575><loc_866><loc_772>",
    "<OPEN_VOCABULARY_DETECTION>": "<OPEN_VOCABULARY_DETECTION>a green car",
    "<REGION_TO_CATEGORY>": "<REGION_TO_CATEGORY><loc_52><loc_332><loc_932><loc_774>",
    "<REGION_TO_DESCRIPTION>": "<REGION_TO_DESCRIPTION><loc_52><loc_332><loc_932><loc_774>",
    "<REGION_TO_OCR>": "<REGION_TO_OCR><loc_52><loc_332><loc_932><loc_774>",
}
PROMPT_VARIANTS = [  # where remote and native _construct_prompts differ (native strips the input)
    "<CAPTION_TO_PHRASE_GROUNDING> a dog  ",
    "<OPEN_VOCABULARY_DETECTION>car",
    "plain text without a task token",
]
MAX_NEW = 32
TUNE = dict(head_gain=1.5, eos_norm=4.0, loc_scale=0.7, ramp=0.2, loc_run=1.5)
CASES = [  # (name, generate() arguments); the folder's defaults give num_beams 3
    ("greedy", {"num_beams": 1, "max_new_tokens": MAX_NEW}),
    ("beam3", {"max_new_tokens": MAX_NEW}),
]
DEFAULT_LENGTH_CASE = ("beam3_default_max_length", {})  # untouched max_length 20 -> 20 new tokens


# --------------------------------------------------------------------------------------------
# JSON output (conventions of tools/make_blip_golden.py)

def fl(x: float) -> float:
    return float(format(float(x), ".9g"))


def tensor(a, digits: int = 7) -> dict:
    a = np.asarray(a)
    if a.dtype.kind in "iub":
        data = [int(v) for v in a.reshape(-1)]
    else:
        data = [float(format(float(v), f".{digits}g")) for v in a.reshape(-1).astype(np.float64)]
    return {"shape": list(a.shape), "data": data}


def summary(a, n: int = 16, strided: int = 64) -> dict:
    """shape, sum, sum of |x|, the first and last n values (row-major) and `strided` values at
    flat indices (i * size) // strided, i = 0..strided-1."""
    a = np.asarray(a, dtype=np.float64)
    flat = a.reshape(-1)
    idx = [(i * flat.size) // strided for i in range(strided)]
    return {"shape": list(a.shape), "sum": fl(flat.sum()), "abs_sum": fl(np.abs(flat).sum()),
            "first": [fl(v) for v in flat[:n]], "last": [fl(v) for v in flat[-n:]],
            "strided": [fl(flat[i]) for i in idx]}


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
        if all(isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v) for v in obj):
            return "[" + ",".join(dumps(v) for v in obj) + "]"
        items = [f"{pad} {dumps(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"non-finite value {obj} in golden output")
    return json.dumps(obj, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# tokenizer and weights

def build_vocab():
    byte_vocab, merges = train_bpe(CORPUS, NUM_MERGES)
    return ff.bart_vocab(byte_vocab), merges


def unprintable_ids(vocab):
    """ids of the single-byte tokens outside printable ASCII (their captions would not be UTF-8)."""
    from tokenizer_reference import BYTE_TO_CHAR
    return [vocab[BYTE_TO_CHAR[b]] for b in range(256) if not 0x20 <= b <= 0x7E]


def init_weights(model: fl2.Florence2, base_vocab: int, unprintable) -> None:
    """Every parameter from a seeded numpy RandomState, then rounded to fp16 (so the F32 native
    file and the fp16 remote file hold the same values).

    Scales: activations of order one everywhere (attention far from uniform, GELU inputs of
    order 1-2 where erf and tanh GELUs differ); layer-norm gains 1 +- 0.3 with biases; shared
    embeddings N(0, 0.5) so logits have a spread of a few units. Decoder position embeddings
    carry a ramp along the </s> embedding so captions end after varying lengths; <pad>, <unk>,
    <mask> rows are shrunk so they are not generated."""
    rng = np.random.RandomState(SEED)
    sd = model.state_dict()
    cfg = model.config
    new = {}
    for name, v in sd.items():
        shape = tuple(v.shape)
        if name.endswith("pos_idx_to_embed") or name == "final_logits_bias":  # remote bias: write_folders
            new[name] = v.numpy()
            continue
        leaf = name.rsplit(".", 1)[-1]
        parts = name.split(".")
        is_norm = (len(parts) > 1 and "norm" in parts[-2]) or "layernorm" in name or "layer_norm" in name
        if is_norm:
            a = (1.0 + 0.3 * rng.standard_normal(shape)) if leaf == "weight" else 0.1 * rng.standard_normal(shape)
        elif leaf == "bias":
            a = 0.1 * rng.standard_normal(shape)
        elif name.endswith("embed_positions.weight"):
            a = 0.3 * rng.standard_normal(shape)
        elif "position_embed" in name:
            a = 0.5 * rng.standard_normal(shape)
        elif name == "language_model.shared.weight":
            a = 0.5 * rng.standard_normal(shape)
        elif len(shape) == 4:  # convolutions
            fan_in = shape[1] * shape[2] * shape[3]
            gain = 0.3 if shape[1] == 1 else 1.0  # depthwise: a mild residual
            a = gain / math.sqrt(fan_in) * rng.standard_normal(shape)
        else:  # linear (out, in)
            fan_in = shape[1]
            gain = 1.5 if (name.endswith("qkv.weight") or name.endswith(("q_proj.weight", "k_proj.weight"))) else 0.8
            a = gain / math.sqrt(fan_in) * rng.standard_normal(shape)
        new[name] = a.astype(np.float32)
    emb = new["language_model.shared.weight"]
    d = cfg.d_model
    last = f"language_model.decoder.layers.{cfg.decoder_layers - 1}.final_layer_norm."
    # random-sign gains on the last LayerNorm: the logits do not simply favour the input token's
    # own (tied) embedding, which would make every caption repeat one token
    g = np.where(rng.standard_normal(d) < 0, -1.0, 1.0) * (1.0 + 0.3 * rng.standard_normal(d)) * TUNE["head_gain"]
    new[last + "weight"] = g
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    e = g * u
    emb[2] = TUNE["eos_norm"] * e / np.linalg.norm(e)          # </s>: read by the position ramp below
    for i in (1, 3, base_vocab - 1):                           # <pad>, <unk>, <mask>
        emb[i] *= 0.05
    for i in unprintable:                                      # bytes outside printable ASCII
        emb[i] *= 0.05
    loc0 = base_vocab + fl2.FLORENCE_ADDED_TOKENS.index("<loc_0>")
    emb[loc0:loc0 + 1000] *= TUNE["loc_scale"]
    # a shared component of the <loc_N> rows on dimensions where the last gain is positive: a
    # location token makes the next one likely, so boxes come as runs of four and more
    w = np.where(g > 0, rng.standard_normal(d), 0.0)
    w -= (w @ u) * u
    w /= np.linalg.norm(w)
    emb[loc0:loc0 + 1000] += TUNE["loc_run"] * w
    pos = new["language_model.decoder.embed_positions.weight"]
    pos += TUNE["ramp"] * np.arange(pos.shape[0])[:, None] * u[None, :]
    if cfg.vocab_size > base_vocab + len(fl2.FLORENCE_ADDED_TOKENS):  # native padding rows
        start = base_vocab + len(fl2.FLORENCE_ADDED_TOKENS)
        mu = emb[:start].mean(axis=0)
        emb[start:] = mu + 0.01 * rng.standard_normal((cfg.vocab_size - start, d))
    for k in new:
        new[k] = new[k].astype(np.float16).astype(np.float32)
    with torch.no_grad():
        for k, v in sd.items():
            v.copy_(torch.from_numpy(new[k]))


# --------------------------------------------------------------------------------------------
# folders

def write_folders(vocab, merges):
    remote_dir, native_dir = DATA / REMOTE, DATA / NATIVE
    for d in (remote_dir, native_dir):
        d.mkdir(parents=True, exist_ok=True)
        for p in d.iterdir():
            p.unlink()
    base = len(vocab)
    n_remote = ff.write_tokenizer(remote_dir, "remote", vocab, merges)
    n_native = ff.write_tokenizer(native_dir, "native", vocab, merges)
    image_token_id = n_native - 1
    native_vocab = ((n_native + 63) // 64) * 64
    grid = stage_grid(IMAGE_SIZE)[-1]
    seq = 1 + grid * grid
    rcfg = ff.remote_config(VISION, TEXT, n_remote)
    ncfg = ff.native_config(rcfg, native_vocab, image_token_id)
    # one set of weights: built at the native vocabulary size; the remote model takes its rows
    ncfg_parsed = fl2.parse_config(ncfg)
    model_n = fl2.Florence2(ncfg_parsed)
    init_weights(model_n, base, unprintable_ids(vocab))
    model_r = fl2.Florence2(fl2.parse_config(rcfg))
    with torch.no_grad():
        for k, v in model_r.state_dict().items():
            src = model_n.state_dict()[k]
            if k == "final_logits_bias":
                rng = np.random.RandomState(SEED + 1)
                v.copy_(torch.from_numpy((0.3 * rng.standard_normal(tuple(v.shape))).astype(np.float16).astype(np.float32)))
            elif k == "language_model.shared.weight":
                v.copy_(src[: v.shape[0]])
            else:
                v.copy_(src)
    for d, cfg, layout in ((remote_dir, rcfg, "remote"), (native_dir, ncfg, "native")):
        ff.write_json(d / "config.json", cfg)
        ff.write_json(d / "generation_config.json", ff.generation_config(layout))
        ff.write_json(d / "preprocessor_config.json", ff.preprocessor_config(layout, IMAGE_SIZE, seq))
    ff.write_json(native_dir / "processor_config.json", ff.processor_config())
    rt = fl2.to_checkpoint(model_r, "remote")
    ff.save_remote_bin(remote_dir / "pytorch_model.bin", rt, "language_model.model.shared.weight", fl2.REMOTE_TIED)
    ff.save_native(native_dir / "model.safetensors", fl2.to_checkpoint(model_n, "native"))
    # round trip
    for d, m in ((remote_dir, model_r), (native_dir, model_n)):
        b = fl2.load_pretrained(d)
        for k, v in m.state_dict().items():
            assert torch.equal(v, b.model.state_dict()[k]), (d, k)
    return remote_dir, native_dir


def stage_grid(size: int):
    out, s = [], size
    for k, st, p in zip([7, 3, 3, 3], [4, 2, 2, 2], [3, 1, 1, 1]):
        s = (s + 2 * p - k) // st + 1
        out.append(s)
    return out


# --------------------------------------------------------------------------------------------
# records

def noise_hook(seed: int):
    g = torch.Generator().manual_seed(seed)

    def hook(logits):
        return logits + (torch.rand(logits.shape, generator=g) * 2 - 1) * NOISE
    return hook


def record_generation(bundle, run, params, image_size, task, flavor):
    model, tok = bundle.model, bundle.tokenizer
    res = fl2.generate(model, run, **params)
    text = tok.decode(res.sequence, skip_special_tokens=False)
    rec = {"params": params, "resolved": res.resolved.to_dict(), "mode": res.mode, "sequence": res.sequence,
           "text": text, "text_clean_up": tok.decode(res.sequence, skip_special_tokens=False, clean_up=True),
           "text_skip_special": tok.decode(res.sequence, skip_special_tokens=True),
           "token_logprobs": [fl(v) for v in res.token_logprobs],
           "token_scores": [fl(v) for v in res.token_scores], "sum_logprobs": fl(res.sum_logprobs)}
    if res.mode == "beam":
        rec["sequences_scores"] = fl(res.score)
    rec["post_processed"] = fl2.post_process_generation(text, task, image_size, flavor)
    rec["noise_stable"] = all(fl2.generate(model, run, logits_hook=noise_hook(s), **params).sequence == res.sequence
                              for s in (1, 2, 3))
    # cache / recompute / full-forward agreement
    full = fl2.generate(model, run, use_cache=False, **params)
    rec_kv = fl2.generate(model, run, recompute_cross_kv=True, **params)
    assert full.sequence == res.sequence and rec_kv.sequence == res.sequence, (task, params)
    return rec, res


def float64_agreement(model, run, seq) -> float:
    m64 = copy.deepcopy(model).double()
    with torch.no_grad():
        l32 = model.decode_full(run.encoder_out, seq)
        feats = m64.image_features(run.record["pixel_values"].double())
        enc = m64.encode(feats, run.prompt_ids)
        l64 = m64.decode_full(enc, seq)
    return float((l32.double() - l64).abs().max())


def sensitivity(model, run, seq) -> dict:
    """max |logit change| on a teacher-forced sequence under mistakes a port could make."""
    pv = run.record["pixel_values"]

    def logits(m=model):
        with torch.no_grad():
            enc = m.encode(m.image_features(pv), run.prompt_ids)
            return m.decode_full(enc, seq)

    base = logits()
    out = {}
    mods = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    for m in mods:
        m.eps = 1e-6
    out["layer_norm_eps_1e-6"] = fl((logits() - base).abs().max())
    for m in mods:
        m.eps = 1e-5
    saved = fl2._gelu
    fl2._gelu = lambda x: torch.nn.functional.gelu(x, approximate="tanh")
    out["gelu_tanh"] = fl((logits() - base).abs().max())
    fl2._gelu = saved
    tb = model.multi_modal_projector.visual_temporal_embed.pos_idx_to_embed
    keep = tb.clone()
    tb.zero_()
    out["no_temporal_embedding"] = fl((logits() - base).abs().max())
    tb.copy_(keep)
    fb = model.final_logits_bias.clone()
    model.final_logits_bias.zero_()
    out["no_final_logits_bias"] = fl((logits() - base).abs().max())
    model.final_logits_bias.copy_(fb)
    lp = fl2.LearnedPositions.OFFSET
    fl2.LearnedPositions.OFFSET = 0
    out["position_offset_0"] = fl((logits() - base).abs().max())
    fl2.LearnedPositions.OFFSET = lp
    # window padding masked (keys of padded tokens excluded): what the real model's 768 input never needs
    orig = fl2.WindowAttention.forward

    def masked(self, x):
        b, h, w, c = x.shape
        ws = self.window
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        valid = torch.zeros(h + pad_b, w + pad_r, dtype=torch.bool)
        valid[:h, :w] = True
        xp = torch.nn.functional.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        win = xp.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        vm = valid.view(hp // ws, ws, wp // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws).repeat(b, 1)
        n = win.size(0)
        hd = c // self.heads
        q, k, v = self.qkv(win).reshape(n, ws * ws, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        s = (q * hd ** -0.5) @ k.transpose(-2, -1)
        s = s.masked_fill(~vm[:, None, None, :], float("-inf"))
        o = self.proj((torch.softmax(s, -1) @ v).transpose(1, 2).reshape(n, ws * ws, c))
        o = o.view(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        return o[:, :h, :w, :].reshape(b, h * w, c)

    fl2.WindowAttention.forward = masked
    out["window_padding_masked"] = fl((logits() - base).abs().max())
    fl2.WindowAttention.forward = orig
    orig_c = fl2.ChannelAttention.forward

    def channel_scale_by_dim(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.groups, c // self.groups).permute(2, 0, 3, 1, 4)
        q = q * float(c // self.groups) ** -0.5
        a = torch.softmax(q.transpose(-1, -2) @ k, dim=-1)
        return self.proj((a @ v.transpose(-1, -2)).transpose(-1, -2).transpose(1, 2).reshape(b, n, c))

    fl2.ChannelAttention.forward = channel_scale_by_dim
    out["channel_attention_scaled_by_group_dim"] = fl((logits() - base).abs().max())
    fl2.ChannelAttention.forward = orig_c
    return out


POST_CASES = [  # (name, task, text, (width, height))
    ("caption", "<CAPTION>", "</s><s>A green car parked in front of a yellow building.</s>", (640, 480)),
    ("caption_pad", "<MORE_DETAILED_CAPTION>", "</s><s> The image shows a dog. </s><pad><pad>", (640, 480)),
    ("od", "<OD>", "</s><s>car<loc_52><loc_332><loc_932><loc_774>door handle<loc_899><loc_436><loc_946><loc_516>"
     "wheel<loc_708><loc_575><loc_866><loc_772><loc_147><loc_581><loc_305><loc_773></s>", (640, 480)),
    ("od_odd_locs", "<OD>", "</s><s>cat<loc_1><loc_2><loc_3>dog<loc_4><loc_5><loc_6><loc_7><loc_8></s>", (23, 37)),
    ("od_empty_and_space_label", "<OD>", "</s><s><loc_10><loc_20><loc_30><loc_40>  <loc_11><loc_21><loc_31><loc_41>"
     " tree <loc_0><loc_0><loc_999><loc_999></s>", (1000, 1000)),
    ("od_non_ascii_and_markers", "<DENSE_REGION_CAPTION>", "</s><s>caf\u00e9 sign<loc_5><loc_6><loc_7><loc_8>"
     "<obj>red bus<loc_100><loc_200><loc_300><loc_400>A<ground> B<loc_1><loc_1><loc_2><loc_2></s>", (333, 517)),
    ("region_proposal", "<REGION_PROPOSAL>", "</s><s><loc_10><loc_20><loc_30><loc_40><loc_50><loc_60><loc_70>"
     "<loc_80><loc_1><loc_2></s>", (640, 480)),
    ("ocr", "<OCR_WITH_REGION>", "</s><s>HELLO<loc_100><loc_200><loc_300><loc_200><loc_300><loc_250><loc_100>"
     "<loc_250>WORLD 2<loc_500><loc_500><loc_900><loc_500><loc_900><loc_600><loc_500><loc_600>tail<loc_1>"
     "<loc_2></s>", (640, 480)),
    ("ocr_leading_space", "<OCR_WITH_REGION>", "</s><s> a b <loc_0><loc_0><loc_999><loc_0><loc_999><loc_999>"
     "<loc_0><loc_999></s>", (23, 37)),
    ("phrase_grounding", "<CAPTION_TO_PHRASE_GROUNDING>", "</s><s>A red car<loc_10><loc_20><loc_300><loc_400>"
     "the<loc_1><loc_2><loc_3><loc_4>a dog<loc_5><loc_6><loc_7><loc_8><loc_9><loc_10><loc_11><loc_12>"
     "it<loc_1><loc_1><loc_1><loc_1> Image<loc_3><loc_3><loc_4><loc_4></s>", (640, 480)),
    ("phrase_grounding_markers", "<CAPTION_TO_PHRASE_GROUNDING>", "</s><s><ground>a man<loc_10><loc_20><loc_30>"
     "<loc_40> the image<loc_1><loc_2><loc_3><loc_4>x<obj>y<loc_5><loc_6><loc_7><loc_8></s>", (100, 50)),
    ("polygons", "<REFERRING_EXPRESSION_SEGMENTATION>", "</s><s><loc_10><loc_20><loc_30><loc_40><loc_50><loc_60>"
     "<sep><loc_1><loc_2><loc_3><loc_4><loc_5></s>", (640, 480)),
    ("polygons_poly_markers", "<REGION_TO_SEGMENTATION>", "</s><s>person<poly><loc_1><loc_2><loc_3><loc_4>"
     "<loc_5><loc_6></poly><poly><loc_7><loc_8><loc_9><loc_10></poly></s>", (640, 480)),
    ("open_vocabulary_boxes", "<OPEN_VOCABULARY_DETECTION>", "</s><s>a green car<loc_52><loc_332><loc_932>"
     "<loc_774></s>", (640, 480)),
    ("open_vocabulary_polygons", "<OPEN_VOCABULARY_DETECTION>", "</s><s>a green car<poly><loc_52><loc_332>"
     "<loc_932><loc_774><loc_500><loc_500></poly></s>", (640, 480)),
    ("region_to_category", "<REGION_TO_CATEGORY>", "</s><s>car<loc_52><loc_332><loc_932><loc_774></s>", (640, 480)),
    ("unknown_task_is_pure_text", "<NOT_A_TASK>", "</s><s>x<loc_1></s>", (10, 10)),
]

TOKENIZE_CASES = [
    "What does the image describe?",
    "<s>What does the image describe?</s>",
    "a photo<loc_5><loc_999> of<od>cats</od> <sep>",
    "  two  spaces and CAPS",
    "caf\u00e9 \u2014 na\u00efve",
    "<loc_1000> is not a token, <loc_0> is",
]


def check_post_processing_by_hand() -> None:
    """A few results worked out from processing_florence2.py by hand (not by the reference)."""
    od = fl2.post_process_generation(POST_CASES[2][2], "<OD>", (640, 480), "remote")["<OD>"]
    want = [(52 + 0.5) * 0.64, (332 + 0.5) * 0.48, (932 + 0.5) * 0.64, (774 + 0.5) * 0.48]
    assert all(abs(a - b) < 1e-4 for a, b in zip(od["bboxes"][0], want)), od
    assert od["labels"] == ["car", "door handle", "wheel", "wheel"], od
    nat = fl2.post_process_generation(POST_CASES[2][2], "<OD>", (640, 480), "native")["<OD>"]
    assert nat["bboxes"][0] == [33, 159, 596, 371], nat
    ocr = fl2.post_process_generation(POST_CASES[7][2], "<OCR_WITH_REGION>", (640, 480), "remote")["<OCR_WITH_REGION>"]
    assert ocr["labels"] == ["</s>HELLO", "WORLD 2"], ocr  # remote removes only <s>
    pg = fl2.post_process_generation(POST_CASES[9][2], "<CAPTION_TO_PHRASE_GROUNDING>", (640, 480), "remote")
    assert pg["<CAPTION_TO_PHRASE_GROUNDING>"]["labels"] == ["A red car", "a dog", "a dog", "Image"], pg
    poly = fl2.post_process_generation(POST_CASES[11][2], "<REFERRING_EXPRESSION_SEGMENTATION>", (640, 480), "native")
    assert [len(p) for p in poly["<REFERRING_EXPRESSION_SEGMENTATION>"]["polygons"][0]] == [6, 4], poly


def main() -> None:
    torch.set_num_threads(1)
    image_names = sorted(p.name for p in IMAGES.glob("*.png"))
    vocab, merges = build_vocab()
    remote_dir, native_dir = write_folders(vocab, merges)
    bundles = {REMOTE: fl2.load_pretrained(remote_dir), NATIVE: fl2.load_pretrained(native_dir)}
    flavors = {REMOTE: "remote", NATIVE: "native"}
    golden = {
        "format": "xcaption-golden-florence2-1",
        "generator": "tools/make_florence2_golden.py (independent PyTorch reference, tools/xcaption_ref/florence2.py)",
        "semantics": "Florence-2 (hub remote code and transformers-native), eager attention, float32 compute on the "
                     "stored weights, CLIPImageProcessor slow (PIL) path, BartTokenizerFast + the processor's added "
                     "tokens, generate() of transformers >= 4.50 with the language model's GenerationConfig from "
                     "text_config (num_beams 3, no_repeat_ngram_size 3, early_stopping, forced BOS 0 / EOS 2, "
                     "decoder start 2, length_penalty 1.0); decoded with skip_special_tokens=False",
        "noise": NOISE,
        "tokenizer": {},
        "post_processing": [],
        "models": {},
    }
    # tokenizer: prompts of every task, both flavors, and extra strings
    tr, tn = bundles[REMOTE].tokenizer, bundles[NATIVE].tokenizer
    prompts = {}
    for task, text in ALL_TASK_INPUTS.items():
        pr, pn = fl2.prompt_ids(tr, text, "remote"), fl2.prompt_ids(tn, text, "native")
        prompts[task] = {"input": text, "prompt": fl2.construct_prompt(text, "remote"), "remote_ids": pr,
                         "native_prompt": fl2.construct_prompt(text, "native"), "native_ids": pn,
                         "tokens": tr.tokens(pr)}
    golden["tokenizer"] = {
        "base_vocab_size": len(vocab), "remote_size": tr.size, "native_size": tn.size,
        "first_added_id": len(vocab), "loc_0_id": tr.token_to_id["<loc_0>"], "loc_999_id": tr.token_to_id["<loc_999>"],
        "image_token_id": tn.token_to_id["<image>"],
        "task_prompts": prompts,
        "prompt_variants": [{"input": v, "prompt": fl2.construct_prompt(v, "remote"),
                             "native_prompt": fl2.construct_prompt(v, "native"),
                             "remote_ids": fl2.prompt_ids(tr, v, "remote"), "native_ids": fl2.prompt_ids(tn, v, "native")}
                            for v in PROMPT_VARIANTS],
        "encode": [{"text": s, "ids": tr.encode(s, add_special_tokens=False),
                    "ids_with_specials": tr.encode(s, add_special_tokens=True)} for s in TOKENIZE_CASES],
    }
    for ids in ([2, 0] + tr.encode(" a photo of", add_special_tokens=False) + [tr.token_to_id["<loc_7>"], 2, 1],):
        golden["tokenizer"]["decode"] = {"ids": ids, "text": tr.decode(ids), "text_skip_special": tr.decode(ids, True)}
    check_post_processing_by_hand()
    for name, task, text, size in POST_CASES:
        golden["post_processing"].append({
            "name": name, "task": task, "text": text, "image_size": list(size),
            "remote": fl2.post_process_generation(text, task, size, "remote"),
            "native": fl2.post_process_generation(text, task, size, "native")})

    unstable, checks = [], {}
    for mname in (REMOTE, NATIVE):
        bundle = bundles[mname]
        model, cfg, pre, tok = bundle.model, bundle.config, bundle.preprocessor, bundle.tokenizer
        flavor = flavors[mname]
        grid = stage_grid(IMAGE_SIZE)
        m = {
            "layout": cfg.layout, "weights_dtype": "F16" if cfg.layout == "remote" else "F32",
            "weights_file": "pytorch_model.bin" if cfg.layout == "remote" else "model.safetensors",
            "vocab_size": cfg.vocab_size, "tokenizer_size": tok.size, "image_size": IMAGE_SIZE,
            "stage_grids": grid, "image_tokens": 1 + grid[-1] ** 2, "d_model": cfg.d_model,
            "projection_dim": cfg.projection_dim,
            "generation_defaults": fl2.resolved(cfg).to_dict(), "images": {},
        }
        for img_name in image_names:
            image = load_image(IMAGES / img_name)
            size = image.size  # (width, height)
            pv_np, resized = preprocess(image, pre)
            pv = torch.from_numpy(pv_np)[None]
            first = img_name == image_names[0]
            rec = {"original_size": list(size), "pixel_values": summary(pv_np), "resized_u8_sum": int(resized.sum())}
            cap_ids = fl2.prompt_ids(tok, "<CAPTION>", flavor)
            run = fl2.prepare(model, pv, cap_ids)
            run.record["pixel_values"] = pv
            r = run.record
            rec["vision_stages"] = [summary(s[0].permute(1, 2, 0).numpy()) for s in r["stages"]]  # (h, w, C)
            vo = r["vision_out"][0].permute(1, 2, 0).reshape(-1, r["vision_out"].shape[1]).numpy()  # (h*w, C)
            rec["vision_out"] = tensor(vo) if first else summary(vo)
            rec["projector_pooled_input"] = summary(r["pooled_input"][0].numpy())
            rec["image_features"] = tensor(r["image_features"][0].numpy()) if first else summary(r["image_features"][0].numpy())
            rec["tasks"] = {}
            for task in TASKS:
                text = ALL_TASK_INPUTS[task]
                ids = fl2.prompt_ids(tok, text, flavor)
                trun = fl2.prepare(model, pv, ids)
                trun.record["pixel_values"] = pv
                t = {"input": text, "prompt_ids": ids}
                enc = trun.encoder_out[0].numpy()
                t["encoder_out"] = tensor(enc) if (first and task == "<CAPTION>") else summary(enc)
                with torch.no_grad():
                    steps = model.decode_full(trun.encoder_out, [2, 0])[0].numpy()  # logits after </s>, after </s><s>
                t["first_step_logits"] = (tensor(steps) if (first and task == "<CAPTION>")
                                          else {"step0": summary(steps[0]), "step1": summary(steps[1])})
                t["first_step_argmax"] = [int(np.argmax(steps[0])), int(np.argmax(steps[1]))]
                t["cases"] = {}
                case_list = CASES + ([DEFAULT_LENGTH_CASE] if task == "<CAPTION>" else [])
                for cname, params in case_list:
                    crec, res = record_generation(bundle, trun, params, size, task, flavor)
                    t["cases"][cname] = crec
                    if not crec["noise_stable"]:
                        unstable.append(f"{mname} {img_name} {task} {cname}")
                # beam search with one beam equals greedy
                g = fl2.generate(model, trun, num_beams=1, max_new_tokens=MAX_NEW)
                r1 = fl2.resolved(cfg, num_beams=1, max_new_tokens=MAX_NEW)
                with torch.no_grad():
                    b1 = gen_mod._beam(model, trun.encoder_out, r1, False, False, True, None, [2])
                assert b1.sequence == g.sequence, (mname, img_name, task, b1.sequence, g.sequence)
                rec["tasks"][task] = t
            seq = rec["tasks"]["<CAPTION>"]["cases"]["greedy"]["sequence"]
            checks[f"{mname}/{img_name}/f64"] = float64_agreement(model, run, seq)
            assert checks[f"{mname}/{img_name}/f64"] <= 1e-4, checks
            if mname == REMOTE:
                # native computes the same function minus final_logits_bias, on a padded vocabulary
                nb = bundles[NATIVE]
                nrun = fl2.prepare(nb.model, pv, cap_ids)
                with torch.no_grad():
                    lr = model.decode_full(run.encoder_out, seq)[0]
                    ln = nb.model.decode_full(nrun.encoder_out, seq)[0]
                diff = float((lr - model.final_logits_bias[0] - ln[:, :cfg.vocab_size]).abs().max())
                checks[f"remote_vs_native/{img_name}"] = diff
                assert diff <= 1e-5, diff
            if first:
                m["sensitivity"] = sensitivity(model, run, seq)
            m["images"][img_name] = rec
        golden["models"][mname] = m

    with open(DATA / "golden_florence2.json", "w", encoding="utf-8") as f:
        f.write(dumps(golden))
        f.write("\n")

    for mname, m in golden["models"].items():
        print(f"{mname}: sensitivity {m.get('sensitivity')}")
        for img, rec in m["images"].items():
            for task, t in rec["tasks"].items():
                for cname, c in t["cases"].items():
                    flag = "" if c["noise_stable"] else " UNSTABLE"
                    n_new = len(c["sequence"]) - 1
                    print(f"  {img:18s} {task:30s} {cname:26s} {n_new:2d} {c['text'][:90]}{flag}")
                    print(f"  {'':18s} {'':30s} {'':26s}    -> {json.dumps(c['post_processed'])[:120]}")
    print("checks:", {k: fl(v) for k, v in checks.items()})
    for name in (REMOTE, NATIVE):
        size = sum(p.stat().st_size for p in (DATA / name).iterdir())
        print(f"{name}: {size} bytes")
    print(f"golden_florence2.json: {(DATA / 'golden_florence2.json').stat().st_size} bytes")
    if unstable:
        raise SystemExit(f"cases that flip under +-{NOISE} logit noise (retune the weights): {unstable}")


if __name__ == "__main__":
    main()
