"""PyTorch reference of Florence-2 inference (microsoft/Florence-2-base / -large): the DaViT image
tower, the image projector, the BART encoder-decoder with its LM head, the processor (image
preprocessing, task prompts, BART byte-level BPE tokenizer with the Florence added tokens),
generate() with the Florence defaults and post_process_generation, written from the sources
below without transformers installed. float32, eager attention.

Sources read (what was verified where)
-------------------------------------
Hub remote code (microsoft/Florence-2-*, `trust_remote_code`):
- modeling_florence2.py: DaViT (ConvEmbed, SpatialBlock, ChannelBlock, WindowAttention,
  ChannelAttention, PreNorm, DepthWiseConv2d, Mlp, MySequential, window_partition /
  window_reverse), DaViT.forward_features_unpool (the only path Florence runs: `norms` and `head`
  are deleted in Florence2ForConditionalGeneration.__init__, so the checkpoint has neither),
  LearnedAbsolutePositionEmbedding2D, PositionalEmbeddingCosine1D,
  Florence2ForConditionalGeneration._build_image_projection_layers / _encode_image /
  _merge_input_ids_with_image_features / generate, Florence2LanguageForConditionalGeneration
  (a copy of BartForConditionalGeneration: `lm_head` + `final_logits_bias`),
  Florence2LearnedPositionalEmbedding (offset 2), Florence2ScaledWordEmbedding, Florence2Attention
  (q scaled by head_dim**-0.5 before the product).
- processing_florence2.py: Florence2Processor.__init__ (the added-token list, in this order, and
  the task tables), _construct_prompts, post_process_generation, BoxQuantizer /
  CoordinatesQuantizer (dequantize = (bin + 0.5) * size / 1000, float32 tensors),
  Florence2PostProcesser (parse_ocr_from_text_and_spans, parse_phrase_grounding_from_text_and_spans
  with its black list, parse_description_with_bboxes_from_text_and_spans,
  parse_description_with_polygons_from_text_and_spans).
transformers native (florence-community/Florence-2-*):
- models/florence2/modeling_florence2.py (+ modular_florence2.py): Florence2VisionBackbone,
  Florence2VisionConvEmbed, Florence2VisionSpatialBlock / ChannelBlock / WindowAttention /
  ChannelAttention, Florence2MultiModalProjector, Florence2Model (LlavaModel: the encoder input is
  input_ids with `<image>` placeholders whose embeddings are replaced by the image features:
  masked_scatter), Florence2ForConditionalGeneration (LlavaForConditionalGeneration: `lm_head`
  without bias, tied to `model.language_model.shared`; no final_logits_bias), Florence2Processor
  (`<image>` * image_seq_length + bos + prompt + eos, tokenized without special tokens) and
  Florence2PostProcessor.
- models/florence2/convert_florence2_original_pytorch_to_hf.py: the name mapping remote -> native
  (remote `image_projection` is (in, out) and is transposed into a Linear weight (out, in);
  `language_model.model.X` -> `model.language_model.X`, `language_model.lm_head.weight` ->
  `lm_head.weight`; final_logits_bias is dropped; an `<image>` token is added after the 51289
  tokens and the embeddings are padded to a multiple of 64 (51328 rows), the new rows drawn near
  the mean embedding).
- models/bart/modeling_bart.py: post-LN layers (x = LN(x + attn(x)); x = LN(x + cross(x));
  x = LN(x + fc2(act(fc1(x))))), `layernorm_embedding` after token + position embeddings, no final
  encoder/decoder LayerNorm, learned positions with offset 2, LayerNorm eps 1e-5, "gelu" = erf GELU.

Semantics reproduced (both layouts compute the same function up to the differences listed below)
- DaViT: stage i = ConvEmbed (stage 0: conv 7x7 stride 4 pad 3 then LayerNorm on channels; later
  stages: LayerNorm then conv 3x3 stride 2 pad 1), then depths[i] blocks, each a spatial block
  (x += dwconv3x3(x); x += proj(window_attn(LN x)); x += dwconv3x3(x); x += fc2(gelu(fc1(LN x))))
  then a channel block (same with channel attention). Window attention: the (H, W) grid is
  zero-padded at the right/bottom to a multiple of window_size *after* the LayerNorm and the
  padded tokens take part in the attention unmasked (their q/k/v are the qkv bias); heads of
  head_dim = C / num_heads, scale head_dim**-0.5. Channel attention: per group of C / groups
  channels, A = softmax((q * N**-0.5)^T k) over channels (N = number of tokens of the stage),
  out = (A v^T)^T. Tokens are row-major over (H, W).
- Projector: x (H*W, C) + 2-D learned positions (for grid cell (r, c): [column_embeddings[c],
  row_embeddings[r]], the column half first, each half C/2); + the cosine temporal row 0
  (sin(0), cos(0), ... = 0, 1, 0, 1, ...); then [mean over the H*W tokens, the H*W tokens]
  (image_feature_source [spatial_avg_pool, temporal_avg_pool]); x @ image_projection (no bias);
  LayerNorm. Remote asserts a square grid.
- Language model: encoder input = [image tokens; embed(<s> prompt </s>) * embed_scale] with
  positions 0.. over the whole sequence (+2 offset); decoder starts at decoder_start_token_id (2);
  logits = h @ shared^T (+ final_logits_bias in the remote layout).
- generate(): the remote Florence2ForConditionalGeneration.generate calls
  language_model.generate(inputs_embeds=...), so the generation settings are the language
  model's own GenerationConfig, built from text_config (GenerationConfig.from_model_config):
  the folder's generation_config.json is loaded into the top-level model and not read by the
  language model. The hub text_config holds num_beams 3, no_repeat_ngram_size 3,
  early_stopping true, forced_bos_token_id 0, forced_eos_token_id 2, decoder_start_token_id 2
  (length_penalty 1.0 and max_length 20 are the library defaults); the model card passes
  max_new_tokens=1024, num_beams=3, do_sample=False. Processors in HF's order: no-repeat-ngram,
  (min length), forced BOS (at cur_len == 1 every score but bos is -inf and bos gets 0), forced
  EOS (at cur_len == max_length - 1 likewise for eos). So the generated sequence is
  [2, 0, ..., 2]: decoded with skip_special_tokens=False it reads "</s><s>...</s>".
  Native: the top-level model generates; its generation_config.json is written here with the
  same values.

Remote vs native differences (each reproduced; `flavor` selects it)
- vocabulary: remote 51289 = 50265 BART tokens + 1024 processor-added tokens, ids given at load
  time in the processor's order; native adds `<image>` (51289) and pads the embedding to 51328:
  log_softmax runs over the padded rows too, so beam scores differ slightly between layouts.
- final_logits_bias: remote only (zeros in the real checkpoints; the tiny remote fixture makes it
  nonzero so that a port that drops it is caught).
- _construct_prompts: native strips the `{input}` text, remote does not.
- post-processing: remote coordinates are float32 values ((bin + 0.5) * size / 1000); native
  truncates them to int (`.int()`). Remote OCR removes only "<s>" (so the first label begins with
  "</s>", as the model card's outputs show) and keeps the label as matched; native removes
  "<s>", "</s>", "<pad>" and strips the label. Remote pure_text removes <s> and </s>; native also
  strips. Remote phrase grounding filters a fixed black list of phrases; native reads the list
  from processor_config.json's post_processor_config (banned_grounding_tokens). Remote replaces
  "<ground>" then overwrites that result with the "<obj>" replacement of the original text (only
  "<obj>" is removed); native removes both.
- native temporal embedding: the same row 0 (its `position_features[:, :1, :]` has length 1). An
  earlier native revision indexed `position_features[:, :, 0]` (length = batch size), which gives
  image b of a batch row b; the released code and the remote code add row 0 to every image.

Not verifiable here (no hub access); what this reference assumes, and what a port should tolerate
- which alias of the tied embeddings a file stores: the remote .bin written here holds all four
  (one storage); the native safetensors only `model.language_model.shared.weight` (what
  save_pretrained keeps when `_tied_weights_keys` names the other three). A loader should accept
  any one of `shared` / `encoder.embed_tokens` / `decoder.embed_tokens` / `lm_head`.
- florence-community's generation_config.json: assumed to repeat the text_config generation keys.
- clean_up_tokenization_spaces: the hub tokenizer_config.json sets nothing; transformers before
  4.45 then cleaned up (" ." -> "." ...), later versions do not. Both decodings are recorded.
- scale_embedding true (no Florence-2 checkpoint sets it): the prompt embeddings would be scaled by
  sqrt(d_model) (the shared embedding is a scaled embedding), the image features not.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import generate as gen_mod
from . import safetensors_io
from .bert_files import clean_up_tokenization
from .config import GenerationConfig, ImageProcessorConfig, read_json
from .modeling import DecoderOutput

# --------------------------------------------------------------------------------------------
# processor tables (ref: processing_florence2.py Florence2Processor.__init__)

FLORENCE_ADDED_TOKENS = (["<od>", "</od>", "<ocr>", "</ocr>"] + [f"<loc_{i}>" for i in range(1000)] + [
    "<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>",
    "<seg>", "</seg>", "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>",
    "</region_to_desciption>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>"])
assert len(FLORENCE_ADDED_TOKENS) == 1024

TASK_POST_PROCESSING = {
    "<OCR>": "pure_text",
    "<OCR_WITH_REGION>": "ocr",
    "<CAPTION>": "pure_text",
    "<DETAILED_CAPTION>": "pure_text",
    "<MORE_DETAILED_CAPTION>": "pure_text",
    "<OD>": "description_with_bboxes",
    "<DENSE_REGION_CAPTION>": "description_with_bboxes",
    "<CAPTION_TO_PHRASE_GROUNDING>": "phrase_grounding",
    "<REFERRING_EXPRESSION_SEGMENTATION>": "polygons",
    "<REGION_TO_SEGMENTATION>": "polygons",
    "<OPEN_VOCABULARY_DETECTION>": "description_with_bboxes_or_polygons",
    "<REGION_TO_CATEGORY>": "pure_text",
    "<REGION_TO_DESCRIPTION>": "pure_text",
    "<REGION_TO_OCR>": "pure_text",
    "<REGION_PROPOSAL>": "bboxes",
}
TASK_PROMPTS = {  # tasks without input
    "<OCR>": "What is the text in the image?",
    "<OCR_WITH_REGION>": "What is the text in the image, with regions?",
    "<CAPTION>": "What does the image describe?",
    "<DETAILED_CAPTION>": "Describe in detail what is shown in the image.",
    "<MORE_DETAILED_CAPTION>": "Describe with a paragraph what is shown in the image.",
    "<OD>": "Locate the objects with category name in the image.",
    "<DENSE_REGION_CAPTION>": "Locate the objects in the image, with their descriptions.",
    "<REGION_PROPOSAL>": "Locate the region proposals in the image.",
}
TASK_PROMPTS_WITH_INPUT = {
    "<CAPTION_TO_PHRASE_GROUNDING>": "Locate the phrases in the caption: {input}",
    "<REFERRING_EXPRESSION_SEGMENTATION>": "Locate {input} in the image with mask",
    "<REGION_TO_SEGMENTATION>": "What is the polygon mask of region {input}",
    "<OPEN_VOCABULARY_DETECTION>": "Locate {input} in the image.",
    "<REGION_TO_CATEGORY>": "What is the region {input}?",
    "<REGION_TO_DESCRIPTION>": "What does the region {input} describe?",
    "<REGION_TO_OCR>": "What text is in the region {input}?",
}

# ref: Florence2PostProcesser._create_black_list_of_phrase_grounding (a set: duplicates collapse)
PHRASE_GROUNDING_BLACKLIST = frozenset("""
it I me mine you your yours he him his she her hers they them their theirs one oneself we us our
ours its myself yourself himself herself itself ourselves yourselves themselves this that these
those who whom whose which what all another any anybody anyone anything each everybody everyone
everything few many nobody none several some somebody someone something
""".split()) | {"each other", "one another", "the image", "image", "images", "the", "a", "an",
                "a group", "other objects", "lots", "a set"}


def construct_prompt(text: str, flavor: str = "remote") -> str:
    """ref: Florence2Processor._construct_prompts. A task token without input must be the whole
    text; a task token with input is removed and the rest formatted into its template (native
    strips that rest, remote does not)."""
    for token, prompt in TASK_PROMPTS.items():
        if token in text:
            if text != token:
                raise ValueError(f"task token {token} should be the only token in the text")
            text = prompt
            break
    for token, prompt in TASK_PROMPTS_WITH_INPUT.items():
        if token in text:
            rest = text.replace(token, "")
            if flavor == "native":
                rest = rest.strip()
            text = prompt.format(input=rest)
            break
    return text


# --------------------------------------------------------------------------------------------
# config

@dataclass
class Florence2Config:
    layout: str                                   # "remote" or "native"
    # vision (DaViT + projector)
    embed_dim: List[int]
    depths: List[int]
    num_heads: List[int]
    num_groups: List[int]
    patch_size: List[int]
    patch_stride: List[int]
    patch_padding: List[int]
    patch_prenorm: List[bool]
    window_size: int
    mlp_ratio: float
    qkv_bias: bool
    projection_dim: int
    max_pos_embeddings: int                       # 2-D image position table rows (per axis)
    max_temporal_embeddings: int
    image_feature_source: List[str]
    # text (BART)
    vocab_size: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    max_position_embeddings: int
    activation_function: str
    scale_embedding: bool
    pad_token_id: int
    bos_token_id: int
    eos_token_id: int
    decoder_start_token_id: int
    image_token_id: Optional[int] = None          # native only
    text_config: Dict[str, Any] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict)

    @property
    def embed_scale(self) -> float:
        return math.sqrt(self.d_model) if self.scale_embedding else 1.0

    def generation_config(self) -> GenerationConfig:
        """The language model's GenerationConfig.from_model_config(text_config) (remote; see the
        module docstring), which the native generation_config.json written here repeats."""
        tc = self.text_config
        g = GenerationConfig()
        for f in dataclasses.fields(GenerationConfig):
            if f.name in tc and tc[f.name] is not None:
                setattr(g, f.name, tc[f.name])
        return g

    def forced_ids(self) -> Tuple[Optional[int], Optional[int]]:
        tc = self.text_config
        return tc.get("forced_bos_token_id"), tc.get("forced_eos_token_id")


def _need(d: Dict[str, Any], key: str, where: str):
    if key not in d:
        raise ValueError(f"{where}: missing key '{key}'")
    return d[key]


def parse_config(d: Dict[str, Any], where: str = "config.json") -> Florence2Config:
    if d.get("model_type") != "florence2":
        raise ValueError(f"{where}: model_type {d.get('model_type')!r}, expected 'florence2'")
    vc = _need(d, "vision_config", where)
    tc = _need(d, "text_config", where)
    if "dim_embed" in vc:  # remote-code names
        layout = "remote"
        embed_dim = vc["dim_embed"]
        max_pos = vc.get("image_pos_embed", {}).get("max_pos_embeddings", 50)
        max_temporal = vc.get("visual_temporal_embedding", {}).get("max_temporal_embeddings", 100)
        sources = vc.get("image_feature_source", ["spatial_avg_pool", "temporal_avg_pool"])
    elif "embed_dim" in vc:
        layout = "native"
        embed_dim = vc["embed_dim"]
        max_pos = vc.get("max_position_embeddings", 50)
        max_temporal = vc.get("max_temporal_embeddings", 100)
        sources = ["spatial_avg_pool", "temporal_avg_pool"]
    else:
        raise ValueError(f"{where}: vision_config has neither 'dim_embed' (remote) nor 'embed_dim' (native)")
    if sources != ["spatial_avg_pool", "temporal_avg_pool"]:
        raise ValueError(f"{where}: image_feature_source {sources} is not supported")
    return Florence2Config(
        layout=layout, embed_dim=list(embed_dim), depths=list(_need(vc, "depths", where)),
        num_heads=list(_need(vc, "num_heads", where)), num_groups=list(_need(vc, "num_groups", where)),
        patch_size=list(vc.get("patch_size", [7, 3, 3, 3])), patch_stride=list(vc.get("patch_stride", [4, 2, 2, 2])),
        patch_padding=list(vc.get("patch_padding", [3, 1, 1, 1])),
        patch_prenorm=list(vc.get("patch_prenorm", [False, True, True, True])),
        window_size=int(vc.get("window_size", 12)), mlp_ratio=float(vc.get("mlp_ratio", 4.0)),
        qkv_bias=bool(vc.get("qkv_bias", True)), projection_dim=int(_need(vc, "projection_dim", where)),
        max_pos_embeddings=int(max_pos), max_temporal_embeddings=int(max_temporal), image_feature_source=sources,
        vocab_size=int(_need(tc, "vocab_size", where)), d_model=int(_need(tc, "d_model", where)),
        encoder_layers=int(_need(tc, "encoder_layers", where)), decoder_layers=int(_need(tc, "decoder_layers", where)),
        encoder_attention_heads=int(_need(tc, "encoder_attention_heads", where)),
        decoder_attention_heads=int(_need(tc, "decoder_attention_heads", where)),
        encoder_ffn_dim=int(_need(tc, "encoder_ffn_dim", where)), decoder_ffn_dim=int(_need(tc, "decoder_ffn_dim", where)),
        max_position_embeddings=int(tc.get("max_position_embeddings", 1024)),
        activation_function=tc.get("activation_function", "gelu"), scale_embedding=bool(tc.get("scale_embedding", False)),
        pad_token_id=int(tc.get("pad_token_id", 1)), bos_token_id=int(tc.get("bos_token_id", 0)),
        eos_token_id=int(tc.get("eos_token_id", 2)), decoder_start_token_id=int(tc.get("decoder_start_token_id", 2)),
        image_token_id=d.get("image_token_id"), text_config=dict(tc), raw=dict(d))


# --------------------------------------------------------------------------------------------
# DaViT (internal module names = the native checkpoint's, without the "model." prefix)

def _gelu(x):
    return F.gelu(x)  # exact erf GELU (nn.GELU() / ACT2FN["gelu"])


class ConvEmbed(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, pad: int, prenorm: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=pad)
        self.norm = nn.LayerNorm(cin if prenorm else cout)
        self.prenorm = prenorm

    def forward(self, x):  # (B, C, H, W) -> (B, C', H', W')
        if self.prenorm:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.conv(x)
        if not self.prenorm:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x


class FFN(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(_gelu(self.fc1(x)))


class WindowAttention(nn.Module):
    def __init__(self, d: int, heads: int, window: int, qkv_bias: bool):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d, bias=qkv_bias)
        self.proj = nn.Linear(d, d)
        self.heads, self.window = heads, window

    def forward(self, x):  # (B, H, W, C) -> (B, H*W, C)
        b, h, w, c = x.shape
        ws = self.window
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))  # zeros right / bottom, never masked
        hp, wp = h + pad_b, w + pad_r
        win = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        n = win.size(0)
        hd = c // self.heads
        q, k, v = self.qkv(win).reshape(n, ws * ws, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        attn = F.softmax((q * hd ** -0.5) @ k.transpose(-2, -1), dim=-1)
        out = self.proj((attn @ v).transpose(1, 2).reshape(n, ws * ws, c))
        out = out.view(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        return out[:, :h, :w, :].reshape(b, h * w, c)


class ChannelAttention(nn.Module):
    def __init__(self, d: int, groups: int, qkv_bias: bool):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d, bias=qkv_bias)
        self.proj = nn.Linear(d, d)
        self.groups = groups

    def forward(self, x):  # (B, N, C)
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.groups, c // self.groups).permute(2, 0, 3, 1, 4)
        q = q * float(n) ** -0.5
        attn = F.softmax(q.transpose(-1, -2) @ k, dim=-1)          # (B, G, Cg, Cg)
        out = (attn @ v.transpose(-1, -2)).transpose(-1, -2)         # (B, G, N, Cg)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _MixBlock(nn.Module):
    """The shared shape of the spatial and channel blocks: dwconv residual, attention residual,
    dwconv residual, FFN residual."""

    def __init__(self, d: int, attn: nn.Module, attn_name: str, mlp_ratio: float):
        super().__init__()
        self.conv1 = nn.Conv2d(d, d, 3, padding=1, groups=d)
        self.norm1 = nn.LayerNorm(d)
        setattr(self, attn_name, attn)
        self.attn_name = attn_name
        self.conv2 = nn.Conv2d(d, d, 3, padding=1, groups=d)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = FFN(d, int(d * mlp_ratio))

    def forward(self, x):  # (B, C, H, W)
        b, c, h, w = x.shape
        x = x + self.conv1(x)
        t = x.flatten(2).transpose(1, 2)
        y = self.norm1(t)
        if self.attn_name == "window_attn":
            y = y.view(b, h, w, c)
        t = t + getattr(self, self.attn_name)(y)
        x = t.transpose(1, 2).reshape(b, c, h, w)
        x = x + self.conv2(x)
        t = x.flatten(2).transpose(1, 2)
        t = t + self.ffn(self.norm2(t))
        return t.transpose(1, 2).reshape(b, c, h, w)


class DaViTBlock(nn.Module):
    def __init__(self, cfg: Florence2Config, i: int):
        super().__init__()
        d = cfg.embed_dim[i]
        self.spatial_block = _MixBlock(d, WindowAttention(d, cfg.num_heads[i], cfg.window_size, cfg.qkv_bias),
                                       "window_attn", cfg.mlp_ratio)
        self.channel_block = _MixBlock(d, ChannelAttention(d, cfg.num_groups[i], cfg.qkv_bias),
                                       "channel_attn", cfg.mlp_ratio)

    def forward(self, x):
        return self.channel_block(self.spatial_block(x))


class DaViT(nn.Module):
    def __init__(self, cfg: Florence2Config):
        super().__init__()
        n = len(cfg.embed_dim)
        if not (n == len(cfg.depths) == len(cfg.num_heads) == len(cfg.num_groups)):
            raise ValueError("vision_config: dim_embed/depths/num_heads/num_groups lengths differ")
        self.convs = nn.ModuleList([
            ConvEmbed(3 if i == 0 else cfg.embed_dim[i - 1], cfg.embed_dim[i], cfg.patch_size[i], cfg.patch_stride[i],
                      cfg.patch_padding[i], cfg.patch_prenorm[i]) for i in range(n)])
        self.blocks = nn.ModuleList([nn.ModuleList([DaViTBlock(cfg, i) for _ in range(cfg.depths[i])])
                                     for i in range(n)])

    def forward(self, x, stages: Optional[list] = None):
        """(B, 3, H, W) -> (B, C, h, w) of the last stage; `stages` collects each stage's output."""
        for conv, blocks in zip(self.convs, self.blocks):
            x = conv(x)
            for blk in blocks:
                x = blk(x)
            if stages is not None:
                stages.append(x)
        return x


