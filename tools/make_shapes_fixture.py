#!/usr/bin/python3
"""Parity fixture for the shipped shapes-world model: what the training code's own forward pass
(tools/xcaption_ref/modeling.py, the modules tools/train_shapes.py trains) computes on the exported
folder, for the C++ test tests/golden/test_shapes_model.cpp.

Run:  /usr/bin/python3 tools/make_shapes_fixture.py  [--model models/shapes-small]
      [--out tests/data/shapes-small-parity.json] [IMAGES...]   (default: 3 of samples/data/*.png)

The weights are read back from model.safetensors (F16 storage widened to float32), images go
through preprocess.py (PIL bilinear resize), everything runs in float32 on one thread.

Layout of the JSON file:
{
  "format": "xcaption-shapes-parity-1",
  "model": "models/shapes-small", "weights_dtype": "F16", "vocab_size": V,
  "decoder_start_token_id": 1, "eos_token_id": 2, "grid": [rows, cols],
  "images": {
    "<path relative to the repo>": {
      "first_step_logits": [V floats]: logits after the decoder start token, computed by the
                           teacher-forcing forward(pixel_values, decoder_input_ids=[[start]]),
      "token_ids": greedy ids after the start token (eos included),
      "caption": decoded text (special tokens skipped, "circle , a" cleaned up to "circle, a"),
      "token_logits": raw logit of each chosen token,
      "token_logprobs": log_softmax(raw logits)[token] per step,
      "teacher_forced_logits": (steps, V) rows: the full-sequence forward on
                           [start] + token_ids[:-1] (equals the cached greedy steps),
      "attention_argmax": per step, the argmax patch index (row-major, CLS excluded) of the
                           cross-attention averaged over heads and decoder layers,
      "attention_margin": per step, the gap between the largest and second largest value of
                           that map (a test compares the argmax only where the gap is clear)
    }
  }
}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="parity fixture of the shapes-world model")
    p.add_argument("--model", type=Path, default=REPO / "models" / "shapes-small")
    p.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "shapes-small-parity.json")
    p.add_argument("images", nargs="*", type=Path)
    args = p.parse_args(argv)

    import numpy as np
    import torch
    torch.set_num_threads(1)
    from xcaption_ref.generate import generate
    from xcaption_ref.modeling import load_pretrained
    from xcaption_ref.preprocess import load_image, preprocess
    from train_shapes import decode_ids

    images = args.images or sorted((REPO / "samples" / "data").glob("*.png"))[:3]
    if not images:
        raise SystemExit("no images: pass some or create samples/data/*.png first")
    bundle = load_pretrained(args.model)
    model, cfg = bundle.model, bundle.config
    start = cfg.decoder_start_token_id
    grid = cfg.encoder.image_size // cfg.encoder.patch_size
    out = {
        "format": "xcaption-shapes-parity-1",
        "model": str(args.model.resolve().relative_to(REPO)),
        "weights_dtype": sorted(set(bundle.dtypes.values())),
        "vocab_size": cfg.decoder.vocab_size,
        "decoder_start_token_id": start,
        "eos_token_id": cfg.eos_token_id,
        "grid": [grid, grid],
        "images": {},
    }
    with torch.no_grad():
        for path in images:
            pix, _ = preprocess(load_image(path), bundle.preprocessor)
            pix = torch.from_numpy(pix)[None]
            first, _ = model(pix, decoder_input_ids=torch.tensor([[start]]))
            res = generate(model, pix, bundle.generation_config, output_attentions=True)
            ids = res.generated
            tf_logits, _ = model(pix, decoder_input_ids=torch.tensor([[start] + ids[:-1]]))
            tf_logits = tf_logits[0]
            attn = res.cross_attentions[:, :, :, 1:].mean(axis=(1, 2))  # (steps, patches)
            top2 = np.sort(attn, axis=1)[:, -2:]
            out["images"][str(Path(path).resolve().relative_to(REPO))] = {
                "first_step_logits": first[0, 0].tolist(),
                "token_ids": ids,
                "caption": decode_ids(ids),
                "token_logits": [float(tf_logits[i, t]) for i, t in enumerate(ids)],
                "token_logprobs": res.token_logprobs,
                "teacher_forced_logits": tf_logits.tolist(),
                "attention_argmax": [int(a.argmax()) for a in attn],
                "attention_margin": [float(t[1] - t[0]) for t in top2],
            }
            step_err = float(np.abs(res.step_logits - tf_logits.numpy()).max())
            if step_err > 1e-4:
                raise SystemExit(f"{path}: cached greedy logits differ from the full forward by {step_err}")
            print(f"{path}: {decode_ids(ids)!r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
