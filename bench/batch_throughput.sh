#!/usr/bin/env bash
# Throughput of `xcaption caption` on a folder: images/s for several --batch sizes against the
# one-image-at-a-time loop (--batch 1), f32 and bf16, on the real-shaped random vit-gpt2 model,
# plus the encoder-bound ceiling (1 / encoder time per image). Each rate comes from two runs of
# the same command, on all N images and on the first B images alone (B = the batch size, so the
# short run holds exactly one batch): (N - B) / (t_N - t_B) removes the model load and the first
# batch, which also pays for creating the oneDNN primitives of that batch's shapes. What is left
# is the steady rate a long collection sees. Runs alternate between batch sizes, REPEATS
# rounds; the table shows medians and the ratio to batch 1 of the same round.
#
# usage: bench/batch_throughput.sh     (settings through the environment:)
#   MODEL=out/vitgpt2-random COUNT=32 BATCHES="1 4 8 16" DTYPES="f32 bf16" THREADS=2 TOKENS=16
#   BEAMS=1 REPEATS=3 OUT=out/batch-<time>
# BEAMS is passed as --beams: greedy by default, as issue 12's target states. Without it the
# folder's generation_config.json decides (the real-shaped random vit-gpt2 says num_beams 4, so
# batch 8 would decode 32 rows).
# Run it on a quiet machine; nothing else should share the cores.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODEL=${MODEL:-$ROOT/out/vitgpt2-random}
COUNT=${COUNT:-32}
BATCHES=${BATCHES:-"1 4 8 16"}
DTYPES=${DTYPES:-"f32 bf16"}
THREADS=${THREADS:-2}
TOKENS=${TOKENS:-16}
BEAMS=${BEAMS:-1}
REPEATS=${REPEATS:-3}
OUT=${OUT:-$ROOT/out/batch-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3

source bench/prepare.sh

# COUNT images of mixed sizes (160x120 .. 1600x1200, JPEG and PNG), deterministic.
IMAGES="$OUT/images"
mkdir -p "$IMAGES"
$PY - "$IMAGES" "$COUNT" <<'PYEOF'
import sys
import numpy as np
from PIL import Image
out, count = sys.argv[1], int(sys.argv[2])
rng = np.random.RandomState(7)
sizes = [(160, 120), (320, 240), (640, 480), (800, 600), (1024, 768), (1600, 1200), (500, 500), (375, 500)]
for i in range(count):
    w, h = sizes[i % len(sizes)]
    base = rng.randint(0, 255, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    img = Image.fromarray(base).resize((w, h), Image.BILINEAR)
    img.save(f"{out}/img_{i:03}." + ("jpg" if i % 2 else "png"), quality=90)
PYEOF
# first_B/: the first B images of the folder (in the order caption sorts them), one batch.
for batch in $BATCHES; do
  mkdir -p "$OUT/first_$batch"
  for f in $(ls "$IMAGES" | sort | head -n "$batch"); do cp "$IMAGES/$f" "$OUT/first_$batch/$f"; done
done

run() {  # run DTYPE BATCH INPUT -> nanoseconds
  local start end
  start=$(date +%s%N)
  build/xcaption caption --model "$MODEL" --dtype "$1" --batch "$2" --threads "$THREADS" --beams "$BEAMS" --progress none \
    --max-new-tokens "$TOKENS" --min-new-tokens "$TOKENS" --jsonl "$OUT/run.jsonl" --force "$3" >/dev/null
  end=$(date +%s%N)
  echo $((end - start))
}

: > "$OUT/runs.tsv"
for round in $(seq 1 "$REPEATS"); do
  for dtype in $DTYPES; do
    for batch in $BATCHES; do
      t1=$(run "$dtype" "$batch" "$OUT/first_$batch")
      tn=$(run "$dtype" "$batch" "$IMAGES")
      [ "$batch" = 1 ] && cp "$OUT/run.jsonl" "$OUT/batch1_${dtype}.jsonl"
      printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$dtype" "$batch" "$t1" "$tn" | tee -a "$OUT/runs.tsv" >&2
    done
  done
done

$PY - "$OUT" "$COUNT" "$BEAMS" "$TOKENS" <<'PYEOF'
import json, statistics, sys
from collections import defaultdict
out, count, beams, tokens = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rates = defaultdict(list)       # (dtype, batch) -> images/s per round
by_round = defaultdict(dict)    # (round, dtype) -> batch -> rate
for line in open(f"{out}/runs.tsv"):
    rnd, dtype, batch, t1, tn = line.split()
    rate = (count - int(batch)) / ((int(tn) - int(t1)) * 1e-9)
    rates[(dtype, int(batch))].append(rate)
    by_round[(rnd, dtype)][int(batch)] = rate
print(f"--beams {beams}, {tokens} new tokens; images/s over {count} images, the first batch not counted (medians of the rounds; ratio: median of per-round ratios to --batch 1)")
print("| dtype | batch | images/s | vs batch 1 | encoder-bound ceiling |")
print("|---|---|---|---|---|")
for (dtype, batch) in sorted(rates):
    ratios = [r[batch] / r[1] for (rnd, d), r in by_round.items() if d == dtype and 1 in r and batch in r]
    enc = [json.loads(l)["timings_ms"]["encoder"] for l in open(f"{out}/batch1_{dtype}.jsonl") if "timings_ms" in l]
    ceiling = 1000 / statistics.median(enc)
    print(f"| {dtype} | {batch} | {statistics.median(rates[(dtype, batch)]):.2f} | "
          f"{statistics.median(ratios):.2f}x | {ceiling:.2f} |")
PYEOF
