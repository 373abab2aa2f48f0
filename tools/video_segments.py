#!/usr/bin/python3
"""Compares `xcaption video --jsonl` segments with a true timeline (make_sample_video --truth).

    tools/video_segments.py TRUTH.jsonl SEGMENTS.jsonl --every SECONDS [--json]

Prints the number of true and produced segments, every true boundary's distance to the nearest
produced boundary in sampling intervals (the worst one is `max_boundary_error`; a true boundary
with no produced boundary within 1.5 intervals is `missed`), produced boundaries with no true one
within 1.5 intervals (`extra`), and the share of the video's time whose shown caption equals the
true caption (`time_correct`).
"""
import argparse
import json
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def compare(truth, segs, every):
    tb = [p["start"] for p in truth[1:]]
    sb = [s["start"] for s in segs[1:]]
    errors = [min((abs(t - b) for b in sb), default=float("inf")) / every for t in tb]
    extra = sum(1 for b in sb if min((abs(t - b) for t in tb), default=float("inf")) > 1.5 * every)
    end = truth[-1]["end"]
    # time-weighted caption agreement on a fine grid
    steps, ok = 2000, 0
    for k in range(steps):
        t = (k + 0.5) * end / steps
        tc = next(p["caption"] for p in truth if p["start"] <= t < p["end"] or p is truth[-1])
        sc = next((s["caption"] for s in reversed(segs) if s["start"] <= t), segs[0]["caption"] if segs else "")
        ok += tc == sc
    return {
        "true_segments": len(truth),
        "segments": len(segs),
        "max_boundary_error": max(errors) if errors else 0.0,
        "mean_boundary_error": sum(errors) / len(errors) if errors else 0.0,
        "missed": sum(1 for e in errors if e > 1.5),
        "extra": extra,
        "time_correct": ok / steps,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("truth")
    p.add_argument("segments")
    p.add_argument("--every", type=float, required=True)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    r = compare(load(a.truth), load(a.segments), a.every)
    if a.json:
        print(json.dumps(r))
    else:
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))


if __name__ == "__main__":
    sys.exit(main())
