#!/usr/bin/env bash
# Load on `xcaption serve`: N concurrent clients post the same image to /caption for a fixed time,
# each sending its next request as soon as its answer arrives; for each N, throughput
# (answers/s), p50/p95 latency, the engine's mean batch size (from /metrics) and the server's RSS
# (at the start and end of the window, and its peak), plus the throughput ratio to 1 client.
# The issue 13 target: with 8 clients, throughput >= 1.5x the 1-client throughput (2 threads,
# greedy, 16 tokens) with RSS flat over the run.
#
# usage: bench/serve_load.sh     (settings through the environment:)
#   MODEL=out/vitgpt2-random CLIENTS="1 2 4 8" DURATION=30 THREADS=2 TOKENS=16 BEAMS=1 DTYPE=f32
#   IMAGE=tests/data/image/src_edges300x200.png OUT=out/serve-<time>
# Run it on a quiet machine; nothing else should share the cores (the clients are one Python
# process that mostly waits).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODEL=${MODEL:-$ROOT/out/vitgpt2-random}
CLIENTS=${CLIENTS:-"1 2 4 8"}
DURATION=${DURATION:-30}
THREADS=${THREADS:-2}
TOKENS=${TOKENS:-16}
BEAMS=${BEAMS:-1}
DTYPE=${DTYPE:-f32}
IMAGE=${IMAGE:-$ROOT/tests/data/image/src_edges300x200.png}
OUT=${OUT:-$ROOT/out/serve-$(date +%Y%m%d-%H%M%S)}

source bench/prepare.sh

build/xcaption serve --model "$MODEL" --threads "$THREADS" --dtype "$DTYPE" --port 0 \
  --max-queue 1024 --http-threads 32 2>"$OUT/serve.stderr" &
server=$!
trap 'kill -9 $server 2>/dev/null || true' EXIT
url=
for _ in $(seq 1200); do
  url=$(grep -o 'xcaption: serving http://[0-9.]*:[0-9]*' "$OUT/serve.stderr" | sed 's/xcaption: serving //' || true)
  [[ -n $url ]] && break
  kill -0 $server 2>/dev/null || { cat "$OUT/serve.stderr" >&2; exit 1; }
  sleep 0.1
done
[[ -n $url ]] || { echo "the server printed no URL" >&2; exit 1; }
echo "server $url (pid $server)" >&2

/usr/bin/python3 - "$url" "$server" "$IMAGE" "$DURATION" "$TOKENS" "$BEAMS" "$OUT" $CLIENTS <<'PYEOF'
import http.client, json, re, statistics, sys, threading, time, urllib.parse

url, pid, image, duration, tokens, beams, out = sys.argv[1:8]
clients = [int(c) for c in sys.argv[8:]]
duration, pid = float(duration), int(pid)
host, port = urllib.parse.urlparse(url).hostname, urllib.parse.urlparse(url).port
body = open(image, "rb").read()
path = f"/caption?beams={beams}&max_new_tokens={tokens}&min_new_tokens={tokens}"

def rss_kb(field="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0

def metric(name):
    c = http.client.HTTPConnection(host, port, timeout=60)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0

def caption(conn):
    conn.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
    return json.loads(data)[0]["generated_text"]

warm = http.client.HTTPConnection(host, port, timeout=600)
for _ in range(3):
    first = caption(warm)

rows = []
for n in clients:
    latencies, errors, lock = [], [], threading.Lock()
    stop_at = [0.0]
    start = threading.Barrier(n + 1)
    def client():
        conn = http.client.HTTPConnection(host, port, timeout=600)
        start.wait()
        while True:
            t0 = time.monotonic()
            if t0 >= stop_at[0]:
                return
            try:
                text = caption(conn)
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(str(e))
                conn = http.client.HTTPConnection(host, port, timeout=600)
                continue
            t1 = time.monotonic()
            with lock:
                if t1 <= stop_at[0]:
                    latencies.append(t1 - t0)
                if text != first:
                    errors.append(f"caption changed under load: {text!r} != {first!r}")
    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    images0, batches0 = metric("xcaption_images_total"), metric("xcaption_batches_total")
    rss_start, rss_peak = rss_kb(), 0
    t_begin = time.monotonic()
    stop_at[0] = t_begin + duration
    start.wait()
    while time.monotonic() < stop_at[0]:
        rss_peak = max(rss_peak, rss_kb())
        time.sleep(0.2)
    rss_end = rss_kb()
    for t in threads:
        t.join()
    images, batches = metric("xcaption_images_total") - images0, metric("xcaption_batches_total") - batches0
    lat = sorted(latencies)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
    rows.append(dict(clients=n, answers=len(lat), throughput=len(lat) / duration, p50_ms=p(0.50), p95_ms=p(0.95),
                     mean_batch=images / batches if batches else 0, rss_start_mb=rss_start / 1024,
                     rss_end_mb=rss_end / 1024, rss_peak_mb=rss_peak / 1024, errors=len(errors),
                     first_error=errors[0] if errors else ""))
    print(json.dumps(rows[-1]), file=sys.stderr)

base = rows[0]["throughput"] if rows and rows[0]["clients"] == 1 else None
print(f"caption: {first!r}; {duration:g} s per row, {tokens} new tokens, beams {beams}; VmHWM {rss_kb('VmHWM') / 1024:.0f} MB")
print("| clients | answers | answers/s | vs 1 client | p50 | p95 | mean batch | RSS start / end / peak | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    ratio = f"{r['throughput'] / base:.2f}x" if base else "-"
    print(f"| {r['clients']} | {r['answers']} | {r['throughput']:.2f} | {ratio} | {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms "
          f"| {r['mean_batch']:.2f} | {r['rss_start_mb']:.0f} / {r['rss_end_mb']:.0f} / {r['rss_peak_mb']:.0f} MB | {r['errors']} |")
json.dump(rows, open(f"{out}/serve_load.json", "w"), indent=1)
PYEOF
kill -TERM $server
wait $server || true
trap - EXIT