class PositionEmbedding2D(nn.Module):
    def __init__(self, d: int, num_pos: int):
        super().__init__()
        self.row_embeddings = nn.Embedding(num_pos, d // 2)
        self.column_embeddings = nn.Embedding(num_pos, d - d // 2)

    def forward(self, h: int, w: int):  # -> (h, w, d): [column(c), row(r)]
        col = self.column_embeddings(torch.arange(w))
        row = self.row_embeddings(torch.arange(h))
        return torch.cat([col.unsqueeze(0).expand(h, -1, -1), row.unsqueeze(1).expand(-1, w, -1)], dim=-1)


def cosine_table(max_len: int, d: int) -> torch.Tensor:
    """ref: remote PositionalEmbeddingCosine1D (native computes the same frequencies)."""
    denominator = torch.exp(-math.log(10000) * torch.arange(0, d, 2) / d)
    freq = torch.arange(0, max_len).reshape(max_len, 1) * denominator
    t = torch.zeros((max_len, d))
    t[:, 0::2] = torch.sin(freq)
    t[:, 1::2] = torch.cos(freq)
    return t


class TemporalEmbed(nn.Module):
    def __init__(self, max_len: int, d: int):
        super().__init__()
        self.register_buffer("pos_idx_to_embed", cosine_table(max_len, d))


class Projector(nn.Module):
    def __init__(self, cfg: Florence2Config):
        super().__init__()
        d = cfg.embed_dim[-1]
        self.image_projection = nn.Linear(d, cfg.projection_dim, bias=False)  # native (out, in)
        self.image_proj_norm = nn.LayerNorm(cfg.projection_dim)
        self.image_position_embed = PositionEmbedding2D(d, cfg.max_pos_embeddings)
        self.visual_temporal_embed = TemporalEmbed(cfg.max_temporal_embeddings, d)

    def forward(self, feat, parts: Optional[dict] = None):  # (B, C, h, w) -> (B, 1 + h*w, P)
        b, c, h, w = feat.shape
        x = feat.permute(0, 2, 3, 1) + self.image_position_embed(h, w)
        x = x.reshape(b, h * w, c) + self.visual_temporal_embed.pos_idx_to_embed[0]
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
        if parts is not None:
            parts["pooled_input"] = x
        x = self.image_projection(x)
        if parts is not None:
            parts["projected"] = x
        return self.image_proj_norm(x)


# --------------------------------------------------------------------------------------------
# BART

class BartAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.heads, self.hd = heads, d // heads
        if self.hd * heads != d:
            raise ValueError(f"d_model {d} is not a multiple of the head count {heads}")

    def _split(self, x):  # (B, T, D) -> (B, H, T, hd)
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.hd).transpose(1, 2)

    def kv(self, x):
        return self._split(self.k_proj(x)), self._split(self.v_proj(x))

    def forward(self, x, kv=None, past=None, causal=False):
        """kv: given (cross-attention K/V); else self-attention with `past` prepended.
        Returns (out, probs, present)."""
        q = self._split(self.q_proj(x) * self.hd ** -0.5)
        if kv is not None:
            k, v = kv
            present = None
        else:
            k, v = self.kv(x)
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            present = (k, v)
        scores = q @ k.transpose(-1, -2)
        if causal:
            tq, tk = q.size(2), k.size(2)
            allowed = torch.ones(tk, tk, dtype=torch.bool).tril()[tk - tq:]
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        probs = F.softmax(scores, dim=-1)
        out = (probs @ v).transpose(1, 2).reshape(x.size(0), x.size(1), -1)
        return self.out_proj(out), probs, present


class BartEncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.self_attn = BartAttention(d, heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x):
        x = self.self_attn_layer_norm(x + self.self_attn(x)[0])
        return self.final_layer_norm(x + self.fc2(_gelu(self.fc1(x))))


class BartDecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.self_attn = BartAttention(d, heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = BartAttention(d, heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x, cross_kv, past=None):
        a, sp, present = self.self_attn(x, past=past, causal=True)
        x = self.self_attn_layer_norm(x + a)
        c, cp, _ = self.encoder_attn(x, kv=cross_kv)
        x = self.encoder_attn_layer_norm(x + c)
        x = self.final_layer_norm(x + self.fc2(_gelu(self.fc1(x))))
        return x, present, sp, cp


class LearnedPositions(nn.Embedding):
    OFFSET = 2  # ref: BartLearnedPositionalEmbedding

    def __init__(self, max_pos: int, d: int):
        super().__init__(max_pos + self.OFFSET, d)

    def positions(self, start: int, length: int):
        if start + length > self.num_embeddings - self.OFFSET:
            raise ValueError(f"position {start + length - 1} exceeds max_position_embeddings "
                             f"{self.num_embeddings - self.OFFSET}")
        return super().forward(torch.arange(start, start + length) + self.OFFSET)


class BartStack(nn.Module):
    def __init__(self, cfg: Florence2Config, decoder: bool):
        super().__init__()
        d = cfg.d_model
        self.embed_positions = LearnedPositions(cfg.max_position_embeddings, d)
        if decoder:
            self.layers = nn.ModuleList([BartDecoderLayer(d, cfg.decoder_attention_heads, cfg.decoder_ffn_dim)
                                         for _ in range(cfg.decoder_layers)])
        else:
            self.layers = nn.ModuleList([BartEncoderLayer(d, cfg.encoder_attention_heads, cfg.encoder_ffn_dim)
                                         for _ in range(cfg.encoder_layers)])
        self.layernorm_embedding = nn.LayerNorm(d)


class LanguageModel(nn.Module):
    """BartModel: shared embeddings, encoder, decoder."""

    def __init__(self, cfg: Florence2Config):
        super().__init__()
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = BartStack(cfg, decoder=False)
        self.decoder = BartStack(cfg, decoder=True)


class _Decoder:
    """The decoder + LM head seen through the interface generate.Stepper expects."""

    def __init__(self, model: "Florence2"):
        self.m = model

    def cross_kv(self, enc):
        return [layer.encoder_attn.kv(enc) for layer in self.m.language_model.decoder.layers]

    def __call__(self, ids, past=None, encoder_hidden_states=None, cross=None, output_attentions=False):
        m = self.m
        dec = m.language_model.decoder
        t0 = past[0][0].size(2) if past else 0
        if cross is None:  # recomputed from the encoder states at every call, as HF does
            cross = [tuple(t.expand(ids.size(0), -1, -1, -1) for t in kv) for kv in self.cross_kv(encoder_hidden_states)]
        x = m.language_model.shared(ids) * m.config.embed_scale + dec.embed_positions.positions(t0, ids.size(1))
        x = dec.layernorm_embedding(x)
        presents, sps, cps = [], [], []
        for i, layer in enumerate(dec.layers):
            x, present, sp, cp = layer(x, cross[i], past[i] if past else None)
            presents.append(present)
            if output_attentions:
                sps.append(sp)
                cps.append(cp)
        logits = m.lm_logits(x)
        return DecoderOutput(logits, presents, cps, sps)


class Florence2(nn.Module):
    def __init__(self, cfg: Florence2Config):
        super().__init__()
        self.config = cfg
        self.vision_tower = DaViT(cfg)
        self.multi_modal_projector = Projector(cfg)
        self.language_model = LanguageModel(cfg)
        self.register_buffer("final_logits_bias", torch.zeros(1, cfg.vocab_size))
        self.decoder = _Decoder(self)

    def lm_logits(self, h):
        return h @ self.language_model.shared.weight.t() + self.final_logits_bias

    def image_features(self, pixel_values, record: Optional[dict] = None):
        """(B, 3, H, W) -> (B, 1 + h*w, projection_dim). `record` gets the intermediate states."""
        stages = [] if record is not None else None
        feat = self.vision_tower(pixel_values, stages)
        parts = {} if record is not None else None
        out = self.multi_modal_projector(feat, parts)
        if record is not None:
            record["stages"] = stages
            record["vision_out"] = feat
            record.update(parts)
            record["image_features"] = out
        return out

    def encode(self, image_features, prompt_ids: Sequence[int]):
        """BART encoder over [image features; embed(prompt_ids)] -> (1, N + P, D)."""
        lm = self.language_model
        tok = lm.shared(torch.tensor([list(prompt_ids)])) * self.config.embed_scale
        x = torch.cat([image_features, tok], dim=1)
        x = x + lm.encoder.embed_positions.positions(0, x.size(1))
        x = lm.encoder.layernorm_embedding(x)
        for layer in lm.encoder.layers:
            x = layer(x)
        return x

    def decode_full(self, enc, ids: Sequence[int]):
        """Teacher-forced logits (1, T, V) for decoder input `ids`, no cache."""
        return self.decoder(torch.tensor([list(ids)]), encoder_hidden_states=enc).logits


# --------------------------------------------------------------------------------------------
# checkpoint names

def _remote_block_name(rest: str) -> str:
    """Internal (= native) block-relative name -> remote name, e.g. spatial_block.norm1.weight ->
    spatial_block.window_attn.norm.weight (ref: convert_florence2_original_pytorch_to_hf.py)."""
    blk, sub = rest.split(".", 1)
    attn = "window_attn" if blk == "spatial_block" else "channel_attn"
    table = [("conv1.", "conv1.fn.dw."), ("conv2.", "conv2.fn.dw."), ("norm1.", f"{attn}.norm."),
             (f"{attn}.", f"{attn}.fn."), ("norm2.", "ffn.norm."), ("ffn.", "ffn.fn.net.")]
    for a, b in table:
        if sub.startswith(a):
            return f"{blk}.{b}{sub[len(a):]}"
    raise KeyError(rest)


def remote_name(name: str) -> str:
    """Internal module name -> hub remote-code checkpoint name."""
    m = re.match(r"vision_tower\.convs\.(\d+)\.conv\.(.*)", name)
    if m:
        return f"vision_tower.convs.{m.group(1)}.proj.{m.group(2)}"
    if name.startswith("vision_tower.convs."):
        return name
    m = re.match(r"(vision_tower\.blocks\.\d+\.\d+)\.(.*)", name)
    if m:
        return f"{m.group(1)}.{_remote_block_name(m.group(2))}"
    if name == "multi_modal_projector.image_projection.weight":
        return "image_projection"  # stored transposed: (in, out)
    if name.startswith("multi_modal_projector.image_position_embed."):
        return "image_pos_embed." + name[len("multi_modal_projector.image_position_embed."):]
    if name.startswith("multi_modal_projector."):
        return name[len("multi_modal_projector."):]
    if name.startswith("language_model."):
        return "language_model.model." + name[len("language_model."):]
    if name == "final_logits_bias":
        return "language_model.final_logits_bias"
    raise KeyError(name)


def native_name(name: str) -> str:
    return "model." + name


REMOTE_TIED = ("language_model.model.encoder.embed_tokens.weight", "language_model.model.decoder.embed_tokens.weight",
               "language_model.lm_head.weight")
NATIVE_TIED = ("model.language_model.encoder.embed_tokens.weight", "model.language_model.decoder.embed_tokens.weight",
               "lm_head.weight")


def to_checkpoint(model: Florence2, layout: str) -> Dict[str, np.ndarray]:
    """The tensors of a checkpoint of `layout` (numpy float32), tied copies excluded; the remote
    writer adds them (see make_florence2_golden.py)."""
    out = {}
    for k, v in model.state_dict().items():
        a = v.detach().numpy().copy()
        if layout == "remote":
            if k == "multi_modal_projector.image_projection.weight":
                a = a.T.copy()
            out[remote_name(k)] = a
        else:
            if k == "final_logits_bias":
                continue  # native has none
            out[native_name(k)] = a
    return out


def load_state(model: Florence2, tensors: Dict[str, np.ndarray], layout: str, where: str) -> None:
    """Loads checkpoint tensors; every expected tensor must be present with its shape; the tied
    copies may be absent or equal to the shared embeddings; anything else is an error."""
    state = model.state_dict()
    seen = set()
    for k, v in state.items():
        if layout == "remote":
            name = remote_name(k)
        else:
            if k == "final_logits_bias":
                continue
            name = native_name(k)
        if name not in tensors:
            if k.endswith("pos_idx_to_embed"):
                continue  # a buffer: recomputed when absent
            raise ValueError(f"{where}: missing tensor '{name}'")
        a = np.asarray(tensors[name], dtype=np.float32)
        if k == "multi_modal_projector.image_projection.weight" and layout == "remote":
            a = a.T
        if tuple(a.shape) != tuple(v.shape):
            raise ValueError(f"{where}: tensor '{name}': expected {list(v.shape)}, got {list(a.shape)}")
        v.copy_(torch.from_numpy(np.ascontiguousarray(a)))
        seen.add(name)
    shared = state["language_model.shared.weight"].numpy()
    for name in (REMOTE_TIED if layout == "remote" else NATIVE_TIED):
        if name in tensors:
            if not np.array_equal(np.asarray(tensors[name], dtype=np.float32), shared):
                raise ValueError(f"{where}: tensor '{name}' differs from the shared embeddings it is tied to")
            seen.add(name)
    extra = sorted(set(tensors) - seen)
    if extra:
        raise ValueError(f"{where}: unexpected tensors {extra[:5]}")


# --------------------------------------------------------------------------------------------
# tokenizer

def _tok_ref():
    import sys
    tools = str(Path(__file__).resolve().parent.parent)
    if tools not in sys.path:
        sys.path.insert(0, tools)
    import tokenizer_reference  # noqa: E402
    return tokenizer_reference


class FlorenceTokenizer:
    """BartTokenizerFast as Florence2Processor uses it: tokenizer.json (byte-level BPE,
    RobertaProcessing) plus, in the remote layout, the 1024 processor-added special tokens with
    ids from the tokenizer's length on (ref: Florence2Processor.__init__ add_special_tokens)."""

    def __init__(self, folder, layout: str):
        tr = _tok_ref()
        tj = read_json(Path(folder) / "tokenizer.json")
        model = tj["model"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        added = [dict(a) for a in tj["added_tokens"]]
        vocab = dict(model["vocab"])
        size = max(list(vocab.values()) + [a["id"] for a in added]) + 1
        if layout == "remote":
            have = {a["content"] for a in added} | set(vocab)
            for tok in FLORENCE_ADDED_TOKENS:
                if tok not in have:
                    added.append({"id": size, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
                                  "normalized": False, "special": True})
                    size += 1
        post = tj.get("post_processor") or {}
        template = None
        if post.get("type") == "RobertaProcessing":
            template = [post["cls"][1], "$A", post["sep"][1]]
        pre = tj.get("pre_tokenizer") or {}
        self.ref = tr.RefTokenizer(model="bpe", vocab=vocab, merges=merges, added=added,
                                   pre=("bytelevel", bool(pre.get("add_prefix_space", False))), template=template)
        self.size = size
        cfg_path = Path(folder) / "tokenizer_config.json"
        cfg = read_json(cfg_path) if cfg_path.exists() else {}
        self.clean_up = cfg.get("clean_up_tokenization_spaces")
        self.token_to_id = {t: i for i, t in self.ref.id_to_token.items()}

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        return self.ref.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids, skip_special_tokens: bool = False, clean_up: bool = False) -> str:
        text = self.ref.decode(list(ids), skip_special_tokens)
        return clean_up_tokenization(text) if clean_up else text

    def tokens(self, ids) -> List[str]:
        return [self.ref.id_to_token[i] for i in ids]


def prompt_ids(tok: FlorenceTokenizer, task_text: str, flavor: str) -> List[int]:
    """The encoder's text ids: remote tokenizer(prompt) = <s> prompt </s>; native tokenizes
    "<image>"*N + "<s>" + prompt + "</s>" without special tokens and the image placeholders are
    replaced by the image features: the same ids after the placeholders."""
    text = construct_prompt(task_text, flavor)
    if flavor == "native":
        ids = tok.encode("<s>" + text + "</s>", add_special_tokens=False)
    else:
        ids = tok.encode(text, add_special_tokens=True)
    return ids


# --------------------------------------------------------------------------------------------
# image processor (CLIPImageProcessor as configured by the hub preprocessor_config.json)

def image_processor(d: Dict[str, Any]) -> ImageProcessorConfig:
    if d.get("do_center_crop"):
        raise ValueError("preprocessor_config.json: do_center_crop true is not what Florence-2 uses")
    size = d.get("size", {"height": 768, "width": 768})
    if not (isinstance(size, dict) and "height" in size and "width" in size):
        raise ValueError(f"preprocessor_config.json: size {size!r}: expected {{height, width}}")
    return ImageProcessorConfig.from_dict({
        "do_resize": d.get("do_resize", True), "size": size, "resample": d.get("resample", 3),
        "do_rescale": d.get("do_rescale", True), "rescale_factor": d.get("rescale_factor", 1 / 255),
        "do_normalize": d.get("do_normalize", True), "image_mean": d.get("image_mean", [0.485, 0.456, 0.406]),
        "image_std": d.get("image_std", [0.229, 0.224, 0.225])})


# --------------------------------------------------------------------------------------------
# generation

def resolved(cfg: Florence2Config, **overrides) -> gen_mod.Resolved:
    """The effective generate() settings (see the module docstring), explicit arguments winning."""
    g = cfg.generation_config()
    if g.decoder_start_token_id is None:
        g.decoder_start_token_id = cfg.decoder_start_token_id
    if g.eos_token_id is None:
        g.eos_token_id = cfg.eos_token_id
    if g.pad_token_id is None:
        g.pad_token_id = cfg.pad_token_id
    bos, eos = cfg.forced_ids()
    forced = {"forced_bos_token_id": bos, "forced_eos_token_id": eos}
    for k in list(forced):
        if k in overrides:
            forced[k] = overrides.pop(k)
    r = gen_mod.resolve(g, None, input_len=1, **overrides)
    r.forced_bos_token_id = forced["forced_bos_token_id"]
    r.forced_eos_token_id = forced["forced_eos_token_id"]
    return r


@dataclass
class Run:
    image_features: torch.Tensor   # (1, N, P)
    prompt_ids: List[int]
    encoder_out: torch.Tensor      # (1, N + len(prompt_ids), D)
    record: Dict[str, Any]


def prepare(model: Florence2, pixel_values: torch.Tensor, ids: Sequence[int]) -> Run:
    rec: Dict[str, Any] = {}
    with torch.no_grad():
        feats = model.image_features(pixel_values, rec)
        enc = model.encode(feats, ids)
    return Run(feats, list(ids), enc, rec)


def generate(model: Florence2, run: Run, *, logits_hook=None, use_cache: bool = True,
             recompute_cross_kv: bool = False, output_attentions: bool = False, **overrides) -> gen_mod.Result:
    r = resolved(model.config, **overrides)
    with torch.no_grad():
        if r.num_beams == 1:
            res = gen_mod._greedy(model, run.encoder_out, r, output_attentions, recompute_cross_kv, use_cache,
                                  logits_hook, [r.decoder_start_token_id])
        else:
            res = gen_mod._beam(model, run.encoder_out, r, output_attentions, recompute_cross_kv, use_cache,
                                logits_hook, [r.decoder_start_token_id])
    res.resolved = r
    res.prompt_len = 1
    return res


# --------------------------------------------------------------------------------------------
# post-processing (ref: processing_florence2.py post_process_generation + Florence2PostProcesser;
# native: Florence2Processor.post_process_generation + Florence2PostProcessor)

def _dequantize(bins, size: Tuple[int, int], flavor: str) -> list:
    """bins (N, 4) boxes or (N, 2) points -> pixel coordinates: (bin + 0.5) * size / 1000 in
    float32 torch arithmetic, as both processors compute it; native then truncates to int."""
    t = torch.tensor(bins)
    w, h = size
    per_w, per_h = w / 1000, h / 1000
    if t.shape[-1] == 4:
        x0, y0, x1, y1 = t.split(1, dim=-1)
        out = torch.cat(((x0 + 0.5) * per_w, (y0 + 0.5) * per_h, (x1 + 0.5) * per_w, (y1 + 0.5) * per_h), dim=-1)
    else:
        x, y = t.split(1, dim=-1)
        out = torch.cat(((x + 0.5) * per_w, (y + 0.5) * per_h), dim=-1)
    if flavor == "native":
        out = out.int()
    return out.tolist()


def _strip_specials(text: str) -> str:
    return text.replace("<s>", "").replace("</s>", "").replace("<pad>", "")


def parse_ocr(text: str, size, flavor: str):
    if flavor == "native":
        text = _strip_specials(text)
    else:
        text = text.replace("<s>", "")
    pattern = r"(.+?)" + r"<loc_(\d+)>" * 8
    out = []
    for m in re.findall(pattern, text):
        content, bins = m[0], [int(v) for v in m[1:]]
        quad = np.array(_dequantize(np.array(bins).reshape(-1, 2).tolist(), size, flavor)).reshape(-1).tolist()
        out.append({"quad_box": quad, "text": content.strip() if flavor == "native" else content})
    return out


_PHRASE = r"^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_)"
_BOX = r"<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>"


def _remove_markers(phrase_text: str, flavor: str) -> str:
    if flavor == "native":
        return phrase_text.replace("<ground>", "", 1).replace("<obj>", "", 1)
    # remote: the second replace starts again from the original text
    return phrase_text.replace("<obj>", "", 1)


def parse_phrase_grounding(text: str, size, flavor: str, banned=None):
    banned = PHRASE_GROUNDING_BLACKLIST if banned is None else banned
    text = _strip_specials(text)
    out = []
    for phrase_text in re.findall(r"([^<]+(?:<loc_\d+>){4,})", text):
        stripped = _remove_markers(phrase_text, flavor)
        if stripped == "":
            continue
        m = re.search(_PHRASE, stripped)
        if m is None:
            continue
        boxes = list(re.finditer(_BOX, stripped if flavor == "native" else phrase_text))
        if not boxes:
            continue
        phrase = m.group().strip()
        if phrase in banned:
            continue
        bins = [[int(b.group(j)) for j in range(1, 5)] for b in boxes]
        out.append({"bbox": _dequantize(bins, size, flavor),
                    "cat_name": phrase.encode("ascii", errors="ignore").decode("ascii")})
    return out


def parse_description_with_bboxes(text: str, size, flavor: str, allow_empty_phrase: bool = False):
    text = _strip_specials(text)
    pattern = r"(?:(?:<loc_\d+>){4,})" if allow_empty_phrase else r"([^<]+(?:<loc_\d+>){4,})"
    out = []
    for phrase_text in re.findall(pattern, text):
        stripped = _remove_markers(phrase_text, flavor)
        if stripped == "" and not allow_empty_phrase:
            continue
        m = re.search(_PHRASE, stripped)
        if m is None:
            continue
        phrase = m.group().strip()
        boxes = list(re.finditer(_BOX, stripped if flavor == "native" else phrase_text))
        if not boxes:
            continue
        bins = [[int(b.group(j)) for j in range(1, 5)] for b in boxes]
        phrase = phrase.encode("ascii", errors="ignore").decode("ascii")
        for box in _dequantize(bins, size, flavor):
            out.append({"bbox": box, "cat_name": phrase})
    return out


def parse_description_with_polygons(text: str, size, flavor: str, allow_empty_phrase: bool = False,
                                    with_box_at_start: bool = False):
    sep, start, end = "<sep>", "<poly>", "</poly>"
    text = _strip_specials(text)
    alt = rf"<loc_\d+>|{re.escape(sep)}|{re.escape(start)}|{re.escape(end)}"
    pattern = rf"(?:(?:{alt}){{4,}})" if allow_empty_phrase else rf"([^<]+(?:{alt}){{4,}})"
    phrase_pattern = r"^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_|<poly>)"
    box_pattern = rf"((?:<loc_\d+>)+)(?:{re.escape(sep)}|$)"
    inst_pattern = rf"{re.escape(start)}(.*?){re.escape(end)}"
    # remote strips "^loc_\d+>" (no "<": a no-op on text that starts with a phrase), native "^<loc_\d+>"
    lead = r"^<loc_\d+>" if flavor == "native" else r"^loc_\d+>"
    out = []
    for phrase_text in re.findall(pattern, text):
        stripped = re.sub(lead, "", phrase_text, count=1)
        if stripped == "" and not allow_empty_phrase:
            continue
        m = re.search(phrase_pattern, stripped)
        if m is None:
            continue
        phrase = m.group().strip()
        if start in phrase_text and end in phrase_text:
            instances = [g.group(1) for g in re.finditer(inst_pattern, phrase_text)]
        else:
            instances = [phrase_text]
        for inst in instances:
            polys = list(re.finditer(box_pattern, inst))
            if not polys:
                continue
            bbox, polygons = [], []
            for p in polys:
                bins = [int(g.group(1)) for g in re.finditer(r"<loc_(\d+)>", p.group(1))]
                if with_box_at_start and not bbox:
                    if len(bins) > 4:
                        bbox, bins = bins[:4], bins[4:]
                    else:
                        bbox = [0, 0, 0, 0]
                if len(bins) % 2 == 1:
                    bins = bins[:-1]  # an odd count: the last value is dropped
                coords = _dequantize(np.array(bins).reshape(-1, 2).tolist(), size, flavor) if bins else []
                polygons.append(np.array(coords).reshape(-1).tolist() if coords else [])
            item = {"cat_name": phrase, "polygons": polygons}
            if bbox:
                item["bbox"] = _dequantize([bbox], size, flavor)[0]
            out.append(item)
    return out


def post_process_generation(text: str, task: str, image_size: Tuple[int, int], flavor: str = "remote",
                            banned=None) -> Dict[str, Any]:
    """image_size is (width, height), as both processors unpack it."""
    kind = TASK_POST_PROCESSING.get(task, "pure_text")
    if kind == "pure_text":
        ans = text.replace("<s>", "").replace("</s>", "")
        if flavor == "native":
            ans = ans.strip()
    elif kind in ("description_with_bboxes", "bboxes"):
        inst = parse_description_with_bboxes(text, image_size, flavor, allow_empty_phrase=kind == "bboxes")
        ans = {"bboxes": [i["bbox"] for i in inst], "labels": [str(i["cat_name"]) for i in inst]}
    elif kind == "ocr":
        inst = parse_ocr(text, image_size, flavor)
        ans = {"quad_boxes": [i["quad_box"] for i in inst], "labels": [str(i["text"]) for i in inst]}
    elif kind == "phrase_grounding":
        inst = parse_phrase_grounding(text, image_size, flavor, banned)
        boxes, labels = [], []
        for i in inst:
            for b in i["bbox"]:
                boxes.append(b)
                labels.append(i["cat_name"])
        ans = {"bboxes": boxes, "labels": labels}
    elif kind == "polygons":
        inst = parse_description_with_polygons(text, image_size, flavor, allow_empty_phrase=True)
        ans = {"polygons": [i["polygons"] for i in inst], "labels": [i["cat_name"] for i in inst]}
    elif kind == "description_with_bboxes_or_polygons":
        if "<poly>" in text:
            inst = parse_description_with_polygons(text, image_size, flavor)
        else:
            inst = parse_description_with_bboxes(text, image_size, flavor)
        ans = {"bboxes": [], "bboxes_labels": [], "polygons": [], "polygons_labels": []}
        for i in inst:
            if "polygons" in i:
                ans["polygons"].append(i["polygons"])
                ans["polygons_labels"].append(i["cat_name"])
            else:
                ans["bboxes"].append(i["bbox"])
                ans["bboxes_labels"].append(i["cat_name"])
    else:
        raise ValueError(f"unknown post-processing type {kind}")
    return {task: ans}


# --------------------------------------------------------------------------------------------
# folders

@dataclass
class Bundle:
    model: Florence2
    config: Florence2Config
    preprocessor: ImageProcessorConfig
    tokenizer: FlorenceTokenizer
    folder: Path


def load_pretrained(folder) -> Bundle:
    folder = Path(folder)
    cfg = parse_config(read_json(folder / "config.json"), str(folder / "config.json"))
    model = Florence2(cfg)
    if cfg.layout == "remote":
        path = folder / "pytorch_model.bin"
        sd = torch.load(path, map_location="cpu")
        tensors = {k: v.float().numpy() for k, v in sd.items()}
    else:
        path = folder / "model.safetensors"
        tensors, _, _ = safetensors_io.load(path)
    load_state(model, tensors, cfg.layout, str(path))
    model.eval()
    pre = image_processor(read_json(folder / "preprocessor_config.json"))
    tok = FlorenceTokenizer(folder, cfg.layout)
    if tok.size > cfg.vocab_size:
        raise ValueError(f"{folder}: the tokenizer has {tok.size} tokens, more than vocab_size {cfg.vocab_size}")
    return Bundle(model, cfg, pre, tok, folder)
