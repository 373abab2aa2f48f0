#!/usr/bin/python3
"""BLIP at real scale against the reference: random-weight folders with the shapes of
Salesforce/blip-image-captioning-base (and -large with --sizes base,large) from
tools/make_random_blip.py, captioned through the CLI (`xcaption caption --json`) and by the
independent PyTorch reference (tools/xcaption_ref/blip.py), compared case by case.

For each size and stored dtype (default F32 and BF16; the BF16 folder holds the F32 weights
rounded, and both programs widen them to float32), on two images, four cases: greedy (the
folder's default settings), beam 3, each with and without --prompt "a picture of". Checked:
  - prompt_ids, generated token ids and token strings identical, the caption text identical
    to the reference tokenizer's decode of prompt + generated ids (skip_special_tokens);
  - per-step log-probs (log-softmax of the raw logits at each chosen token) within --tol
    (absolute, default 2e-4: float32 through 12-24 layers in two different matrix libraries;
    measured differences are about 3e-5), and sequence_score within the same bound carried
    through its formula (greedy: the sum of n log-probs, n x tol; beams: that sum over
    n ** length_penalty).
With --attend-video (on by default for the first size, F32): `xcaption attend --json` on the
same images (24x24 grid, last layer, mean over heads) against the reference's cross-attention
of the greedy caption, and `xcaption video` on samples/data/shapes.mp4 (SubRip, JSON lines,
an annotated copy with the attention overlay) for sane output.

On a token mismatch the report names the first differing step and, for greedy, the reference's
margin between its best and second-best logit there (a near-tie points at rounding, a wide
margin at a bug). Exit status 1 when any check fails.

Cost on 2 shared cores: base about 3 minutes for both dtypes (folder writing included), large
about 10 (hence not in the default); the folders stay in --out for reruns (1.4 GB for base,
2.7 GB for large).

usage: LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread /usr/bin/python3 tools/check_blip_real.py
       [--sizes base[,large]] [--dtypes F32,BF16] [--images A B] [--out out] [--xcaption build/xcaption]
       [--threads 2] [--tol 1e-3] [--no-attend-video]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from xcaption_ref import blip  # noqa: E402
from xcaption_ref import generate as gen_mod  # noqa: E402
from xcaption_ref.preprocess import load_image, preprocess  # noqa: E402

PROMPT = "a picture of"
CASES = [  # (name, extra CLI flags / reference overrides, prompt)
    ("greedy", {}, None),
    ("beam3", {"num_beams": 3}, None),
    ("prompt_greedy", {}, PROMPT),
    ("prompt_beam3", {"num_beams": 3}, PROMPT),
]
DEFAULT_IMAGES = [ROOT / "tests/data/image/src_edges300x200.png", ROOT / "samples/data/scene_000009.png"]
VIDEO = ROOT / "samples/data/shapes.mp4"


def log(msg: str) -> None:
    print(msg, flush=True)


def ensure_folder(out: Path, size: str, dtype: str) -> Path:
    folder = out / f"blip-real-{size}-{dtype.lower()}"
    if not (folder / "model.safetensors").exists():
        log(f"writing {folder} (tools/make_random_blip.py --size {size} --dtype {dtype})")
        subprocess.run([sys.executable, str(ROOT / "tools/make_random_blip.py"), str(folder), "--size", size,
                        "--dtype", dtype], check=True)
    return folder


def run_xcaption(args, sub: str, folder: Path, flags, images) -> subprocess.CompletedProcess:
    cmd = [str(args.xcaption), sub, "--model", str(folder), "--threads", str(args.threads), *flags,
           *[str(i) for i in images]]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr}")
    return r


def xcaption_case(args, folder: Path, params: dict, prompt, images) -> dict:
    flags = ["--json"]
    if "num_beams" in params:
        flags += ["--beams", str(params["num_beams"])]
    if prompt is not None:
        flags += ["--prompt", prompt]
    r = run_xcaption(args, "caption", folder, flags, images)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return {row["image"]: row for row in rows}


class Reference:
    """One folder in the reference: model, tokenizer, and each image's vision states."""

    def __init__(self, folder: Path, images):
        self.bundle = blip.load_pretrained(folder)
        self.cfg = self.bundle.config
        self.enc = {}
        for img in images:
            pv, _ = preprocess(load_image(img), self.bundle.preprocessor)
            self.enc[str(img)] = gen_mod.encode_image(self.bundle.model, torch.from_numpy(pv)[None])

    def run(self, image: str, params: dict, prompt, attentions: bool = False) -> gen_mod.Result:
        tok = self.bundle.tokenizer
        processor_ids = tok.encode(prompt, add_special_tokens=True) if prompt is not None else None
        prompt_ids = blip.decoder_input_ids(self.cfg, processor_ids)
        r = gen_mod.resolve(self.cfg.generation_config(), self.cfg, input_len=len(prompt_ids),
                            max_positions=self.cfg.text_config.max_position_embeddings, **params)
        fn = gen_mod._greedy if r.num_beams == 1 else gen_mod._beam
        with torch.no_grad():
            res = fn(self.bundle.model, self.enc[image], r, attentions, False, True, None, prompt_ids)
        res.resolved = r
        res.prompt_len = len(prompt_ids)
        return res


