#!/usr/bin/env bash
# xcaption vs the PyTorch eager baseline, one command: builds xcaption if needed, writes the
# real-shaped random model if missing, then for each dtype runs `xcaption bench` (greedy and beams)
# and bench/pytorch_baseline.py (HF behaviour and cached cross K/V) back to back with the same
# model, image, token count and threads, and prints a table of times and ratios. Either family:
# MODEL=out/blip-random (a folder name with "blip" in it gets a random BLIP base folder,
# "blip-large" the -large shapes; see prepare.sh).
#
# usage: bench/compare.sh            (settings through the environment:)
#   MODEL=out/vitgpt2-random IMAGE=tests/data/image/src_edges300x200.png THREADS=2 REPEATS=5
#   PT_REPEATS=3 (PyTorch runs take seconds each) TOKENS=16 BEAMS="1 4" DTYPES="f32 bf16" BATCH=4
#   OUT=out/bench-<time>
# Run it on a quiet machine: the numbers are only as good as the idle cores.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODEL=${MODEL:-$ROOT/out/vitgpt2-random}
IMAGE=${IMAGE:-$ROOT/tests/data/image/src_edges300x200.png}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-5}
PT_REPEATS=${PT_REPEATS:-3}
TOKENS=${TOKENS:-16}
BEAMS=${BEAMS:-"1 4"}
DTYPES=${DTYPES:-"f32 bf16"}
BATCH=${BATCH:-4}
OUT=${OUT:-$ROOT/out/bench-$(date +%Y%m%d-%H%M%S)}
PY=/usr/bin/python3

source bench/prepare.sh

beams_csv=$(echo $BEAMS | tr ' ' ',')
for dtype in $DTYPES; do
  for beams in $BEAMS; do
    batch=0
    [ "$beams" = 1 ] && batch=$BATCH
    echo "xcaption bench: $dtype, beams $beams" >&2
    build/xcaption bench --model "$MODEL" --image "$IMAGE" --dtype "$dtype" --beams "$beams" \
      --new-tokens "$TOKENS" --threads "$THREADS" --repeats "$REPEATS" --batch "$batch" --json \
      > "$OUT/xcaption_${dtype}_b${beams}.json"
  done
  echo "pytorch baseline: $dtype, beams $beams_csv" >&2
  "$PY" bench/pytorch_baseline.py --model "$MODEL" --image "$IMAGE" --dtypes "$dtype" --beams "$beams_csv" \
    --variants hf,cached --new-tokens "$TOKENS" --threads "$THREADS" --repeats "$PT_REPEATS" --json \
    > "$OUT/pytorch_${dtype}.jsonl"
done

"$PY" - "$OUT" <<'EOF'
import glob, json, os, platform, subprocess, sys, time
out = sys.argv[1]
xc = {}
for path in glob.glob(os.path.join(out, "xcaption_*.json")):
    j = json.load(open(path))
    xc[(j["dtype"], j["beams"])] = j
pt = {}
for path in glob.glob(os.path.join(out, "pytorch_*.jsonl")):
    for line in open(path):
        j = json.loads(line)
        pt[(j["dtype"], j["beams"], j["variant"])] = j
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
first = next(iter(xc.values()))
blas = next(iter(pt.values()))["blas"] if pt else "?"
pt_rep = next(iter(pt.values()))["repeats"] if pt else 0
family = next(iter(pt.values())).get("family", "?") if pt else "?"
print(f"model: {first['model']} ({family}, {first['parameters'] / 1e6:.1f} M parameters, encoder "
      f"{first['encoder_gflop']:.1f} GFLOP per image)")
print(f"machine: {cpu}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}; threads {first['threads']}; "
      f"{first['new_tokens']} new tokens; median of {first['repeats']} (xcaption) / {pt_rep} (PyTorch) after a warm-up; "
      f"torch BLAS: {blas}")
print()
print("| dtype | beams | xcaption e2e ms | PyTorch HF ms | speed-up | PyTorch cached ms | speed-up | "
      "xc encoder ms (% peak) | xc ms/token (% floor) | PT-HF ms/token | xc peak RSS / f32 weights |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (dtype, beams), j in sorted(xc.items()):
    m = j["median_ms"]
    hf = pt.get((dtype, beams, "hf"))
    ca = pt.get((dtype, beams, "cached"))
    def cell(p):
        return ("-", "-") if p is None else (f"{p['median_ms']['end_to_end']:.0f}", f"{p['median_ms']['end_to_end'] / m['end_to_end']:.2f}x")
    h, c = cell(hf), cell(ca)
    enc = f"{m['encoder']:.1f} ({100 * j.get('encoder_fraction_of_peak', 0):.0f}%)"
    tok = f"{m['per_token']:.2f} ({100 * j.get('decode_fraction_of_floor', 0):.0f}%)"
    pth = f"{hf['median_ms']['per_token']:.1f}" if hf else "-"
    rss = f"{j['peak_rss_bytes'] / j['weights_f32_bytes']:.2f}"
    print(f"| {dtype} | {beams} | {m['end_to_end']:.0f} | {h[0]} | {h[1]} | {c[0]} | {c[1]} | {enc} | {tok} | {pth} | {rss} |")
print()
for (dtype, beams), j in sorted(xc.items()):
    extra = f", batch {j['batch']['size']}: {j['batch']['images_per_s']:.2f} images/s" if "batch" in j else ""
    print(f"xcaption {dtype} beams {beams}: matmul peak {j.get('matmul_peak_gflops', 0):.0f} GFLOP/s, "
          f"read bandwidth {j.get('read_bandwidth_gbps', 0):.1f} GB/s, load {j['load_ms']:.0f} ms{extra}")
for beams in sorted({b for (_, b) in xc}):
    if ("f32", beams) in xc and ("bf16", beams) in xc:
        r = xc[("f32", beams)]["median_ms"]["end_to_end"] / xc[("bf16", beams)]["median_ms"]["end_to_end"]
        print(f"xcaption bf16 vs f32, beams {beams}: {r:.2f}x")
EOF
