#!/usr/bin/python3
"""Runs the Florence-2 PyTorch reference (tools/xcaption_ref/florence2.py) on one image, for
comparing a port by hand: prints the prompt ids, the generated ids, the decoded text
(skip_special_tokens=False) and post_process_generation's result as one JSON object.

usage: LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread /usr/bin/python3 tools/florence2_ref_run.py
       FOLDER IMAGE [--task "<CAPTION>"] [--text "input for tasks that take one"] [--beams N]
       [--max-new-tokens N] [--flavor remote|native (default: the folder's layout)]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xcaption_ref import florence2 as fl2  # noqa: E402
from xcaption_ref.preprocess import load_image, preprocess  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("image", type=Path)
    ap.add_argument("--task", default="<CAPTION>")
    ap.add_argument("--text", default="")
    ap.add_argument("--beams", type=int)
    ap.add_argument("--max-new-tokens", type=int)
    ap.add_argument("--flavor", choices=["remote", "native"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    b = fl2.load_pretrained(args.folder)
    flavor = args.flavor or b.config.layout
    image = load_image(args.image)
    pv = torch.from_numpy(preprocess(image, b.preprocessor)[0])[None]
    ids = fl2.prompt_ids(b.tokenizer, args.task + args.text, flavor)
    run = fl2.prepare(b.model, pv, ids)
    params = {}
    if args.beams is not None:
        params["num_beams"] = args.beams
    if args.max_new_tokens is not None:
        params["max_new_tokens"] = args.max_new_tokens
    res = fl2.generate(b.model, run, **params)
    text = b.tokenizer.decode(res.sequence, skip_special_tokens=False)
    print(json.dumps({"prompt_ids": ids, "sequence": res.sequence, "text": text,
                      "score": res.score, "resolved": res.resolved.to_dict(),
                      "result": fl2.post_process_generation(text, args.task, image.size, flavor)},
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