def margin_at(res: gen_mod.Result, step: int) -> str:
    if res.step_logits is None or step >= len(res.step_logits):
        return ""
    top = np.sort(res.step_logits[step])[-2:]
    return f"; reference margin best - second logit at that step {top[1] - top[0]:.3g}"


def compare_case(label: str, xc: dict, ref: gen_mod.Result, tok, tol: float, stats: dict) -> list:
    errors = []
    want_prompt = ref.sequence[:ref.prompt_len]
    want = ref.generated
    if xc["prompt_ids"] != want_prompt:
        errors.append(f"{label}: prompt_ids {xc['prompt_ids']}, reference {want_prompt}")
    if xc["token_ids"] != want:
        step = gen_mod.first_difference(xc["token_ids"], want)
        errors.append(f"{label}: token ids differ from step {step}: xcaption {xc['token_ids']}, reference "
                      f"{want}{margin_at(ref, step) if ref.mode == 'greedy' else ''}")
        return errors
    table = tok.tok.id_to_token
    if xc["tokens"] != [table[i] for i in want]:
        errors.append(f"{label}: token strings {xc['tokens']} differ from the vocabulary's")
    text = tok.decode(ref.sequence, skip_special_tokens=True)
    if xc["caption"] != text:
        errors.append(f"{label}: caption {xc['caption']!r}, reference {text!r}")
    diff = max(abs(a - b) for a, b in zip(xc["logprobs"], ref.token_logprobs))
    score = ref.score
    n = len(want)
    lp = ref.resolved.length_penalty if ref.mode == "beam" else 0.0
    score_tol = tol * n / n ** lp
    sdiff = abs(xc["sequence_score"] - score) / (n / n ** lp)  # in units of one log-prob
    stats["logprob"] = max(stats.get("logprob", 0.0), diff)
    stats["score"] = max(stats.get("score", 0.0), sdiff)
    if ref.mode == "greedy" and ref.step_logits is not None:
        top = np.sort(ref.step_logits, axis=1)[:, -2:]
        m = float((top[:, 1] - top[:, 0]).min())
        stats["min_margin"] = min(stats.get("min_margin", math.inf), m)
    if not diff <= tol:
        errors.append(f"{label}: log-probs differ by up to {diff:.3g} (tolerance {tol})")
    if not sdiff <= tol:
        errors.append(f"{label}: sequence_score {xc['sequence_score']}, reference {score} (tolerance {score_tol:.3g})")
    return errors


def check_attend(args, folder: Path, ref: Reference, images, stats: dict) -> list:
    errors = []
    r = run_xcaption(args, "attend", folder, ["--json"], images)
    rows = {j["image"]: j for j in (json.loads(line) for line in r.stdout.splitlines() if line.strip())}
    for img in images:
        label = f"attend {Path(img).name}"
        j = rows.get(str(img))
        if j is None:
            errors.append(f"{label}: no output line")
            continue
        res = ref.run(str(img), {}, None, attentions=True)
        if j["grid"] != [24, 24]:
            errors.append(f"{label}: grid {j['grid']}, expected [24, 24]")
            continue
        ids = [t["id"] for t in j["tokens"]]
        if ids != res.generated:
            errors.append(f"{label}: token ids {ids}, reference {res.generated}")
            continue
        text = ref.bundle.tokenizer.decode(res.sequence, skip_special_tokens=True)
        if j["caption"] != text:
            errors.append(f"{label}: caption {j['caption']!r}, reference {text!r}")
        # reference map: last layer, mean over heads, CLS dropped, renormalised (attend's defaults)
        worst = 0.0
        for step, t in enumerate(j["tokens"]):
            m = res.cross_attentions[step, -1].mean(axis=0)[1:].astype(np.float64)
            m = (m / m.sum()).reshape(24, 24)
            got = np.asarray(t["map"], dtype=np.float64)
            if got.shape != (24, 24) or not np.isfinite(got).all() or abs(got.sum() - 1) > 1e-4:
                errors.append(f"{label} step {step}: map shape {got.shape}, sum {got.sum()}")
                break
            worst = max(worst, float(np.abs(got - m).max() / m.max()))
        stats["attend_map_rel"] = max(stats.get("attend_map_rel", 0.0), worst)
        if worst > 1e-3:
            errors.append(f"{label}: attention maps differ by up to {worst:.3g} of the map's peak")
    return errors


