#!/usr/bin/env bash
# Load time and peak memory of the two checkpoint formats on the real-shaped random vit-gpt2
# model (tools/make_random_model.py): its model.safetensors against a pytorch_model.bin twin that
# torch.save wrote from the same tensors (one storage per tensor, as transformers saves them).
# For each format and round: `xcaption info --json` (load_ms: read, validate and prepare the
# weights) and `/usr/bin/time -v xcaption caption` of one image (wall time, peak RSS of a whole
# run), alternating formats. It also checks that both captions are the same tokens. Prints
# medians and the .bin / safetensors ratios; raw runs in $OUT/runs.tsv.
#
# usage: bench/load_formats.sh     (settings through the environment:)
#   MODEL=out/vitgpt2-random REPEATS=5 THREADS=2 DTYPE=f32 OUT=out/load-formats-<time>
# Run it on a quiet machine; the first round also warms the page cache (reported, not counted).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODEL=${MODEL:-$ROOT/out/vitgpt2-random}
REPEATS=${REPEATS:-5}
THREADS=${THREADS:-2}
DTYPE=${DTYPE:-f32}
OUT=${OUT:-$ROOT/out/load-formats-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3
IMAGE=$ROOT/tests/data/golden_images/img_64x64.png

source bench/prepare.sh

BIN_MODEL="$MODEL-bin"
if [ ! -f "$BIN_MODEL/pytorch_model.bin" ]; then
  echo "writing the torch.save twin to $BIN_MODEL" >&2
  mkdir -p "$BIN_MODEL"
  for f in "$MODEL"/*.json "$MODEL"/merges.txt "$MODEL"/vocab.txt; do
    if [ -f "$f" ]; then cp "$f" "$BIN_MODEL/"; fi
  done
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-pthread $PY - "$MODEL" "$BIN_MODEL" <<'PYEOF'
import sys
from collections import OrderedDict
from pathlib import Path
import numpy as np
import torch
sys.path.insert(0, "tools")
from xcaption_ref import safetensors_io
torch.set_num_threads(1)
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
tensors, dtypes, _ = safetensors_io.load(src / "model.safetensors", as_float32=False)
sd = OrderedDict()
for name in sorted(tensors):
    t = torch.from_numpy(np.array(tensors[name]))  # keeps 0-d arrays 0-d
    sd[name] = t.to(torch.bfloat16) if dtypes[name] == "BF16" else t
torch.save(sd, dst / "pytorch_model.bin")
PYEOF
fi
rm -f "$BIN_MODEL/model.safetensors"  # the twin must be read as .bin

runs="$OUT/runs.tsv"
printf "round\tformat\tload_ms\twall_s\tpeak_rss_kb\n" > "$runs"
one() {  # one ROUND FORMAT DIR
  local load wall rss
  load=$(build/xcaption info --model "$3" --dtype "$DTYPE" --threads "$THREADS" --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["load_ms"])')
  /usr/bin/time -v -o "$OUT/time.txt" build/xcaption caption --model "$3" --dtype "$DTYPE" --threads "$THREADS" \
    --json --max-new-tokens 16 "$IMAGE" > "$OUT/caption-$2.json"
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$OUT/time.txt")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/time.txt")
  printf "%s\t%s\t%s\t%s\t%s\n" "$1" "$2" "$load" "$wall" "$rss" >> "$runs"
}
for round in $(seq 0 "$REPEATS"); do  # round 0 warms the page cache
  one "$round" safetensors "$MODEL"
  one "$round" bin "$BIN_MODEL"
done

$PY - "$OUT" "$MODEL" "$BIN_MODEL" <<'PYEOF'
import csv, json, os, statistics, sys
out, st_dir, bin_dir = sys.argv[1:4]
rows = [r for r in csv.DictReader(open(f"{out}/runs.tsv"), delimiter="\t") if r["round"] != "0"]
med = {}
for fmt in ("safetensors", "bin"):
    rs = [r for r in rows if r["format"] == fmt]
    med[fmt] = {k: statistics.median(float(r[k]) for r in rs) for k in ("load_ms", "wall_s", "peak_rss_kb")}
a, b = (json.load(open(f"{out}/caption-{f}.json")) for f in ("safetensors", "bin"))
same = a["token_ids"] == b["token_ids"]
size = {f: os.path.getsize(p) for f, p in (("safetensors", f"{st_dir}/model.safetensors"),
                                            ("bin", f"{bin_dir}/pytorch_model.bin"))}
print(f"| format | file MB | load ms | caption wall s | peak RSS MB | RSS / file |")
print(f"|---|---|---|---|---|---|")
for fmt in ("safetensors", "bin"):
    m = med[fmt]
    print(f"| {fmt} | {size[fmt] / 1e6:.0f} | {m['load_ms']:.0f} | {m['wall_s']:.2f} | "
          f"{m['peak_rss_kb'] / 1024:.0f} | {m['peak_rss_kb'] * 1024 / size[fmt]:.3f} |")
print(f".bin / safetensors: load {med['bin']['load_ms'] / med['safetensors']['load_ms']:.3f}x, "
      f"peak RSS {med['bin']['peak_rss_kb'] / med['safetensors']['peak_rss_kb']:.3f}x "
      f"(target <= 1.10x); same tokens: {same}; {len(rows) // 2} rounds")
PYEOF
