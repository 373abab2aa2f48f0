"""PyTorch reference of Hugging Face's VisionEncoderDecoderModel with a ViT encoder and a GPT-2
decoder (eager attention, float32), written from the math of transformers' modeling_vit.py,
modeling_gpt2.py and modeling_vision_encoder_decoder.py.

`state_dict()` keys are exactly the checkpoint names of a transformers model folder
(`encoder.embeddings.cls_token`, `decoder.transformer.h.0.attn.c_attn.weight`, ...), so
`load_pretrained` / `save_pretrained` read and write HF folders, and the module can be trained.

Numerics follow HF where it matters for bit-level comparisons:
- ViT: scores = (Q K^T) * head_dim**-0.5; LayerNorm eps from config (1e-12 default); erf GELU.
- GPT-2: scores = (Q K^T) / float32(sqrt(head_dim)) [/ (layer_idx + 1)]; the causal mask replaces
  masked scores with torch.finfo(float32).min before softmax; Conv1D is x @ W + b with W (in, out);
  gelu_new is the tanh approximation; LayerNorm eps 1e-5 default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import safetensors_io
from .config import (GenerationConfig, GPT2Config, ImageProcessorConfig, ViTConfig,
                     VisionEncoderDecoderConfig, read_json, resolve_generation_config, write_json)


# --------------------------------------------------------------------------------------------
# activations (ref: transformers activations.py ACT2FN)

def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """tanh approximation of GELU as GPT-2 uses it ("gelu_new")."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def activation(name: str):
    if name == "gelu":
        return F.gelu  # exact, erf based
    if name == "gelu_new":
        return gelu_new
    if name == "gelu_pytorch_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    raise ValueError(f"unsupported activation {name!r}")


# --------------------------------------------------------------------------------------------
# ViT encoder (ref: transformers models/vit/modeling_vit.py)

