"""Writes Florence-2 model folders for tests and benchmarks: config.json in the hub remote-code
layout (microsoft/Florence-2-*) or the transformers-native layout (florence-community/Florence-2-*),
preprocessor / generation configs, a BART byte-level BPE tokenizer, and the weights
(pytorch_model.bin fp16 written with torch.save, or model.safetensors).

File sets (what the real folders hold; code files of the remote layout are not reproduced):
  remote  config.json, generation_config.json, preprocessor_config.json, pytorch_model.bin,
          tokenizer.json, tokenizer_config.json, vocab.json. The tokenizer files are BART's
          (<s> 0, <pad> 1, </s> 2, <unk> 3, ..., <mask> last): the 1024 Florence tokens are not in
          them; Florence2Processor adds them at load time (ids 50265.. in the real model).
  native  config.json, generation_config.json, model.safetensors, preprocessor_config.json,
          processor_config.json, special_tokens_map.json, tokenizer.json, tokenizer_config.json,
          vocab.json, merges.txt: the Florence tokens and `<image>` are in the tokenizer files.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from . import safetensors_io
from .florence2 import FLORENCE_ADDED_TOKENS, PHRASE_GROUNDING_BLACKLIST

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
MASK = "<mask>"
IMAGE_TOKEN = "<image>"
TRANSFORMERS_VERSION_REMOTE = "4.41.0.dev0"
TRANSFORMERS_VERSION_NATIVE = "4.56.0.dev0"


def write_json(path: Path, obj, indent=2) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


# --------------------------------------------------------------------------------------------
# tokenizer

def bart_vocab(byte_vocab: Dict[str, int], extra_tokens: Sequence[str] = ()) -> Dict[str, int]:
    """BART's id order: the four specials, the byte-level tokens, `<mask>` last."""
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for tok, _ in sorted(byte_vocab.items(), key=lambda kv: kv[1]):
        vocab.setdefault(tok, len(vocab))
    for tok in extra_tokens:
        vocab.setdefault(tok, len(vocab))
    vocab[MASK] = len(vocab)
    return vocab


def _added(content: str, id_: int, normalized: bool, lstrip: bool = False) -> dict:
    return {"id": id_, "content": content, "single_word": False, "lstrip": lstrip, "rstrip": False,
            "normalized": normalized, "special": True}


def tokenizer_json(vocab: Dict[str, int], merges: Sequence[Tuple[str, str]], extra_added: Sequence[dict]) -> dict:
    """tokenizer.json as tokenizers saves BartTokenizerFast (facebook/bart-large's pipeline)."""
    added = [_added(s, vocab[s], True) for s in SPECIALS] + [_added(MASK, vocab[MASK], True, lstrip=True)]
    added += list(extra_added)
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
                           "trim_offsets": True, "add_prefix_space": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }


