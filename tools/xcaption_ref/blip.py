"""PyTorch reference of Hugging Face's BlipForConditionalGeneration inference (eager attention,
float32), its BlipImageProcessor slow (PIL) path and its generate(), written from transformers'
models/blip/{modeling_blip.py, modeling_blip_text.py, configuration_blip.py,
image_processing_blip.py, processing_blip.py} without transformers installed.

`state_dict()` keys are the checkpoint names of a transformers BLIP folder
(`vision_model.encoder.layers.0.self_attn.qkv.weight`,
`text_decoder.bert.encoder.layer.0.crossattention.self.key.weight`, ...).

The math, as HF computes it:
- Vision (BlipVisionModel): Conv2d patch embedding (kernel = stride = patch), flattened row-major,
  `class_embedding` prepended, `position_embedding` added; pre-LN layers
  `x += projection(attn(layer_norm1 x)); x += fc2(act(fc1(layer_norm2 x)))` with a fused `qkv`
  Linear whose output is read as (3, heads, head_dim): rows q | k | v, heads contiguous; scores
  = (Q K^T) * head_dim**-0.5; `post_layernorm` on every token; eps 1e-5 by default.
- Text (BlipTextLMHeadModel, BERT post-LN): LayerNorm(word + position embeddings) (positions
  from the cached length); per layer x = LN(x + dense(selfattn(x))) with causal self-attention,
  x = LN(x + dense(crossattn(x, image))) with key/value Linear from the vision width,
  x = LN(x + dense(act(dense(x)))); scores = (Q K^T) / sqrt(head_dim); masked positions get
  -10000 added (HF's extended attention mask); the LM head = LN(act(dense(x))) then
  `decoder` (vocab x hidden) + `bias`; eps 1e-12 by default.
- generate(): the decoder input is [bos] (text_config.bos_token_id, "[DEC]") without a prompt;
  with one, the processor's ids "[CLS] prompt [SEP]" with [CLS] replaced by bos and the last id
  dropped. text_decoder.generate() runs with eos = text_config.sep_token_id and pad =
  pad_token_id, and its GenerationConfig comes from text_config (GenerationConfig
  .from_model_config of the decoder's own config; generation_config.json of the folder is not
  read by the decoder). Lengths count the prompt (decoder-only); an untouched max_length of 20
  means 20 new tokens, capped at max_position_embeddings. HF returns prompt + generated ids.

Which LM-head weight HF uses: BLIP's `_tied_weights_keys` names only the head bias, so a stored
`text_decoder.cls.predictions.decoder.weight` is used as stored. When the file has no such tensor
this reference ties it to the word embeddings (xcaption's rule; transformers would leave it
randomly initialised and warn).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import generate as gen_mod
from . import safetensors_io
from .config import GenerationConfig, ImageProcessorConfig, read_json
from .modeling import KV, DecoderOutput, activation
from . import wordpiece
from .bert_files import clean_up_tokenization

class BlipTokenizer:
    """The BERT tokenizer a BLIP folder ships, as BlipProcessor uses it: wordpiece.load(folder)
    (the `tokenizers` pipeline) plus transformers' clean_up_tokenization pass after decoding when
    tokenizer_config.json asks for it (BertTokenizer's default: true)."""

    def __init__(self, folder):
        self.tok = wordpiece.load(str(folder))
        config = Path(folder) / "tokenizer_config.json"
        cfg = json.loads(config.read_text(encoding="utf-8")) if config.exists() else {}
        self.clean_up = bool(cfg.get("clean_up_tokenization_spaces", True))

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        return self.tok.encode(text, add_special_tokens=add_special_tokens)

    def tokenize(self, text: str) -> List[str]:
        table = self.tok.id_to_token
        return [table[i] for i in self.tok.encode(text, add_special_tokens=False)]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        text = self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return clean_up_tokenization(text) if self.clean_up else text


OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# --------------------------------------------------------------------------------------------
# configuration (ref: configuration_blip.py; defaults are the classes' for absent keys)

def _pick(cls, d: Dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class BlipVisionConfig:
    hidden_size: int = 768
    intermediate_size: int = 3072
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 384
    patch_size: int = 16
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float = 0.0
    initializer_range: float = 1e-10

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model_type"] = "blip_vision_model"
        return d


# Generation keys a text_config may carry (PretrainedConfig keeps them; from_model_config reads them).
GENERATION_KEYS = ("max_length", "max_new_tokens", "min_length", "min_new_tokens", "num_beams",
                   "length_penalty", "early_stopping", "no_repeat_ngram_size", "repetition_penalty")


@dataclass
class BlipTextConfig:
    vocab_size: int = 30524
    hidden_size: int = 768
    encoder_hidden_size: int = 768
    intermediate_size: int = 3072
    projection_dim: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 512
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    bos_token_id: int = 30522
    eos_token_id: int = 2
    pad_token_id: int = 0
    sep_token_id: int = 102
    is_decoder: bool = True
    use_cache: bool = True
    tie_word_embeddings: bool = True
    generation: Dict[str, Any] = field(default_factory=dict)  # GENERATION_KEYS found in the file

    @staticmethod
    def from_dict(d: Dict[str, Any]) -> "BlipTextConfig":
        c = _pick(BlipTextConfig, {k: v for k, v in d.items() if k != "generation"})
        c.generation = {k: d[k] for k in GENERATION_KEYS if k in d and d[k] is not None}
        return c

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        gen = d.pop("generation")
        d.update(gen)
        d["model_type"] = "blip_text_model"
        return d


@dataclass
class BlipConfig:
    vision_config: BlipVisionConfig
    text_config: BlipTextConfig
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592
    image_text_hidden_size: int = 256

    def __post_init__(self):
        # ref: BlipConfig.__init__: the text decoder's cross-attention reads the vision width
        self.text_config.encoder_hidden_size = self.vision_config.hidden_size

    @staticmethod
    def from_dict(d: Dict[str, Any]) -> "BlipConfig":
        if d.get("model_type") != "blip":
            raise ValueError(f"config model_type {d.get('model_type')!r}, expected 'blip'")
        return BlipConfig(vision_config=_pick(BlipVisionConfig, d.get("vision_config") or {}),
                          text_config=BlipTextConfig.from_dict(d.get("text_config") or {}),
                          **{k: d[k] for k in ("projection_dim", "logit_scale_init_value",
                                               "image_text_hidden_size") if k in d})

    def to_dict(self) -> Dict[str, Any]:
        return {
            "architectures": ["BlipForConditionalGeneration"],
            "image_text_hidden_size": self.image_text_hidden_size,
            "initializer_factor": 1.0,
            "initializer_range": 0.02,
            "logit_scale_init_value": self.logit_scale_init_value,
            "model_type": "blip",
            "projection_dim": self.projection_dim,
            "text_config": self.text_config.to_dict(),
            "torch_dtype": "float32",
            "vision_config": self.vision_config.to_dict(),
        }

    def generation_config(self) -> GenerationConfig:
        """The GenerationConfig text_decoder.generate() runs with: from_model_config(text_config)
        plus the explicit eos = sep_token_id, pad = pad_token_id of BlipForConditionalGeneration
        .generate(). decoder_start_token_id is bos: the decoder input when there is no prompt."""
        t = self.text_config
        g = GenerationConfig.from_dict(t.generation)
        g.bos_token_id = t.bos_token_id
        g.eos_token_id = t.sep_token_id
        g.pad_token_id = t.pad_token_id
        g.decoder_start_token_id = t.bos_token_id
        return g


def blip_image_processor(d: Optional[Dict[str, Any]]) -> ImageProcessorConfig:
    """BlipImageProcessor settings: the file's values over the class defaults (384x384, bicubic,
    1/255, OpenAI CLIP mean/std). The slow path is ViTImageProcessor's (preprocess.py)."""
    full = {"size": {"height": 384, "width": 384}, "resample": 3, "rescale_factor": 1 / 255,
            "image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD}
    full.update(d or {})
    return ImageProcessorConfig.from_dict(full)


def blip_image_processor_dict(p: ImageProcessorConfig) -> Dict[str, Any]:
    """preprocessor_config.json as transformers saves a BlipImageProcessor."""
    return {
        "do_convert_rgb": True,
        "do_normalize": p.do_normalize,
        "do_rescale": p.do_rescale,
        "do_resize": p.do_resize,
        "image_mean": list(p.image_mean),
        "image_processor_type": "BlipImageProcessor",
        "image_std": list(p.image_std),
        "processor_class": "BlipProcessor",
        "resample": p.resample,
        "rescale_factor": p.rescale_factor,
        "size": p.raw_size if p.raw_size is not None else dict(p.size),
    }


# --------------------------------------------------------------------------------------------
# vision tower (ref: modeling_blip.py BlipVisionEmbeddings, BlipAttention, BlipMLP,
# BlipEncoderLayer, BlipVisionModel)

class BlipVisionEmbeddings(nn.Module):
    def __init__(self, c: BlipVisionConfig):
        super().__init__()
        self.image_size = c.image_size
        self.class_embedding = nn.Parameter(torch.zeros(1, 1, c.hidden_size))
        self.patch_embedding = nn.Conv2d(c.num_channels, c.hidden_size, kernel_size=c.patch_size,
                                         stride=c.patch_size)
        n = (c.image_size // c.patch_size) ** 2 + 1
        self.position_embedding = nn.Parameter(torch.zeros(1, n, c.hidden_size))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        b, _, h, w = pixel_values.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"pixel_values {h}x{w}, model expects {self.image_size}x{self.image_size}")
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(b, 1, -1), patches], dim=1)
        return x + self.position_embedding[:, :x.size(1), :]


class BlipAttention(nn.Module):
    def __init__(self, c: BlipVisionConfig):
        super().__init__()
        d = c.hidden_size
        self.num_heads = c.num_attention_heads
        self.head_dim = d // self.num_heads
        if self.head_dim * self.num_heads != d:
            raise ValueError(f"vision hidden_size {d} is not a multiple of num_attention_heads {self.num_heads}")
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(d, 3 * d)
        self.projection = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        probs = F.softmax(scores, dim=-1)
        out = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(b, t, d)
        return self.projection(out), probs


class BlipMLP(nn.Module):
    def __init__(self, c: BlipVisionConfig):
        super().__init__()
        self.act = activation(c.hidden_act)
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class BlipEncoderLayer(nn.Module):
    def __init__(self, c: BlipVisionConfig):
        super().__init__()
        self.self_attn = BlipAttention(c)
        self.layer_norm1 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp = BlipMLP(c)
        self.layer_norm2 = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x):
        a, probs = self.self_attn(self.layer_norm1(x))
        x = a + x
        return self.mlp(self.layer_norm2(x)) + x, probs