def check_video(args, folder: Path, stats: dict) -> list:
    errors = []
    with tempfile.TemporaryDirectory(prefix="blip-video-") as tmp:
        tmp = Path(tmp)
        srt, jsonl, mp4 = tmp / "v.srt", tmp / "v.jsonl", tmp / "v.mp4"
        run_xcaption(args, "video", folder, ["--every", "2", "--srt", str(srt), "--jsonl", str(jsonl), "--annotate",
                                             str(mp4), "--overlay", "attention"], [VIDEO])
        segs = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        stats["video_segments"] = len(segs)
        if not segs:
            return ["video: no segments"]
        last_end = 0.0
        for s in segs:
            if not (isinstance(s["caption"], str) and s["caption"].strip()):
                errors.append(f"video: empty caption in {s}")
            if not (s["start"] >= last_end - 1e-9 and s["end"] > s["start"]):
                errors.append(f"video: segment times out of order: {s}")
            if not (math.isfinite(s["mean_logprob"]) and s["mean_logprob"] <= 0):
                errors.append(f"video: mean_logprob {s['mean_logprob']}")
            last_end = s["end"]
        cues = srt.read_text(encoding="utf-8").count(" --> ")
        if cues != len(segs):
            errors.append(f"video: {cues} SubRip cues for {len(segs)} segments")
        size = mp4.stat().st_size if mp4.exists() else 0
        stats["video_annotated_bytes"] = size
        if size < 10000:
            errors.append(f"video: annotated copy {mp4.name} has {size} bytes")
        stats["video_captions"] = [s["caption"] for s in segs]
    return errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="base", help="comma-separated: base, large")
    ap.add_argument("--dtypes", default="F32,BF16", help="comma-separated stored dtypes: F32, F16, BF16")
    ap.add_argument("--images", nargs="+", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--out", type=Path, default=ROOT / "out")
    ap.add_argument("--xcaption", type=Path, default=ROOT / "build/xcaption")
    ap.add_argument("--threads", type=int, default=2, help="xcaption threads (the reference uses 1)")
    ap.add_argument("--tol", type=float, default=2e-4, help="absolute tolerance on each log-prob")
    ap.add_argument("--no-attend-video", dest="attend_video", action="store_false")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.xcaption.exists():
        raise SystemExit(f"{args.xcaption}: not found (cmake --build build --target xcaption)")
    images = [str(p) for p in args.images]
    failures, summary = [], []
    for si, size in enumerate(args.sizes.split(",")):
        for di, dtype in enumerate(args.dtypes.split(",")):
            t0 = time.perf_counter()
            folder = ensure_folder(args.out, size, dtype)
            ref = Reference(folder, images)
            tok = ref.bundle.tokenizer
            stats, errors, lengths = {}, [], []
            for case, params, prompt in CASES:
                xc = xcaption_case(args, folder, params, prompt, images)
                for img in images:
                    label = f"{size} {dtype} {case} {Path(img).name}"
                    if img not in xc:
                        errors.append(f"{label}: no output line")
                        continue
                    res = ref.run(img, params, prompt)
                    errors += compare_case(label, xc[img], res, tok, args.tol, stats)
                    lengths.append(len(res.generated))
                    log(f"  {label}: {len(res.generated)} tokens, {xc[img]['caption']!r}")
            if args.attend_video and si == 0 and di == 0:
                errors += check_attend(args, folder, ref, images, stats)
                errors += check_video(args, folder, stats)
            secs = time.perf_counter() - t0
            line = (f"{size} {dtype}: {len(CASES) * len(images)} cases, {'OK' if not errors else 'FAILED'}; "
                    f"max |log-prob diff| {stats.get('logprob', float('nan')):.3g}, max |score diff| per log-prob "
                    f"{stats.get('score', float('nan')):.3g} (tolerance {args.tol}); generated lengths "
                    f"{sorted(lengths)}; smallest greedy top-2 logit margin {stats.get('min_margin', float('nan')):.3g}")
            if "attend_map_rel" in stats:
                line += f"; attend maps within {stats['attend_map_rel']:.3g} of the peak"
            if "video_segments" in stats:
                line += (f"; video: {stats['video_segments']} segments, annotated copy "
                         f"{stats['video_annotated_bytes']} bytes, captions {stats['video_captions']}")
            line += f"; {secs:.0f} s"
            log(line)
            summary.append(line)
            failures += errors
            for e in errors:
                log("  FAIL " + e)
            del ref
    log("\n".join(["", "summary:"] + summary))
    if failures:
        raise SystemExit(f"{len(failures)} check(s) failed")


if __name__ == "__main__":
    main()
