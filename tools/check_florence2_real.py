#!/usr/bin/python3
"""Florence-2 at real scale against the reference: random-weight folders with the shapes of
microsoft/Florence-2-base (hub remote-code layout, fp16 pytorch_model.bin) and
florence-community/Florence-2-base (native layout, safetensors) from
tools/make_random_florence2.py, run through the CLI (`xcaption caption --json --task T`) and by
the independent PyTorch reference (tools/xcaption_ref/florence2.py), compared case by case.

For each layout, image and task (<CAPTION>, <DETAILED_CAPTION>, <OD>, <OCR_WITH_REGION> by
default), two decodings: the family's effective defaults (beam 3, no_repeat_ngram_size 3, forced
BOS/EOS, early stopping) and greedy (--beams 1), both capped at --max-new-tokens (default 24: the
random weights rarely choose </s>, so the cap decides the length, and the forced EOS at the last
step is exercised). Checked:
  - prompt ids, generated token ids and the decoded text (skip_special_tokens=False) identical;
  - per-token log-probs and sequence_score as exact as PyTorch's float32: the same case is run
    by the reference in float64 too, and xcaption's largest error against it over a layout's
    cases may be at most --ratio (default 2) times the float32 reference's largest. With random
    weights at real scale the logits are large, and both float32 programs drift from float64 by
    up to about 5e-2 on a log-prob of -60; per case either one can be the closer (xcaption's
    error was 0.07x to 2.9x PyTorch's; per layout 1.23x remote, 0.07x native), hence the
    maximum, and an absolute bound between the two float32 runs would say little. --no-f64
    falls back to that bound (--tol, absolute, default 5e-4);
  - the post-processed `result` equal: strings exactly, coordinates within 1e-3 pixels.
On a token mismatch the report names the first differing step.

Cost on 2 cores: about 3 minutes per layout for the reference (float32 and float64) and the CLI, plus
writing the folders once (about 70 s each, 0.9 GB for the remote layout, 0.9 GB native; they
stay in --out for reruns).

usage: LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread /usr/bin/python3 tools/check_florence2_real.py
       [--layouts remote,native] [--tasks "<CAPTION>,<OD>"] [--images A B] [--out out]
       [--xcaption build/xcaption] [--threads 2] [--max-new-tokens 24] [--ratio 2] [--no-f64 [--tol 5e-4]]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from xcaption_ref import florence2 as fl2  # noqa: E402
from xcaption_ref.generate import first_difference  # noqa: E402
from xcaption_ref.preprocess import load_image, preprocess  # noqa: E402

TASKS = ["<CAPTION>", "<DETAILED_CAPTION>", "<OD>", "<OCR_WITH_REGION>"]
MODES = [("beam3-default", None), ("greedy", 1)]


def folder_for(out: Path, layout: str) -> Path:
    folder = out / ("florence2-base-random" if layout == "remote" else "florence2-base-native")
    if not (folder / "config.json").exists():
        print(f"writing {folder} ...", flush=True)
        cmd = [sys.executable, str(ROOT / "tools/make_random_florence2.py"), str(folder), "--layout", layout]
        subprocess.run(cmd, check=True)
    return folder


def close(a, b, tol: float) -> bool:
    """Structural equality of post-processed results: numbers within tol, the rest exact."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) <= tol
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    return a == b