class BlipEncoder(nn.Module):
    def __init__(self, c: BlipVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList([BlipEncoderLayer(c) for _ in range(c.num_hidden_layers)])


class BlipVisionModel(nn.Module):
    def __init__(self, c: BlipVisionConfig):
        super().__init__()
        self.config = c
        self.embeddings = BlipVisionEmbeddings(c)
        self.encoder = BlipEncoder(c)
        self.post_layernorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """last_hidden_state (B, 1 + P, D), post_layernorm applied to every token."""
        x = self.embeddings(pixel_values)
        for layer in self.encoder.layers:
            x, _ = layer(x)
        return self.post_layernorm(x)


# --------------------------------------------------------------------------------------------
# text decoder (ref: modeling_blip_text.py)

MASKED = -10000.0  # ref: BlipTextModel.get_extended_attention_mask: (1 - mask) * -10000


class BlipTextEmbeddings(nn.Module):
    def __init__(self, c: BlipTextConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        # saved by older transformers versions (real checkpoints carry it); not a weight
        self.register_buffer("position_ids", torch.arange(c.max_position_embeddings).expand((1, -1)))

    def forward(self, input_ids: torch.Tensor, past_length: int) -> torch.Tensor:
        t = input_ids.size(1)
        pos = self.position_ids[:, past_length:past_length + t]
        return self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(pos))


class BlipTextSelfAttention(nn.Module):
    def __init__(self, c: BlipTextConfig, is_cross_attention: bool):
        super().__init__()
        d = c.hidden_size
        self.num_heads = c.num_attention_heads
        self.head_size = d // self.num_heads
        if self.head_size * self.num_heads != d:
            raise ValueError(f"text hidden_size {d} is not a multiple of num_attention_heads {self.num_heads}")
        kv_in = c.encoder_hidden_size if is_cross_attention else d
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(kv_in, d)
        self.value = nn.Linear(kv_in, d)
        self.is_cross_attention = is_cross_attention

    def _heads(self, x):  # (B, T, D) -> (B, H, T, hd)
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_size).permute(0, 2, 1, 3)

    def cross_kv(self, encoder_hidden_states: torch.Tensor) -> KV:
        return self._heads(self.key(encoder_hidden_states)), self._heads(self.value(encoder_hidden_states))

    def forward(self, x, mask: Optional[torch.Tensor] = None, past: Optional[KV] = None,
                encoder_hidden_states=None, cross: Optional[KV] = None):
        q = self._heads(self.query(x))
        if self.is_cross_attention:
            k, v = cross if cross is not None else self.cross_kv(encoder_hidden_states)
            present = None
        else:
            k, v = self._heads(self.key(x)), self._heads(self.value(x))
            if past is not None:
                k = torch.cat([past[0], k], dim=2)
                v = torch.cat([past[1], v], dim=2)
            present = (k, v)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size)
        if mask is not None:
            scores = scores + mask
        probs = F.softmax(scores, dim=-1)
        out = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        b, t = out.shape[:2]
        return out.view(b, t, -1), probs, present


