#!/usr/bin/env bash
# bf16 against f32 as alternating pairs: `xcaption bench --dtype f32`, then `--dtype bf16`, PAIRS
# times, each run a median of REPEATS after a warm-up. On a machine whose memory bandwidth drifts
# from minute to minute (a shared virtual machine), one f32 run and one bf16 run minutes apart can
# give any ratio; pairs taken back to back see nearly the same machine, and the median of their
# ratios is the number to quote. Prints each pair and the medians per stage.
#
# usage: bench/bf16_pairs.sh   (settings through the environment:)
#   MODEL=out/vitgpt2-random IMAGE=tests/data/image/src_edges300x200.png THREADS=2 REPEATS=5
#   TOKENS=16 BEAMS=1 PAIRS=8 OUT=out/bf16-pairs-<time>
# Run it on a quiet machine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODEL=${MODEL:-$ROOT/out/vitgpt2-random}
IMAGE=${IMAGE:-$ROOT/tests/data/image/src_edges300x200.png}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-5}
TOKENS=${TOKENS:-16}
BEAMS=${BEAMS:-1}
PAIRS=${PAIRS:-8}
OUT=${OUT:-$ROOT/out/bf16-pairs-$(date +%Y%m%d-%H%M%S)}

source bench/prepare.sh

for pair in $(seq 1 "$PAIRS"); do
  for dtype in f32 bf16; do
    build/xcaption bench --model "$MODEL" --image "$IMAGE" --dtype "$dtype" --beams "$BEAMS" \
      --new-tokens "$TOKENS" --threads "$THREADS" --repeats "$REPEATS" --no-roofline --json \
      > "$OUT/pair${pair}_${dtype}.json"
  done
  echo "pair $pair done" >&2
done

/usr/bin/python3 - "$OUT" "$PAIRS" <<'PY'
import json, statistics, sys, time
out, pairs = sys.argv[1], int(sys.argv[2])
stages = ["end_to_end", "encoder", "cross_kv", "per_token"]
runs = {d: [json.load(open(f"{out}/pair{p}_{d}.json"))["median_ms"] for p in range(1, pairs + 1)]
        for d in ("f32", "bf16")}
print(f"{time.strftime('%Y-%m-%d %H:%M')}: {pairs} alternating pairs (f32 then bf16), medians of each run")
print("| pair | f32 end_to_end ms | bf16 end_to_end ms | ratio |")
print("|---|---|---|---|")
ratios = []
for p, (f, b) in enumerate(zip(runs["f32"], runs["bf16"]), 1):
    ratios.append(f["end_to_end"] / b["end_to_end"])
    print(f"| {p} | {f['end_to_end']:.1f} | {b['end_to_end']:.1f} | {ratios[-1]:.2f}x |")
print()
for s in stages:
    f = statistics.median(r[s] for r in runs["f32"])
    b = statistics.median(r[s] for r in runs["bf16"])
    per_pair = statistics.median(x[s] / y[s] for x, y in zip(runs["f32"], runs["bf16"]))
    print(f"{s:10s}  f32 median {f:8.2f} ms  bf16 median {b:8.2f} ms  median of per-pair ratios {per_pair:.2f}x")
print(f"\nbf16 speed-up, end to end: median of per-pair ratios {statistics.median(ratios):.2f}x "
      f"(range {min(ratios):.2f}-{max(ratios):.2f})")
PY
