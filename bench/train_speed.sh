#!/usr/bin/env bash
# Trainer speed under three allocator / thread settings, one after the other on the same steps.
#
#   bench/train_speed.sh CHECKPOINT WORK STEPS [train_shapes.py recipe options...]
#
# CHECKPOINT: a train_shapes.py checkpoint (work/checkpoint_<key>.pt) of the recipe the options
# give; WORK: the work folder that run rendered its data into. Each setting resumes a copy of the
# checkpoint in a scratch folder (WORK's data is linked, not copied; WORK is not written) and runs
# STEPS more steps; the images/s and loss of the last two progress lines are printed. Stop other
# work first: training wants both cores.
# Example (the numbers in models/shapes-small/README.md, "Training speed"):
#   bench/train_speed.sh out/v2/ckpt8000.pt out/v2/work 100 --scene-style wide --image-size 144
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 3 ]] || { sed -n 4,13p "$0" >&2; exit 2; }
ckpt=$1 work=$2 steps=$3; shift 3
[[ -f $ckpt ]] || { echo "train_speed: no checkpoint $ckpt" >&2; exit 1; }
read -r start key < <(/usr/bin/python3 -c "import sys, torch
c = torch.load(sys.argv[1], map_location='cpu', weights_only=False); print(c['step'], c['recipe_key'])" "$ckpt")
stop=$((start + steps))
scratch=$(mktemp -d /tmp/train_speed.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
for d in "$work"/*/; do ln -s "$(realpath "$d")" "$scratch/$(basename "$d")"; done
run() {  # name, environment assignments, extra options
  local name=$1 envs=$2; shift 2
  cp "$ckpt" "$scratch/checkpoint_$key.pt"
  env $envs /usr/bin/python3 tools/train_shapes.py --work "$scratch" --out "$scratch/model" --max-steps "$stop" \
      --val-every 100000000 --ckpt-every 100000000 "$@" > "$scratch/$name.log" 2>&1 &
  local pid=$!
  # stop at the last progress line: the export and validation after it are not part of the step time
  until grep -q "step $stop/" "$scratch/$name.log" || ! kill -0 $pid 2>/dev/null; do sleep 2; done
  kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
  grep -q "resumed from .* at step $start/" "$scratch/$name.log" || { cat "$scratch/$name.log" >&2; exit 1; }
  printf '%-40s %s\n' "$name" "$(grep -E '^[0-9:]+ step [0-9]+/' "$scratch/$name.log" | tail -2 |
                                  awk '{printf "step %s loss %s %s img/s   ", $3, $7, $12}')"
}
run "glibc default (hugetlb=0), torch 1" "GLIBC_TUNABLES=glibc.malloc.hugetlb=0 OPENBLAS_NUM_THREADS=2" "$@"
run "hugetlb=1 (default), torch 1" "OPENBLAS_NUM_THREADS=2" "$@"
run "hugetlb=1, torch 2, OpenBLAS 1" "OPENBLAS_NUM_THREADS=1" "$@" --threads 2