class BlipTextSelfOutput(nn.Module):
    def __init__(self, c: BlipTextConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, h, residual):
        return self.LayerNorm(self.dense(h) + residual)


class BlipTextAttention(nn.Module):
    def __init__(self, c: BlipTextConfig, is_cross_attention: bool = False):
        super().__init__()
        self.self = BlipTextSelfAttention(c, is_cross_attention)
        self.output = BlipTextSelfOutput(c)

    def forward(self, x, mask=None, past=None, encoder_hidden_states=None, cross=None):
        a, probs, present = self.self(x, mask, past, encoder_hidden_states, cross)
        return self.output(a, x), probs, present


class BlipTextIntermediate(nn.Module):
    def __init__(self, c: BlipTextConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.act = activation(c.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))


class BlipTextOutput(nn.Module):
    def __init__(self, c: BlipTextConfig):
        super().__init__()
        self.dense = nn.Linear(c.intermediate_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, h, residual):
        return self.LayerNorm(self.dense(h) + residual)


class BlipTextLayer(nn.Module):
    def __init__(self, c: BlipTextConfig):
        super().__init__()
        self.attention = BlipTextAttention(c)
        self.crossattention = BlipTextAttention(c, is_cross_attention=True)
        self.intermediate = BlipTextIntermediate(c)
        self.output = BlipTextOutput(c)

    def forward(self, x, mask, past, encoder_hidden_states, cross):
        x, self_probs, present = self.attention(x, mask, past)
        x, cross_probs, _ = self.crossattention(x, None, None, encoder_hidden_states, cross)
        return self.output(self.intermediate(x), x), present, self_probs, cross_probs


