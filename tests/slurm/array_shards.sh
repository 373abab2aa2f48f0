#!/usr/bin/env bash
# A real Slurm job array on this one machine: starts munged, slurmctld and slurmd on localhost
# (private sockets, ports and state in a temporary folder), submits a 3-task array in which each
# task runs `xcaption caption DIR --shard auto --jsonl`, waits for it, merges the shard outputs
# and checks that every image was captioned exactly once, with the captions of an unsharded run.
# Exit 77 (CTest: skipped) when Slurm or munge is not installed.
#
# usage: tests/slurm/array_shards.sh XCAPTION MODEL_DIR IMAGE_DIR
set -euo pipefail
XCAPTION=$1 MODEL=$2 IMAGES=$3
for tool in munged slurmctld slurmd sbatch; do
  command -v "$tool" >/dev/null || { echo "skipped: $tool not installed (apt-get install slurm-wlm munge)"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "skipped: slurmd must run as root"; exit 77; }

WORK=$(mktemp -d /tmp/xcaption-slurm-XXXXXX)
chmod 755 "$WORK"  # munged wants its socket folder reachable by all
cleanup() {
  for pid in "$WORK"/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK"/{state,spool,munge,out,data}
# Twelve images under two folders (copies of the fixture images).
i=0
for round in 1 2 3 4; do
  for f in "$IMAGES"/*.png; do
    sub=$([ $((i % 2)) = 0 ] && echo a || echo b)
    mkdir -p "$WORK/data/$sub"
    cp "$f" "$WORK/data/$sub/img_$i.png"
    i=$((i + 1))
  done
done

cp /etc/munge/munge.key "$WORK/munge/key" 2>/dev/null || dd if=/dev/urandom of="$WORK/munge/key" bs=1 count=1024 2>/dev/null
chmod 600 "$WORK/munge/key"
munged --key-file="$WORK/munge/key" --socket="$WORK/munge/sock" --pid-file="$WORK/munged.pid" \
  --log-file="$WORK/munge/log" --seed-file="$WORK/munge/seed"

PORT=$((20000 + $$ % 20000))
export SLURM_CONF="$WORK/slurm.conf"
cat > "$SLURM_CONF" <<CONF
ClusterName=xcaption-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$WORK/munge/sock
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=localhost CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
slurmctld -f "$SLURM_CONF" -L "$WORK/slurmctld.log"
slurmd -f "$SLURM_CONF" -N localhost -L "$WORK/slurmd.log"
for _ in $(seq 1 50); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 0.2; done
sinfo -h -o %T | grep -q idle || { echo "FAIL: the Slurm node did not come up"; cat "$WORK"/*.log; exit 1; }

cat > "$WORK/job.sh" <<JOB
#!/bin/bash
#SBATCH --array=1-3
#SBATCH --cpus-per-task=1
export OMP_NUM_THREADS=1
exec "$XCAPTION" caption --model "$MODEL" --threads 1 --progress none --max-new-tokens 6 \
  -r "$WORK/data" --shard auto --jsonl "$WORK/out/shard_\${SLURM_ARRAY_TASK_ID}.jsonl"
JOB
sbatch --wait --output="$WORK/out/%A_%a.log" "$WORK/job.sh" >/dev/null || {
  echo "FAIL: the array job failed"; cat "$WORK"/out/*.log; exit 1; }

# Merge: the shards' lines together, and the same folder captioned without shards.
cat "$WORK"/out/shard_*.jsonl > "$WORK/merged.jsonl"
OMP_NUM_THREADS=1 "$XCAPTION" caption --model "$MODEL" --threads 1 --progress none --max-new-tokens 6 \
  -r "$WORK/data" --jsonl "$WORK/all.jsonl"
/usr/bin/python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
def load(name):
    return [json.loads(l) for l in open(f"{work}/{name}") if l.strip()]
merged, alone = load("merged.jsonl"), load("all.jsonl")
images = [r["image"] for r in merged]
shards = [sum(1 for _ in open(f"{work}/out/shard_{i}.jsonl")) for i in (1, 2, 3)]
assert len(images) == len(set(images)), "an image is in two shards"
assert sorted(images) == sorted(r["image"] for r in alone), "the shards do not cover the folder"
assert all(n > 0 for n in shards), f"an empty shard: {shards}"
by_image = {r["image"]: r["caption"] for r in alone}
assert all(by_image[r["image"]] == r["caption"] for r in merged), "a shard's caption differs"
print(f"ok: {len(images)} images in 3 Slurm array tasks ({shards}), merged = unsharded run")
PY
