#!/bin/bash
# Recipe exploration for tools/train_shapes.py on a GPU machine: ten variants of the shapes-world
# recipe trained side by side on one GPU (each a separate process, ~1,000 images/s each on an
# H200), at half the shipped schedule unless noted, on 16,500 training and 500 validation scenes.
# The result table is in models/shapes-small/README.md ("How the recipe was chosen").
#
# usage: tools/recipe_sweep.sh DATA_DIR [SECONDS_PER_RUN=480]
#   DATA_DIR holds train_s101_n16500/ and val_s102_n500/, each with scenes.jsonl and
#   resized_112.npy (what train_shapes.py caches after rendering and preprocessing; the images
#   themselves are not needed). Logs go to $OUT (default ./sweep-logs).
set -u
export PYTHONUNBUFFERED=1
D=${1:?usage: tools/recipe_sweep.sh DATA_DIR [SECONDS_PER_RUN]}
LIMIT=${2:-480}
LOGS=${OUT:-./sweep-logs}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$LOGS"
run() {  # name, recipe flags...
  local name=$1; shift
  local work=$LOGS/work-$name
  mkdir -p "$work"
  ln -sfn "$D/train_s101_n16500" "$work/"; ln -sfn "$D/val_s102_n500" "$work/"
  timeout "$LIMIT" python3 "$ROOT/tools/train_shapes.py" --device cuda --train-count 16500 --val-count 500 \
    --monitor-count 300 --val-every 500 --log-every 250 --ckpt-every 100000 --fresh \
    --work "$work" --out "$work/model" "$@" > "$LOGS/$name.log" 2>&1
}
# Half schedule: 3,000 crop-curriculum steps + 2,500 full-scene steps (4.85 epochs of 16,500).
# The variants fix the recipe fields that differ from each other explicitly.
H="--curriculum-steps 3000 --epochs 4.85 --init hf"
run base     $H --aux-patch-weight 0 &
run aux03    $H --aux-patch-weight 0.3 &
run aux1     $H --aux-patch-weight 1 &
run aux1s1   $H --aux-patch-weight 1 --init-seed 1 &
run aux3     $H --aux-patch-weight 3 &
run aux1lr2  $H --aux-patch-weight 1 --lr 0.002 &
run aux1mi   --curriculum-steps 3000 --epochs 4.85 --init mimetic --aux-patch-weight 1 &
run aux1nc   --curriculum-steps 0 --crop-grid 0 --epochs 7.76 --init hf --aux-patch-weight 1 &
run aux1tok  $H --aux-patch-weight 1 --crop-grid 0 --a-tokens 64 &
run aux1full --curriculum-steps 6000 --epochs 9.7 --init hf --aux-patch-weight 1 &
wait
for f in "$LOGS"/*.log; do
  echo "== $(basename "$f" .log)"
  grep -E "validation of the exported" "$f" | cut -c1-300
done