class BlipTextEncoder(nn.Module):
    def __init__(self, c: BlipTextConfig):
        super().__init__()
        self.layer = nn.ModuleList([BlipTextLayer(c) for _ in range(c.num_hidden_layers)])


class BlipTextModel(nn.Module):
    """BERT as a decoder, without the pooler (BlipTextLMHeadModel's `bert`)."""

    def __init__(self, c: BlipTextConfig):
        super().__init__()
        self.embeddings = BlipTextEmbeddings(c)
        self.encoder = BlipTextEncoder(c)


class BlipTextPredictionHeadTransform(nn.Module):
    def __init__(self, c: BlipTextConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.act = activation(c.hidden_act)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(self.act(self.dense(x)))


class BlipTextLMPredictionHead(nn.Module):
    def __init__(self, c: BlipTextConfig):
        super().__init__()
        self.transform = BlipTextPredictionHeadTransform(c)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))

    def forward(self, x):
        return F.linear(self.transform(x), self.decoder.weight, self.bias)


class BlipTextOnlyMLMHead(nn.Module):
    def __init__(self, c: BlipTextConfig):
        super().__init__()
        self.predictions = BlipTextLMPredictionHead(c)


class BlipTextLMHeadModel(nn.Module):
    def __init__(self, c: BlipTextConfig):
        super().__init__()
        if not c.is_decoder:
            raise ValueError("text_config.is_decoder must be true for captioning")
        self.config = c
        self.bert = BlipTextModel(c)
        self.cls = BlipTextOnlyMLMHead(c)

    def cross_kv(self, encoder_hidden_states: torch.Tensor) -> List[KV]:
        """Cross-attention K/V of every layer (B, H, N, hd), computed once per image."""
        return [layer.crossattention.self.cross_kv(encoder_hidden_states) for layer in self.bert.encoder.layer]

    def forward(self, input_ids: torch.Tensor, past: Optional[List[KV]] = None,
                encoder_hidden_states: Optional[torch.Tensor] = None,
                cross: Optional[List[KV]] = None, output_attentions: bool = False) -> DecoderOutput:
        """input_ids (B, T) continue `past`; the same interface as modeling.GPT2LMHeadModel, so
        generate.py drives both."""
        t0 = past[0][0].size(2) if past else 0
        t = input_ids.size(1)
        if t0 + t > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {t0 + t} exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}")
        # extended causal mask over past + new positions: 0 where allowed, -10000 elsewhere
        allowed = torch.ones(t, t0 + t, dtype=torch.bool).tril(diagonal=t0)
        mask = torch.where(allowed, torch.tensor(0.0), torch.tensor(MASKED))[None, None]
        x = self.bert.embeddings(input_ids, t0)
        mask = mask.to(x.dtype)  # in the model's dtype, as HF casts it (bf16 runs of the baseline)
        presents, cross_attns, self_attns = [], [], []
        for i, layer in enumerate(self.bert.encoder.layer):
            x, present, sp, cp = layer(x, mask, past[i] if past else None, encoder_hidden_states,
                                       cross[i] if cross is not None else None)
            presents.append(present)
            if output_attentions:
                self_attns.append(sp)
                cross_attns.append(cp)
        return DecoderOutput(self.cls.predictions(x), presents, cross_attns, self_attns)