def cli(args, folder: Path, task: str, beams, images) -> list:
    cmd = [str(args.xcaption), "caption", "--model", str(folder), "--task", task, "--json",
           "--threads", str(args.threads), "--max-new-tokens", str(args.max_new_tokens), "--progress", "none"]
    if beams is not None:
        cmd += ["--beams", str(beams)]
    cmd += [str(i) for i in images]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"xcaption failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    if len(rows) != len(images):
        raise SystemExit(f"xcaption printed {len(rows)} results for {len(images)} images")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layouts", default="remote,native")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--images", nargs="+", type=Path,
                    default=[ROOT / "samples/data/scene_000002.png", ROOT / "samples/data/scene_000005.png"])
    ap.add_argument("--out", type=Path, default=ROOT / "out")
    ap.add_argument("--xcaption", type=Path, default=ROOT / "build/xcaption")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--ratio", type=float, default=2.0)
    ap.add_argument("--no-f64", action="store_true")
    ap.add_argument("--tol", type=float, default=5e-4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tasks = [t for t in args.tasks.split(",") if t]
    failures, checked, worst, worst_ratio = 0, 0, 0.0, 0.0

    for layout in args.layouts.split(","):
        folder = folder_for(args.out, layout)
        t0 = time.time()
        b = fl2.load_pretrained(folder)
        flavor = b.config.layout
        if flavor != layout:
            raise SystemExit(f"{folder}: reference reads layout {flavor}, expected {layout}")
        err = {}  # largest errors against float64 over the layout's cases
        models = {"f32": b.model}
        if not args.no_f64:
            models["f64"] = copy.deepcopy(b.model).double()
        images = [load_image(p) for p in args.images]
        feats = []  # per image: {precision: image features}, task-independent
        with torch.no_grad():
            for im in images:
                pv = torch.from_numpy(preprocess(im, b.preprocessor)[0])[None]
                feats.append({k: m.image_features(pv.to(next(m.parameters()).dtype), {}) for k, m in models.items()})
        for task in tasks:
            ids = fl2.prompt_ids(b.tokenizer, task, flavor)
            with torch.no_grad():
                runs = [{k: fl2.Run(f[k], list(ids), models[k].encode(f[k], ids), {}) for k in models} for f in feats]
            for mode, beams in MODES:
                rows = cli(args, folder, task, beams, args.images)
                params = {"max_new_tokens": args.max_new_tokens}
                if beams is not None:
                    params["num_beams"] = beams
                for path, image, run, row in zip(args.images, images, runs, rows):
                    ref = fl2.generate(models["f32"], run["f32"], **params)
                    text = b.tokenizer.decode(ref.sequence, skip_special_tokens=False)
                    result = fl2.post_process_generation(text, task, image.size, flavor)
                    gen = ref.sequence[ref.prompt_len:]
                    name = f"{layout} {path.name} {task} {mode}"
                    problems, note = [], ""
                    if row["prompt_ids"] != [ref.resolved.decoder_start_token_id]:
                        problems.append(f"decoder prompt {row['prompt_ids']}")
                    if row["token_ids"] != gen:
                        step = first_difference(row["token_ids"], gen)
                        problems.append(f"tokens differ from step {step}: xcaption {row['token_ids'][step:step + 4]} "
                                        f"reference {gen[step:step + 4]}")
                    else:
                        if row["text"] != text:
                            problems.append(f"text {row['text']!r} vs {text!r}")
                        if not close(row["result"], result, 1e-3):
                            problems.append(f"result {json.dumps(row['result'])[:200]} vs {json.dumps(result)[:200]}")
                        x = row["logprobs"]
                        d32 = max((abs(a - c) for a, c in zip(x, ref.token_logprobs)), default=0.0)
                        worst = max(worst, d32)
                        if "f64" in run:
                            r64 = fl2.generate(models["f64"], run["f64"], **params)
                            if r64.sequence != ref.sequence:
                                note = " (float64 reference chose other tokens: log-probs not rated)"
                            else:
                                e_x = max(abs(a - c) for a, c in zip(x, r64.token_logprobs))
                                e_t = max(abs(a - c) for a, c in zip(ref.token_logprobs, r64.token_logprobs))
                                s_x, s_t = abs(row["sequence_score"] - r64.score), abs(ref.score - r64.score)
                                for k, v in (("x", e_x), ("t", e_t), ("sx", s_x), ("st", s_t)):
                                    err[k] = max(err.get(k, 0.0), v)
                                note = f", error vs float64 {e_x:.1e} (PyTorch f32 {e_t:.1e})"
                        elif d32 > args.tol:
                            problems.append(f"log-prob differs by {d32:.2e}")
                    checked += 1
                    if problems:
                        failures += 1
                        print(f"FAIL {name}: " + "; ".join(problems), flush=True)
                    else:
                        print(f"ok   {name}: {len(gen)} tokens{note}, {text[:50]!r}", flush=True)
        if err:
            ratio = err["x"] / max(err["t"], 1e-12)
            worst_ratio = max(worst_ratio, ratio)
            print(f"{layout}: largest log-prob error vs float64: xcaption {err['x']:.2e}, PyTorch float32 "
                  f"{err['t']:.2e} (ratio {ratio:.2f}); sequence_score {err['sx']:.2e} vs {err['st']:.2e}")
            if err["x"] > args.ratio * err["t"] + 1e-4 or err["sx"] > args.ratio * err["st"] + 1e-3:
                failures += 1
                print(f"FAIL {layout}: xcaption's float32 error is more than {args.ratio}x PyTorch's", flush=True)
        print(f"{layout}: {time.time() - t0:.0f} s", flush=True)

    print(f"{failures} failures in {checked} cases; largest log-prob difference to PyTorch float32 {worst:.2e}; "
          f"largest ratio of xcaption's to PyTorch float32's error against float64 {worst_ratio:.2f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