def write_tokenizer(folder: Path, layout: str, vocab: Dict[str, int], merges) -> int:
    """Returns the number of tokens the processor sees (remote: after its additions)."""
    base = len(vocab)
    if layout == "remote":
        tj = tokenizer_json(vocab, merges, [])
        write_json(folder / "tokenizer.json", tj, indent=None)
        write_json(folder / "vocab.json", vocab, indent=None)
        write_json(folder / "tokenizer_config.json", {"model_max_length": 1024})
        return base + len(FLORENCE_ADDED_TOKENS)
    extra = [_added(t, base + i, False) for i, t in enumerate(FLORENCE_ADDED_TOKENS)]
    image_id = base + len(FLORENCE_ADDED_TOKENS)
    extra.append(_added(IMAGE_TOKEN, image_id, False))
    tj = tokenizer_json(vocab, merges, extra)
    write_json(folder / "tokenizer.json", tj, indent=None)
    write_json(folder / "vocab.json", vocab, indent=None)
    with open(folder / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    decoder = {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
               for a in tj["added_tokens"]}
    write_json(folder / "tokenizer_config.json", {
        "add_prefix_space": False, "added_tokens_decoder": decoder,
        "additional_special_tokens": list(FLORENCE_ADDED_TOKENS),
        "bos_token": "<s>", "clean_up_tokenization_spaces": False, "cls_token": "<s>", "eos_token": "</s>",
        "errors": "replace", "extra_special_tokens": {"image_token": IMAGE_TOKEN}, "image_token": IMAGE_TOKEN,
        "mask_token": MASK, "model_max_length": 1024, "pad_token": "<pad>", "processor_class": "Florence2Processor",
        "sep_token": "</s>", "tokenizer_class": "BartTokenizer", "trim_offsets": True, "unk_token": "<unk>"}, indent=None)
    write_json(folder / "special_tokens_map.json", {
        "additional_special_tokens": list(FLORENCE_ADDED_TOKENS), "bos_token": "<s>", "cls_token": "<s>",
        "eos_token": "</s>", "image_token": IMAGE_TOKEN, "mask_token": MASK, "pad_token": "<pad>",
        "sep_token": "</s>", "unk_token": "<unk>"}, indent=None)
    return image_id + 1


# --------------------------------------------------------------------------------------------
# configs

def remote_config(v: dict, t: dict, vocab_size: int) -> dict:
    """v: dims/depths/heads/window/projection/max_pos/max_temporal; t: BART sizes."""
    text = {
        "vocab_size": vocab_size, "activation_dropout": 0.1, "activation_function": "gelu",
        "add_bias_logits": False, "add_final_layer_norm": False, "attention_dropout": 0.1, "bos_token_id": 0,
        "classif_dropout": 0.1, "classifier_dropout": 0.0, "d_model": t["d_model"],
        "decoder_attention_heads": t["heads"], "decoder_ffn_dim": t["ffn"], "decoder_layerdrop": 0.0,
        "decoder_layers": t["decoder_layers"], "decoder_start_token_id": 2, "dropout": 0.1, "early_stopping": True,
        "encoder_attention_heads": t["heads"], "encoder_ffn_dim": t["ffn"], "encoder_layerdrop": 0.0,
        "encoder_layers": t["encoder_layers"], "eos_token_id": 2, "forced_eos_token_id": 2, "forced_bos_token_id": 0,
        "gradient_checkpointing": False, "init_std": 0.02, "is_encoder_decoder": True,
        "label2id": {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}, "id2label": {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"},
        "max_position_embeddings": t["max_position_embeddings"], "no_repeat_ngram_size": 3, "normalize_before": False,
        "num_hidden_layers": t["encoder_layers"], "pad_token_id": 1, "scale_embedding": False, "num_beams": 3,
    }
    vision = {
        "model_type": "davit", "drop_path_rate": 0.1, "patch_size": [7, 3, 3, 3], "patch_stride": [4, 2, 2, 2],
        "patch_padding": [3, 1, 1, 1], "patch_prenorm": [False, True, True, True], "enable_checkpoint": False,
        "dim_embed": v["dims"], "num_heads": v["heads"], "num_groups": v["groups"], "depths": v["depths"],
        "window_size": v["window"], "projection_dim": v["projection_dim"],
        "visual_temporal_embedding": {"type": "COSINE", "max_temporal_embeddings": v["max_temporal"]},
        "image_pos_embed": {"type": "learned_abs_2d", "max_pos_embeddings": v["max_pos"]},
        "image_feature_source": ["spatial_avg_pool", "temporal_avg_pool"],
    }
    return {
        "_name_or_path": "florence2", "architectures": ["Florence2ForConditionalGeneration"],
        "auto_map": {"AutoConfig": "configuration_florence2.Florence2Config",
                     "AutoModelForCausalLM": "modeling_florence2.Florence2ForConditionalGeneration"},
        "bos_token_id": 0, "eos_token_id": 2, "ignore_index": -100, "model_type": "florence2", "pad_token_id": 1,
        "projection_dim": v["projection_dim"], "text_config": text, "vision_config": vision,
        "vocab_size": vocab_size, "torch_dtype": "float16", "transformers_version": TRANSFORMERS_VERSION_REMOTE,
        "is_encoder_decoder": True,
    }


def native_config(remote: dict, vocab_size: int, image_token_id: int) -> dict:
    """ref: convert_florence2_original_pytorch_to_hf.py convert_config + Florence2Config."""
    rv, rt = remote["vision_config"], dict(remote["text_config"])
    vision = {
        "model_type": "florence_vision", "in_channels": 3, "depths": rv["depths"], "patch_size": rv["patch_size"],
        "patch_stride": rv["patch_stride"], "patch_padding": rv["patch_padding"], "patch_prenorm": rv["patch_prenorm"],
        "embed_dim": rv["dim_embed"], "num_heads": rv["num_heads"], "num_groups": rv["num_groups"],
        "window_size": rv["window_size"], "drop_path_rate": rv["drop_path_rate"], "mlp_ratio": 4.0, "qkv_bias": True,
        "activation_function": "gelu", "projection_dim": rv["projection_dim"],
        "max_temporal_embeddings": rv["visual_temporal_embedding"]["max_temporal_embeddings"],
        "max_position_embeddings": rv["image_pos_embed"]["max_pos_embeddings"], "initializer_range": 0.02,
    }
    rt.pop("label2id", None)
    rt.pop("id2label", None)
    rt.update({"model_type": "bart", "vocab_size": vocab_size})
    return {"architectures": ["Florence2ForConditionalGeneration"], "model_type": "florence2",
            "image_token_id": image_token_id, "is_encoder_decoder": True, "text_config": rt,
            "vision_config": vision, "torch_dtype": "float32", "transformers_version": TRANSFORMERS_VERSION_NATIVE}


def generation_config(layout: str) -> dict:
    """The hub file (remote: written by save_pretrained from the BART text_config keys; not read
    by the language model's generate, see florence2.py) and the native equivalent."""
    g = {"bos_token_id": 0, "decoder_start_token_id": 2, "early_stopping": True, "eos_token_id": 2,
         "forced_bos_token_id": 0, "forced_eos_token_id": 2, "no_repeat_ngram_size": 3, "num_beams": 3,
         "pad_token_id": 1}
    g["transformers_version"] = TRANSFORMERS_VERSION_REMOTE if layout == "remote" else TRANSFORMERS_VERSION_NATIVE
    if layout == "remote":
        g["_from_model_config"] = True
    return g


def preprocessor_config(layout: str, size: int, image_seq_length: int) -> dict:
    d = {"do_center_crop": False, "do_convert_rgb": None, "do_normalize": True, "do_rescale": True, "do_resize": True,
         "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "CLIPImageProcessor",
         "image_seq_length": image_seq_length, "image_std": [0.229, 0.224, 0.225], "processor_class": "Florence2Processor",
         "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"height": size, "width": size},
         "crop_size": {"height": size, "width": size}}
    if layout == "remote":
        d["auto_map"] = {"AutoProcessor": "processing_florence2.Florence2Processor"}
    return d


def processor_config() -> dict:
    """native processor_config.json: the post-processor rules (ref: Florence2PostProcessor reads
    post_processor_config[task]; banned_grounding_tokens for phrase grounding)."""
    tasks = ["ocr", "phrase_grounding", "pure_text", "description_with_bboxes", "description_with_polygons",
             "polygons", "bboxes", "description_with_bboxes_or_polygons"]
    cfg = {t: {} for t in tasks}
    cfg["ocr"] = {"AREA_THRESHOLD": 0.0,
                  "PATTERN": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>"}
    cfg["phrase_grounding"] = {"FILTER_BY_BLACK_LIST": True, "banned_grounding_tokens": sorted(PHRASE_GROUNDING_BLACKLIST)}
    return {"num_additional_image_tokens": 0, "post_processor_config": cfg, "processor_class": "Florence2Processor"}


# --------------------------------------------------------------------------------------------
# weights

def save_remote_bin(path: Path, tensors: Dict[str, np.ndarray], shared_name: str, tied: Sequence[str]) -> None:
    """torch.save of an fp16 state dict; the tied embedding copies share one storage, as
    save_pretrained's .bin files hold them."""
    sd = collections.OrderedDict()
    for k, v in tensors.items():
        sd[k] = torch.from_numpy(np.ascontiguousarray(v)).to(torch.float16)
    for name in tied:
        sd[name] = sd[shared_name]
    torch.save(sd, path)


def save_native(path: Path, tensors: Dict[str, np.ndarray]) -> None:
    safetensors_io.save(path, tensors, {k: "F32" for k in tensors}, metadata={"format": "pt"})