class BlipForConditionalGeneration(nn.Module):
    def __init__(self, c: BlipConfig):
        super().__init__()
        self.config = c
        self.vision_model = BlipVisionModel(c.vision_config)
        self.text_decoder = BlipTextLMHeadModel(c.text_config)

    # the interface generate.py uses (encode, project, decoder)
    @property
    def decoder(self) -> BlipTextLMHeadModel:
        return self.text_decoder

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values)

    def project(self, image_embeds: torch.Tensor) -> torch.Tensor:
        return image_embeds  # BLIP has no projection: cross-attention key/value read the vision width


# --------------------------------------------------------------------------------------------
# generate()

def decoder_input_ids(config: BlipConfig, processor_ids: Optional[Sequence[int]]) -> List[int]:
    """ref: BlipForConditionalGeneration.generate: no prompt -> [bos, eos][:-1]; else the
    processor's ids with ids[0] = bos and the last id dropped."""
    t = config.text_config
    ids = [t.bos_token_id, t.eos_token_id] if processor_ids is None else list(processor_ids)
    ids[0] = t.bos_token_id
    return ids[:-1]


def generate(model: BlipForConditionalGeneration, pixel_values: torch.Tensor, *,
             processor_ids: Optional[Sequence[int]] = None, output_attentions: bool = False,
             recompute_cross_kv: bool = False, use_cache: bool = True, legacy_beam: bool = False,
             logits_hook=None, **overrides) -> gen_mod.Result:
    """model.generate(pixel_values, input_ids=processor_ids, **overrides) for one image.
    The result's sequence is prompt + generated ids, as HF returns them."""
    prompt = decoder_input_ids(model.config, processor_ids)
    return gen_mod.generate(model, pixel_values, model.config.generation_config(),
                            prompt_ids=prompt, max_positions=model.config.text_config.max_position_embeddings,
                            output_attentions=output_attentions, recompute_cross_kv=recompute_cross_kv,
                            use_cache=use_cache, legacy_beam=legacy_beam, logits_hook=logits_hook, **overrides)