class ViTPatchEmbeddings(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.projection = nn.Conv2d(cfg.num_channels, cfg.hidden_size,
                                    kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, P, D)
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class ViTEmbeddings(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        n_patches = (cfg.image_size // cfg.patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size))
        self.patch_embeddings = ViTPatchEmbeddings(cfg)
        self.position_embeddings = nn.Parameter(torch.zeros(1, n_patches + 1, cfg.hidden_size))
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.image_size = cfg.image_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        b, _, h, w = pixel_values.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"pixel_values {h}x{w}, model expects {self.image_size}x{self.image_size}")
        x = self.patch_embeddings(pixel_values)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
        return self.dropout(x + self.position_embeddings)


class ViTSelfAttention(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        d = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.head_dim = d // self.num_heads
        if self.head_dim * self.num_heads != d:
            raise ValueError(f"ViT hidden_size {d} is not a multiple of num_attention_heads {self.num_heads}")
        self.scaling = self.head_dim ** -0.5
        self.query = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.key = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.value = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.dropout = nn.Dropout(cfg.attention_probs_dropout_prob)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, H, T, hd)
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scaling
        probs = F.softmax(scores, dim=-1)
        out = torch.matmul(self.dropout(probs), v).transpose(1, 2)
        return out.reshape(x.shape), probs


class ViTSelfOutput(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(x))


class ViTAttention(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.attention = ViTSelfAttention(cfg)
        self.output = ViTSelfOutput(cfg)

    def forward(self, x):
        a, probs = self.attention(x)
        return self.output(a), probs


class ViTIntermediate(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = activation(cfg.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))


class ViTOutput(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x, residual):
        return self.dropout(self.dense(x)) + residual


class ViTLayer(nn.Module):
    """Pre-LN block: x += attn(ln_before x); x += mlp(ln_after x)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.attention = ViTAttention(cfg)
        self.intermediate = ViTIntermediate(cfg)
        self.output = ViTOutput(cfg)
        self.layernorm_before = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x):
        a, probs = self.attention(self.layernorm_before(x))
        x = a + x
        return self.output(self.intermediate(self.layernorm_after(x)), x), probs


class ViTEncoder(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.layer = nn.ModuleList([ViTLayer(cfg) for _ in range(cfg.num_hidden_layers)])


class ViTPooler(nn.Module):
    """Present in checkpoints (ViTModel(add_pooling_layer=True)); unused by the decoder."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))


class ViTModel(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = ViTEmbeddings(cfg)
        self.encoder = ViTEncoder(cfg)
        self.layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.pooler = ViTPooler(cfg)

    def forward(self, pixel_values: torch.Tensor, output_attentions: bool = False):
        """Returns last_hidden_state (B, 1 + P, D) after the final layernorm, and the attention
        probabilities of every layer when asked."""
        x = self.embeddings(pixel_values)
        attns = []
        for layer in self.encoder.layer:
            x, probs = layer(x)
            if output_attentions:
                attns.append(probs)
        return self.layernorm(x), attns


# --------------------------------------------------------------------------------------------
# GPT-2 decoder with cross-attention (ref: transformers models/gpt2/modeling_gpt2.py)

class Conv1D(nn.Module):
    """GPT-2's linear layer: y = x @ weight + bias with weight stored (in_features, out_features)."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x):
        shape = x.shape[:-1] + (self.nf,)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)


# (K, V) of one layer, each (B, H, T, hd)
KV = Tuple[torch.Tensor, torch.Tensor]


class GPT2Attention(nn.Module):
    def __init__(self, cfg: GPT2Config, is_cross_attention: bool, layer_idx: int):
        super().__init__()
        d = cfg.n_embd
        self.num_heads = cfg.n_head
        self.head_dim = d // self.num_heads
        if self.head_dim * self.num_heads != d:
            raise ValueError(f"GPT-2 n_embd {d} is not a multiple of n_head {self.num_heads}")
        self.is_cross_attention = is_cross_attention
        self.layer_idx = layer_idx
        self.scale_attn_weights = cfg.scale_attn_weights
        self.scale_attn_by_inverse_layer_idx = cfg.scale_attn_by_inverse_layer_idx
        if is_cross_attention:
            self.c_attn = Conv1D(2 * d, d)  # on encoder states: K | V
            self.q_attn = Conv1D(d, d)
        else:
            self.c_attn = Conv1D(3 * d, d)  # Q | K | V
        self.c_proj = Conv1D(d, d)
        self.attn_dropout = nn.Dropout(cfg.attn_pdrop)
        self.resid_dropout = nn.Dropout(cfg.resid_pdrop)

    def _heads(self, x):  # (B, T, D) -> (B, H, T, hd)
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def cross_kv(self, encoder_hidden_states: torch.Tensor) -> KV:
        k, v = self.c_attn(encoder_hidden_states).split(self.num_heads * self.head_dim, dim=2)
        return self._heads(k), self._heads(v)

    def _attend(self, q, k, v):
        scores = torch.matmul(q, k.transpose(-1, -2))
        if self.scale_attn_weights:
            scores = scores / torch.full([], v.size(-1) ** 0.5, dtype=scores.dtype, device=scores.device)
        if self.scale_attn_by_inverse_layer_idx:
            scores = scores / float(self.layer_idx + 1)
        if not self.is_cross_attention:
            tq, tk = q.size(-2), k.size(-2)
            causal = torch.ones(tk, tk, dtype=torch.bool, device=scores.device).tril()[tk - tq:tk, :tk]
            scores = torch.where(causal, scores, torch.full([], torch.finfo(scores.dtype).min, dtype=scores.dtype,
                                                          device=scores.device))
        probs = F.softmax(scores, dim=-1)
        out = torch.matmul(self.attn_dropout(probs), v)
        b, h, t, hd = out.shape
        return out.transpose(1, 2).reshape(b, t, h * hd), probs

    def forward(self, x, past: Optional[KV] = None, encoder_hidden_states=None, cross: Optional[KV] = None):
        """Self-attention: returns (output, probs, new (K, V) with `past` prepended).
        Cross-attention: K/V come from `cross` when given, else from `encoder_hidden_states`
        (recomputed at each call, as HF does); returns (output, probs, None)."""
        if self.is_cross_attention:
            q = self._heads(self.q_attn(x))
            k, v = cross if cross is not None else self.cross_kv(encoder_hidden_states)
            present = None
        else:
            q, k, v = (self._heads(t) for t in self.c_attn(x).split(self.num_heads * self.head_dim, dim=2))
            if past is not None:
                k = torch.cat([past[0], k], dim=-2)
                v = torch.cat([past[1], v], dim=-2)
            present = (k, v)
        out, probs = self._attend(q, k, v)
        return self.resid_dropout(self.c_proj(out)), probs, present


class GPT2MLP(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.c_fc = Conv1D(cfg.inner_dim, cfg.n_embd)
        self.c_proj = Conv1D(cfg.n_embd, cfg.inner_dim)
        self.act = activation(cfg.activation_function)
        self.dropout = nn.Dropout(cfg.resid_pdrop)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, cfg: GPT2Config, layer_idx: int):
        super().__init__()
        d = cfg.n_embd
        self.ln_1 = nn.LayerNorm(d, eps=cfg.layer_norm_epsilon)
        self.attn = GPT2Attention(cfg, is_cross_attention=False, layer_idx=layer_idx)
        self.ln_cross_attn = nn.LayerNorm(d, eps=cfg.layer_norm_epsilon)
        self.crossattention = GPT2Attention(cfg, is_cross_attention=True, layer_idx=layer_idx)
        self.ln_2 = nn.LayerNorm(d, eps=cfg.layer_norm_epsilon)
        self.mlp = GPT2MLP(cfg)

    def forward(self, x, past=None, encoder_hidden_states=None, cross=None):
        a, self_probs, present = self.attn(self.ln_1(x), past=past)
        x = x + a
        c, cross_probs, _ = self.crossattention(self.ln_cross_attn(x),
                                                encoder_hidden_states=encoder_hidden_states, cross=cross)
        x = x + c
        x = x + self.mlp(self.ln_2(x))
        return x, present, self_probs, cross_probs


class GPT2Model(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.n_embd)
        self.drop = nn.Dropout(cfg.embd_pdrop)
        self.h = nn.ModuleList([GPT2Block(cfg, i) for i in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)


@dataclass
class DecoderOutput:
    logits: torch.Tensor                   # (B, T, V)
    past: List[KV]                         # self-attention K/V per layer, (B, H, past + T, hd)
    cross_attentions: List[torch.Tensor]   # per layer (B, H, T, N); filled when asked
    self_attentions: List[torch.Tensor]    # per layer (B, H, T, past + T); filled when asked


class GPT2LMHeadModel(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        if not cfg.add_cross_attention:
            raise ValueError("decoder config must have add_cross_attention = true")
        if cfg.reorder_and_upcast_attn:
            raise ValueError("reorder_and_upcast_attn is not supported")
        self.config = cfg
        self.transformer = GPT2Model(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight

    def cross_kv(self, encoder_hidden_states: torch.Tensor) -> List[KV]:
        """Cross-attention K/V of every layer, computed once per image."""
        return [blk.crossattention.cross_kv(encoder_hidden_states) for blk in self.transformer.h]

    def forward(self, input_ids: torch.Tensor, past: Optional[List[KV]] = None,
                encoder_hidden_states: Optional[torch.Tensor] = None,
                cross: Optional[List[KV]] = None, output_attentions: bool = False) -> DecoderOutput:
        """input_ids (B, T) continue `past` (positions start at the cached length). Cross K/V come
        from `cross` when given, else are recomputed from `encoder_hidden_states` (B, N, D)."""
        t0 = past[0][0].size(-2) if past else 0
        t = input_ids.size(1)
        if t0 + t > self.config.n_positions:
            raise ValueError(f"sequence length {t0 + t} exceeds n_positions {self.config.n_positions}")
        pos = torch.arange(t0, t0 + t, dtype=torch.long, device=input_ids.device).unsqueeze(0)
        x = self.transformer.drop(self.transformer.wte(input_ids) + self.transformer.wpe(pos))
        presents, cross_attns, self_attns = [], [], []
        for i, blk in enumerate(self.transformer.h):
            x, present, sp, cp = blk(x, past=past[i] if past else None,
                                     encoder_hidden_states=encoder_hidden_states,
                                     cross=cross[i] if cross is not None else None)
            presents.append(present)
            if output_attentions:
                self_attns.append(sp)
                cross_attns.append(cp)
        x = self.transformer.ln_f(x)
        return DecoderOutput(self.lm_head(x), presents, cross_attns, self_attns)


# --------------------------------------------------------------------------------------------
# the encoder-decoder (ref: models/vision_encoder_decoder/modeling_vision_encoder_decoder.py)

class VisionEncoderDecoder(nn.Module):
    def __init__(self, cfg: VisionEncoderDecoderConfig):
        super().__init__()
        self.config = cfg
        self.encoder = ViTModel(cfg.encoder)
        self.decoder = GPT2LMHeadModel(cfg.decoder)
        if cfg.has_enc_to_dec_proj:
            self.enc_to_dec_proj = nn.Linear(cfg.encoder.hidden_size, cfg.decoder.n_embd)
        else:
            self.enc_to_dec_proj = None

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """ViT last_hidden_state (B, N, enc hidden), before enc_to_dec_proj."""
        return self.encoder(pixel_values)[0]

    def project(self, encoder_last_hidden_state: torch.Tensor) -> torch.Tensor:
        """What the decoder's cross-attention reads: enc_to_dec_proj(h) when it exists."""
        if self.enc_to_dec_proj is None:
            return encoder_last_hidden_state
        return self.enc_to_dec_proj(encoder_last_hidden_state)

    def forward(self, pixel_values: torch.Tensor, decoder_input_ids: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None):
        """Training/teacher-forcing forward. Like HF, when only `labels` (B, T) are given the decoder
        input is labels shifted right with decoder_start_token_id first and -100 replaced by pad;
        loss is the mean cross entropy over labels != -100 (no further shift).
        Returns (logits (B, T, V), loss or None)."""
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("need decoder_input_ids or labels")
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id,
                                                   self.config.decoder_start_token_id)
        enc = self.project(self.encode(pixel_values))
        logits = self.decoder(decoder_input_ids, encoder_hidden_states=enc).logits
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
        return logits, loss


def shift_tokens_right(labels: torch.Tensor, pad_token_id: Optional[int], start_token_id: Optional[int]):
    if start_token_id is None or pad_token_id is None:
        raise ValueError("decoder_start_token_id and pad_token_id must be set to shift labels")
    out = labels.new_zeros(labels.shape)
    out[:, 1:] = labels[:, :-1].clone()
    out[:, 0] = start_token_id
    return out.masked_fill(out == -100, pad_token_id)


# --------------------------------------------------------------------------------------------
# HF folder I/O

# Buffers of older GPT-2 checkpoints that carry no weights; a loader ignores them.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".crossattention.bias", ".crossattention.masked_bias")


def is_ignored_buffer(name: str) -> bool:
    return name.startswith("decoder.transformer.h.") and name.endswith(IGNORED_SUFFIXES)


@dataclass
class Bundle:
    """A loaded model folder."""
    model: VisionEncoderDecoder
    config: VisionEncoderDecoderConfig
    generation_config: GenerationConfig
    preprocessor: ImageProcessorConfig
    tokenizer: Optional[dict]          # parsed tokenizer.json, or None
    dtypes: Dict[str, str]             # stored dtype per tensor of model.safetensors


def expected_tensors(model: VisionEncoderDecoder) -> Dict[str, Tuple[int, ...]]:
    """Checkpoint name -> shape of every tensor the file must hold (tied lm_head excluded)."""
    out = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if model.config.decoder.tie_word_embeddings:
        out.pop("decoder.lm_head.weight", None)
    return out


def load_state(model: VisionEncoderDecoder, tensors: Dict[str, np.ndarray]) -> None:
    """Copies checkpoint tensors into the model, checking names and shapes like a strict loader."""
    expected = expected_tensors(model)
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ValueError(f"checkpoint lacks tensors: {missing}")
    unexpected = sorted(k for k in tensors if k not in expected and not is_ignored_buffer(k)
                        and not (k == "decoder.lm_head.weight" and model.config.decoder.tie_word_embeddings))
    if unexpected:
        raise ValueError(f"checkpoint has unexpected tensors: {unexpected}")
    state = model.state_dict()
    with torch.no_grad():
        for name, shape in expected.items():
            arr = tensors[name]
            if tuple(arr.shape) != shape:
                raise ValueError(f"tensor '{name}': expected {list(shape)}, got {list(arr.shape)}")
            state[name].copy_(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)))


def load_pretrained(folder) -> Bundle:
    folder = Path(folder)
    cfg = VisionEncoderDecoderConfig.from_dict(read_json(folder / "config.json"))
    model = VisionEncoderDecoder(cfg)
    tensors, dtypes, _ = safetensors_io.load(folder / "model.safetensors")
    load_state(model, tensors)
    model.eval()
    pre_path = folder / "preprocessor_config.json"
    if pre_path.exists():
        pre = ImageProcessorConfig.from_dict(read_json(pre_path))
    else:
        pre = ImageProcessorConfig.from_dict({"size": cfg.encoder.image_size})
    tok_path = folder / "tokenizer.json"
    tok = read_json(tok_path) if tok_path.exists() else None
    return Bundle(model, cfg, resolve_generation_config(folder, cfg), pre, tok, dtypes)


def save_pretrained(model: VisionEncoderDecoder, folder, *, dtype: str = "F32",
                    generation_config: Optional[GenerationConfig] = None,
                    preprocessor: Optional[ImageProcessorConfig] = None,
                    tokenizer: Optional[dict] = None,
                    extra_tensors: Optional[Dict[str, np.ndarray]] = None,
                    extra_dtypes: Optional[Dict[str, str]] = None,
                    transformers_version: str = "4.46.0") -> None:
    """Writes config.json, model.safetensors (weights in `dtype`: F32, F16 or BF16; a tied lm_head
    is left out as HF does), and the optional generation/preprocessor/tokenizer files.
    `extra_tensors` are written as given (e.g. legacy GPT-2 attn.bias buffers)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_dict = model.config.to_dict()
    cfg_dict["transformers_version"] = transformers_version
    write_json(folder / "config.json", cfg_dict)
    names = expected_tensors(model)
    state = model.state_dict()
    tensors = {k: state[k].detach().cpu().numpy().astype(np.float32) for k in names}
    dtypes = {k: dtype for k in tensors}
    for k, v in (extra_tensors or {}).items():
        tensors[k] = v
    dtypes.update(extra_dtypes or {})
    safetensors_io.save(folder / "model.safetensors", tensors, dtypes, metadata={"format": "pt"})
    if generation_config is not None:
        g = generation_config.to_dict()
        g["transformers_version"] = transformers_version
        write_json(folder / "generation_config.json", g)
    if preprocessor is not None:
        write_json(folder / "preprocessor_config.json", preprocessor.to_dict())
    if tokenizer is not None:
        write_json(folder / "tokenizer.json", tokenizer)
