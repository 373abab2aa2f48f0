"""Configuration of a Hugging Face VisionEncoderDecoder (ViT + GPT-2) model folder.

Field names are the JSON keys of transformers' ViTConfig, GPT2Config, GenerationConfig and
ViTImageProcessor; defaults are the ones those classes use when a key is absent.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union


def _pick(cls, d: Dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ViTConfig:
    """ref: transformers ViTConfig."""
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    encoder_stride: int = 16

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model_type"] = "vit"
        d["architectures"] = ["ViTModel"]
        d["torch_dtype"] = "float32"
        return d


@dataclass
class GPT2Config:
    """ref: transformers GPT2Config (decoder sub-config of a vision-encoder-decoder)."""
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: Optional[int] = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    add_cross_attention: bool = True
    is_decoder: bool = True
    use_cache: bool = True
    tie_word_embeddings: bool = True
    cross_attention_hidden_size: Optional[int] = None
    bos_token_id: Optional[int] = 50256
    eos_token_id: Optional[int] = 50256
    pad_token_id: Optional[int] = None
    decoder_start_token_id: Optional[int] = None

    @property
    def inner_dim(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model_type"] = "gpt2"
        d["architectures"] = ["GPT2LMHeadModel"]
        d["torch_dtype"] = "float32"
        return d


@dataclass
class ImageProcessorConfig:
    """ref: transformers ViTImageProcessor (slow path). `size` is kept as {height, width}."""
    do_resize: bool = True
    size: Dict[str, int] = field(default_factory=lambda: {"height": 224, "width": 224})
    resample: int = 2
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    raw_size: Any = None  # the `size` value as written in the file (int or dict), for saving

    @staticmethod
    def from_dict(d: Dict[str, Any]) -> "ImageProcessorConfig":
        c = _pick(ImageProcessorConfig, {k: v for k, v in d.items() if k not in ("size", "raw_size")})
        size = d.get("size", {"height": 224, "width": 224})
        c.raw_size = size
        if isinstance(size, int):  # old form: one int, a square
            c.size = {"height": size, "width": size}
        elif "height" in size and "width" in size:
            c.size = {"height": int(size["height"]), "width": int(size["width"])}
        else:
            raise ValueError(f"preprocessor size {size!r}: only an int or {{height, width}} is supported")
        for key in ("image_mean", "image_std"):
            v = getattr(c, key)
            if not isinstance(v, list):
                setattr(c, key, [float(v)] * 3)
        return c

    def to_dict(self) -> Dict[str, Any]:
        return {
            "do_normalize": self.do_normalize,
            "do_rescale": self.do_rescale,
            "do_resize": self.do_resize,
            "image_mean": list(self.image_mean),
            "image_processor_type": "ViTImageProcessor",
            "image_std": list(self.image_std),
            "resample": self.resample,
            "rescale_factor": self.rescale_factor,
            "size": self.raw_size if self.raw_size is not None else dict(self.size),
        }


@dataclass
class GenerationConfig:
    """ref: transformers GenerationConfig, the fields greedy and beam search read."""
    max_length: int = 20
    max_new_tokens: Optional[int] = None
    min_length: int = 0
    min_new_tokens: Optional[int] = None
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: Union[bool, str] = False
    no_repeat_ngram_size: int = 0
    repetition_penalty: float = 1.0
    num_return_sequences: int = 1
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[Union[int, List[int]]] = None
    pad_token_id: Optional[int] = None
    decoder_start_token_id: Optional[int] = None

    @staticmethod
    def from_dict(d: Dict[str, Any]) -> "GenerationConfig":
        return _pick(GenerationConfig, d)

    def to_dict(self, only_non_default: bool = True) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        if only_non_default:
            ref = dataclasses.asdict(GenerationConfig())
            d = {k: v for k, v in d.items() if v != ref[k]}
        return d

    def eos_ids(self) -> List[int]:
        if self.eos_token_id is None:
            return []
        return [self.eos_token_id] if isinstance(self.eos_token_id, int) else list(self.eos_token_id)


@dataclass
class VisionEncoderDecoderConfig:
    encoder: ViTConfig
    decoder: GPT2Config
    decoder_start_token_id: Optional[int] = None
    pad_token_id: Optional[int] = None
    eos_token_id: Optional[int] = None
    bos_token_id: Optional[int] = None
    tie_word_embeddings: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)  # other top-level keys, kept for saving

    @property
    def has_enc_to_dec_proj(self) -> bool:
        """ref: VisionEncoderDecoderModel.__init__: a Linear when hidden sizes differ and the decoder
        has no cross_attention_hidden_size."""
        return (self.encoder.hidden_size != self.decoder.n_embd
                and self.decoder.cross_attention_hidden_size is None)

    @staticmethod
    def from_dict(d: Dict[str, Any]) -> "VisionEncoderDecoderConfig":
        if d.get("model_type") != "vision-encoder-decoder":
            raise ValueError(f"config model_type {d.get('model_type')!r}, expected 'vision-encoder-decoder'")
        enc, dec = d["encoder"], d["decoder"]
        if enc.get("model_type") != "vit" or dec.get("model_type") != "gpt2":
            raise ValueError(f"sub-configs {enc.get('model_type')!r}/{dec.get('model_type')!r}, expected vit/gpt2")
        known = {"encoder", "decoder", "decoder_start_token_id", "pad_token_id", "eos_token_id",
                 "bos_token_id", "tie_word_embeddings"}
        return VisionEncoderDecoderConfig(
            encoder=_pick(ViTConfig, enc), decoder=_pick(GPT2Config, dec),
            decoder_start_token_id=d.get("decoder_start_token_id"),
            pad_token_id=d.get("pad_token_id"), eos_token_id=d.get("eos_token_id"),
            bos_token_id=d.get("bos_token_id"),
            tie_word_embeddings=d.get("tie_word_embeddings", False),
            extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> Dict[str, Any]:
        d = {
            "architectures": ["VisionEncoderDecoderModel"],
            "model_type": "vision-encoder-decoder",
            "is_encoder_decoder": True,
            "tie_word_embeddings": self.tie_word_embeddings,
            "decoder_start_token_id": self.decoder_start_token_id,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_token_id,
            "bos_token_id": self.bos_token_id,
            "encoder": self.encoder.to_dict(),
            "decoder": self.decoder.to_dict(),
            # the compute dtype; transformers >= 5 loads "auto" from here, so a BF16 checkpoint
            # still runs in float32
            "torch_dtype": "float32",
        }
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d


def read_json(path: Path) -> Dict[str, Any]:
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def resolve_generation_config(folder: Path, model_config: VisionEncoderDecoderConfig) -> GenerationConfig:
    """generation_config.json when present; otherwise HF's GenerationConfig.from_model_config:
    generation keys of the top-level config.json, then the decoder sub-config for what is unset."""
    path = Path(folder) / "generation_config.json"
    if path.exists():
        return GenerationConfig.from_dict(read_json(path))
    top = read_json(Path(folder) / "config.json")
    merged: Dict[str, Any] = {}
    for src in (top.get("decoder", {}), top):  # top level wins
        for k, v in src.items():
            if v is not None and k in {f.name for f in dataclasses.fields(GenerationConfig)}:
                merged[k] = v
    return GenerationConfig.from_dict(merged)