# --------------------------------------------------------------------------------------------
# HF folder I/O

# Buffers a BLIP checkpoint may hold that are not weights.
IGNORED = ("text_decoder.bert.embeddings.position_ids",)
HEAD_WEIGHT = "text_decoder.cls.predictions.decoder.weight"
HEAD_BIAS = "text_decoder.cls.predictions.bias"
HEAD_BIAS_ALT = "text_decoder.cls.predictions.decoder.bias"


@dataclass
class Bundle:
    model: BlipForConditionalGeneration
    config: BlipConfig
    preprocessor: ImageProcessorConfig
    tokenizer: Optional[BlipTokenizer]
    dtypes: Dict[str, str]


def load_state(model: BlipForConditionalGeneration, tensors: Dict[str, np.ndarray]) -> None:
    """Strict load: every weight present with its shape; the head bias under either name; the
    head weight tied to the word embeddings when absent."""
    tensors = dict(tensors)
    if HEAD_BIAS not in tensors and HEAD_BIAS_ALT in tensors:
        tensors[HEAD_BIAS] = tensors.pop(HEAD_BIAS_ALT)
    elif HEAD_BIAS in tensors and HEAD_BIAS_ALT in tensors:
        if not np.array_equal(tensors[HEAD_BIAS], tensors[HEAD_BIAS_ALT]):
            raise ValueError(f"{HEAD_BIAS} and {HEAD_BIAS_ALT} differ (transformers ties them)")
        tensors.pop(HEAD_BIAS_ALT)
    if HEAD_WEIGHT not in tensors and "text_decoder.bert.embeddings.word_embeddings.weight" in tensors:
        tensors[HEAD_WEIGHT] = tensors["text_decoder.bert.embeddings.word_embeddings.weight"]
    state = model.state_dict()
    weights = {k for k in state if k not in IGNORED}
    missing = sorted(weights - set(tensors))
    if missing:
        raise ValueError(f"checkpoint lacks tensors: {missing}")
    unexpected = sorted(set(tensors) - weights - set(IGNORED))
    if unexpected:
        raise ValueError(f"checkpoint has unexpected tensors: {unexpected}")
    with torch.no_grad():
        for name in weights:
            arr = tensors[name]
            if tuple(arr.shape) != tuple(state[name].shape):
                raise ValueError(f"tensor '{name}': expected {list(state[name].shape)}, got {list(arr.shape)}")
            state[name].copy_(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)))


def load_pretrained(folder) -> Bundle:
    folder = Path(folder)
    cfg = BlipConfig.from_dict(read_json(folder / "config.json"))
    model = BlipForConditionalGeneration(cfg)
    tensors, dtypes, _ = safetensors_io.load(folder / "model.safetensors")
    load_state(model, tensors)
    model.eval()
    pre_path = folder / "preprocessor_config.json"
    pre = blip_image_processor(read_json(pre_path) if pre_path.exists() else None)
    tok = BlipTokenizer(folder) if ((folder / "tokenizer.json").exists() or (folder / "vocab.txt").exists()) else None
    return Bundle(model, cfg, pre, tok, dtypes)
