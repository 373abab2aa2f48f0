#!/usr/bin/python3
"""Writes a random-weight BlipForConditionalGeneration folder with the real shapes of
Salesforce/blip-image-captioning-base (--size base) or -large (--size large), in the hub layout,
for checks against the reference at real scale and for benchmarks; the folder is never committed.

  vision  384x384, patch 16 (576 patches + CLS = 577 tokens); base 768 wide, 12 layers, 12 heads,
          MLP 3072; large 1024 wide, 24 layers, 16 heads, MLP 4096; layer_norm_eps 1e-5
  text    BERT decoder 768 wide, 12 layers, 12 heads, FFN 3072, max_position_embeddings 512,
          vocab 30524 (30522 WordPiece entries + [DEC] 30522 = bos + [ENC] 30523), eps 1e-12;
          cross-attention key/value read the vision width (encoder_hidden_size 768 / 1024)
  ids     [PAD] 0 = pad, [UNK] 100, [CLS] 101, [SEP] 102 = sep (what generate() stops at),
          [MASK] 103, text_config eos_token_id 2 (unused by BLIP's generate)

config.json carries the keys of the hub files (PretrainedConfig's generation keys included:
max_length 20, num_beams 1, ...); preprocessor_config.json is what BlipImageProcessor saves
(384x384, bicubic, 1/255, OpenAI CLIP mean/std); model.safetensors holds HF's tensor names, the
LM head weight stored equal to the word embeddings and its bias as `cls.predictions.bias` (as the
Salesforce checkpoints store them) and the I64 buffer `text_decoder.bert.embeddings.position_ids`.

The real bert-base-uncased vocabulary cannot be downloaded here, so the tokenizer is synthetic
and of the right size, in bert-base-uncased's layout: [PAD] 0, [unused0..98] 1-99, [UNK] 100,
[CLS] 101, [SEP] 102, [MASK] 103, [unused99..] up to 998, then the printable ASCII characters and
their `##` continuations, a few hundred real caption words (so "a picture of" tokenizes to three
words), and made-up syllable words and `##` pieces to 30522 entries. Captions are gibberish;
the computation is the real one.

Weights: N(0, 0.02) linear weights (the vision tower's residual projections scaled by
1/sqrt(2 * layers): it is pre-norm), N(0, 0.02) embeddings, biases zero, layer norms identity,
so activations stay in a sane range and attention is far from one-hot. The LM head's LayerNorm
gain (--head-gain, default 8) spreads the logits (std about 4.4: the chosen tokens' log-probs
come out near -1, as a trained captioner's do, and the best two logits rarely nearly tie). The
head bias keeps specials and [unused] entries out of captions (-10); the [SEP] row of the head is
shrunk and its bias set to --sep-bias (default 16.5, about the best other logit), so [SEP]
competes at every step: captions run from 1 to the full 20 new tokens, varying with image,
prompt and search (benchmarks pass min_new_tokens anyway).

usage: /usr/bin/python3 tools/make_random_blip.py OUT_DIR [--size base|large] [--dtype F32|F16|BF16]
       [--seed N] [--head-gain X] [--sep-bias X]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xcaption_ref import safetensors_io  # noqa: E402
from xcaption_ref.bert_files import write_tokenizer_files  # noqa: E402
from xcaption_ref.blip import blip_image_processor, blip_image_processor_dict  # noqa: E402

SIZES = {  # vision tower of Salesforce/blip-image-captioning-{base,large}
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}
TEXT = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
IMAGE, PATCH, CHANNELS = 384, 16, 3
WORDPIECE_SIZE = 30522
VOCAB = WORDPIECE_SIZE + 2
PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
DEC, ENC = WORDPIECE_SIZE, WORDPIECE_SIZE + 1
POSITIONS = 512
TRANSFORMERS_VERSION = "4.26.0.dev0"  # what the Salesforce config.json files record

# Words of ordinary captions; "a picture of" / "a photography of" (BLIP's model-card prompts) among them.
WORDS = """
a an the of in on with and is are at near to by from for its his her their it this that there
two three four five several many some one man men woman women boy girl child children baby
person people group couple family player players crowd dog dogs cat cats bird birds horse horses
cow cows sheep elephant elephants giraffe giraffes zebra zebras bear bears car cars bus buses truck
trucks train trains boat boats plane airplane bike bicycle motorcycle street road city building
buildings house tree trees field grass beach water ocean sea lake river sky snow mountain mountains
hill park forest table plate food pizza sandwich cake bowl cup glass bottle chair bench bed couch
room kitchen bathroom toilet sink window door wall floor sign clock phone laptop computer screen
television book books umbrella kite ball frisbee surfboard skateboard skis racket bat glove hat
shirt jacket dress red blue green white black yellow brown orange pink purple gray grey small
large big little old young tall long short sitting standing riding flying holding eating playing
walking running looking lying laying parked walks rides top front back side next middle close up
down over under behind inside outside background view picture photo photography image painting
drawing close-up black-and-white day night sunny cloudy snowy wooden metal stone empty full
filled covered busy open closed together around along across into onto while other each very
""".split()


def config(size: str) -> dict:
    """config.json with the keys of the Salesforce hub files (PretrainedConfig's serialised
    attributes included; the generation keys among them are read by the text decoder's
    GenerationConfig.from_model_config)."""
    v = SIZES[size]

    def pretrained_keys(**own):
        common = {
            "_name_or_path": "", "add_cross_attention": False, "architectures": None,
            "bad_words_ids": None, "begin_suppress_tokens": None, "bos_token_id": None,
            "chunk_size_feed_forward": 0, "cross_attention_hidden_size": None,
            "decoder_start_token_id": None, "diversity_penalty": 0.0, "do_sample": False,
            "early_stopping": False, "encoder_no_repeat_ngram_size": 0, "eos_token_id": None,
            "exponential_decay_length_penalty": None, "finetuning_task": None,
            "forced_bos_token_id": None, "forced_eos_token_id": None,
            "id2label": {"0": "LABEL_0", "1": "LABEL_1"}, "initializer_factor": 1.0,
            "is_decoder": False, "is_encoder_decoder": False, "label2id": {"LABEL_0": 0, "LABEL_1": 1},
            "length_penalty": 1.0, "max_length": 20, "min_length": 0, "no_repeat_ngram_size": 0,
            "num_beam_groups": 1, "num_beams": 1, "num_return_sequences": 1, "output_attentions": False,
            "output_hidden_states": False, "output_scores": False, "pad_token_id": None, "prefix": None,
            "problem_type": None, "pruned_heads": {}, "remove_invalid_values": False,
            "repetition_penalty": 1.0, "return_dict": True, "return_dict_in_generate": False,
            "sep_token_id": None, "suppress_tokens": None, "task_specific_params": None,
            "temperature": 1.0, "tf_legacy_loss": False, "tie_encoder_decoder": False,
            "tie_word_embeddings": True, "tokenizer_class": None, "top_k": 50, "top_p": 1.0,
            "torch_dtype": None, "torchscript": False, "transformers_version": TRANSFORMERS_VERSION,
            "typical_p": 1.0, "use_bfloat16": False,
        }
        common.update(own)
        return dict(sorted(common.items()))

    text = pretrained_keys(
        attention_probs_dropout_prob=0.0, bos_token_id=DEC, encoder_hidden_size=v["hidden_size"],
        eos_token_id=2, hidden_act="gelu", hidden_dropout_prob=0.0, initializer_range=0.02,
        is_decoder=True, layer_norm_eps=1e-12, max_position_embeddings=POSITIONS,
        model_type="blip_text_model", pad_token_id=PAD, projection_dim=768, sep_token_id=SEP,
        use_cache=True, vocab_size=VOCAB, **TEXT)
    vision = pretrained_keys(
        attention_dropout=0.0, dropout=0.0, hidden_act="gelu", image_size=IMAGE, initializer_range=0.02,
        layer_norm_eps=1e-5, model_type="blip_vision_model", num_channels=CHANNELS, patch_size=PATCH,
        projection_dim=512, **v)
    return {
        "_commit_hash": None, "architectures": ["BlipForConditionalGeneration"],
        "image_text_hidden_size": 256, "initializer_factor": 1.0, "logit_scale_init_value": 2.6592,
        "model_type": "blip", "projection_dim": 512, "text_config": text, "torch_dtype": "float32",
        "transformers_version": None, "vision_config": vision,
    }


def vocabulary() -> list:
    """30522 WordPiece entries in bert-base-uncased's layout (see the module docstring)."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"[unused{i}]" for i in range(99, 99 + 999 - len(vocab))]
    assert len(vocab) == 999 and vocab[UNK] == "[UNK]" and vocab[SEP] == "[SEP]" and vocab[MASK] == "[MASK]"
    chars = [chr(c) for c in range(0x21, 0x7F) if not chr(c).isupper()]
    vocab += chars + ["##" + c for c in chars]
    seen = set(vocab)
    for w in WORDS:
        for piece in w.split("-"):  # "close-up" is three pre-tokens: close - up
            if piece and piece not in seen:
                seen.add(piece)
                vocab.append(piece)
    # made-up words (consonant-vowel syllables) and continuation pieces, 4 : 1
    onsets = [""] + list("bcdfghjklmnprstvwz") + ["ch", "sh", "th", "st", "tr", "pl", "gr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
    codas = ["", "n", "r", "s", "t", "l", "m", "nd", "ng", "st"]
    syllables = [o + v + c for o in onsets for v in vowels for c in codas]
    filler = (a + b for a, b in itertools.product(syllables, repeat=2))
    k = 0
    for w in filler:
        if len(vocab) == WORDPIECE_SIZE:
            break
        cand = ("##" + w) if k % 5 == 4 else w
        k += 1
        if cand not in seen:
            seen.add(cand)
            vocab.append(cand)
    assert len(vocab) == WORDPIECE_SIZE, len(vocab)
    return vocab


def tensors(size: str, seed: int, head_gain: float, sep_bias: float) -> dict:
    v = SIZES[size]
    dv, dt = v["hidden_size"], TEXT["hidden_size"]
    rng = np.random.default_rng(seed)
    out = {}

    def normal(name, shape, std=0.02):
        out[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    def zeros(name, shape):
        out[name] = np.zeros(shape, np.float32)

    def layer_norm(name, d):
        out[name + ".weight"] = np.ones(d, np.float32)
        zeros(name + ".bias", (d,))

    def linear(name, n_out, n_in, std=0.02):  # nn.Linear: (out, in)
        normal(name + ".weight", (n_out, n_in), std)
        zeros(name + ".bias", (n_out,))

    grid = IMAGE // PATCH
    e = "vision_model.embeddings."
    normal(e + "class_embedding", (1, 1, dv))
    normal(e + "position_embedding", (1, 1 + grid * grid, dv))
    normal(e + "patch_embedding.weight", (dv, CHANNELS, PATCH, PATCH))
    zeros(e + "patch_embedding.bias", (dv,))
    resid = 0.02 / np.sqrt(2 * v["num_hidden_layers"])
    for i in range(v["num_hidden_layers"]):
        n = f"vision_model.encoder.layers.{i}."
        linear(n + "self_attn.qkv", 3 * dv, dv)
        linear(n + "self_attn.projection", dv, dv, resid)
        linear(n + "mlp.fc1", v["intermediate_size"], dv)
        linear(n + "mlp.fc2", dv, v["intermediate_size"], resid)
        layer_norm(n + "layer_norm1", dv)
        layer_norm(n + "layer_norm2", dv)
    layer_norm("vision_model.post_layernorm", dv)

    b = "text_decoder.bert."
    normal(b + "embeddings.word_embeddings.weight", (VOCAB, dt))
    normal(b + "embeddings.position_embeddings.weight", (POSITIONS, dt), 0.01)
    layer_norm(b + "embeddings.LayerNorm", dt)
    for i in range(TEXT["num_hidden_layers"]):
        n = f"{b}encoder.layer.{i}."
        for att, kv_in in (("attention", dt), ("crossattention", dv)):
            linear(n + f"{att}.self.query", dt, dt)
            linear(n + f"{att}.self.key", dt, kv_in)
            linear(n + f"{att}.self.value", dt, kv_in)
            linear(n + f"{att}.output.dense", dt, dt)
            layer_norm(n + f"{att}.output.LayerNorm", dt)
        linear(n + "intermediate.dense", TEXT["intermediate_size"], dt)
        linear(n + "output.dense", dt, TEXT["intermediate_size"])
        layer_norm(n + "output.LayerNorm", dt)
    h = "text_decoder.cls.predictions."
    linear(h + "transform.dense", dt, dt)
    layer_norm(h + "transform.LayerNorm", dt)
    out[h + "transform.LayerNorm.weight"] *= np.float32(head_gain)  # logits std ~0.55 x gain
    word = out[b + "embeddings.word_embeddings.weight"]
    word[SEP] *= np.float32(0.05)  # [SEP]'s logit ~ its bias: a steady chance to stop
    out[h + "decoder.weight"] = word.copy()  # stored, equal to the embeddings (tied)
    bias = np.zeros(VOCAB, np.float32)
    bias[: 999] = -10.0  # [PAD], [unused*], [UNK], [CLS], [MASK]
    bias[[DEC, ENC]] = -10.0
    bias[SEP] = sep_bias
    out[h + "bias"] = bias
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", choices=tuple(SIZES), default="base")
    ap.add_argument("--dtype", choices=("F32", "F16", "BF16"), default="F32", help="stored weight dtype")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head-gain", type=float, default=8.0,
                    help="gain of the LM head's LayerNorm: the logits' spread (std about 0.55 x gain)")
    ap.add_argument("--sep-bias", type=float, default=16.5,
                    help="head bias of [SEP]: higher stops captions sooner")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "config.json").write_text(json.dumps(config(a.size), indent=2) + "\n")
    pre = blip_image_processor_dict(blip_image_processor(None))
    (a.out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2, sort_keys=True) + "\n")
    write_tokenizer_files(a.out, vocabulary(), ["[DEC]", "[ENC]"], bos="[DEC]", additional=["[ENC]"],
                          model_max_length=POSITIONS)
    ts = tensors(a.size, a.seed, a.head_gain, a.sep_bias)
    n = sum(t.size for t in ts.values()) - ts["text_decoder.cls.predictions.decoder.weight"].size
    ts["text_decoder.bert.embeddings.position_ids"] = np.arange(POSITIONS, dtype=np.int64)[None]
    safetensors_io.save(a.out / "model.safetensors", ts, default_dtype=a.dtype, metadata={"format": "pt"})
    print(f"{a.out}: BLIP {a.size}, {n / 1e6:.1f} M parameters ({a.dtype}; LM head tied), vocab {VOCAB}")


if __name__ == "__main__":
    main()
