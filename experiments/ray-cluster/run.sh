#!/usr/bin/env bash
# A two-node Ray cluster on this machine (loopback only), a sweep on it, the same sweep
# locally with one thread, and the comparison. Usage: experiments/ray-cluster/run.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/ray-cluster}
lab=.venv/bin/lab
ray=.venv/bin/ray
# every node on 127.0.0.1 (--node-ip-address); no dashboard. Token authentication on every
# node and the driver (the head turns it on; the token is ~/.ray/auth_token)
export RAY_AUTH_MODE=token
$ray get-auth-token --generate >/dev/null
trap '$ray stop --force >/dev/null 2>&1 || true' EXIT
$ray stop --force >/dev/null 2>&1 || true
$ray start --head --node-ip-address 127.0.0.1 --port 6391 --num-cpus 1 \
  --resources '{"kind_a": 1}' --include-dashboard false --disable-usage-stats
$ray start --address 127.0.0.1:6391 --node-ip-address 127.0.0.1 --num-cpus 1 --labels kind=b \
  --disable-usage-stats
$ray status --address 127.0.0.1:6391 | sed -n '/Resources/,$p'
start=$(date +%s)
RAY_ADDRESS=127.0.0.1:6391 $lab sweep experiments/ray-cluster/config.yaml --out "$out/on-ray" --ray auto
echo "ray sweep wall: $(( $(date +%s) - start )) s"
# the same cells locally, one thread, without the node_kind axis (a local run refuses it)
sed '/node_kind/d' experiments/ray-cluster/config.yaml > "$out.local.yaml"
start=$(date +%s)
OMP_NUM_THREADS=1 $lab sweep "$out.local.yaml" --out "$out/local"
echo "local sweep wall: $(( $(date +%s) - start )) s"
.venv/bin/python experiments/ray-cluster/compare.py "$out/on-ray" "$out/local"
# an n-of-k run on 2 replicas (data parallel, one per node) against the local 1-thread run
start=$(date +%s)
RAY_ADDRESS=127.0.0.1:6391 $lab sample --cases bundled:basic --limit 8 --k 4 --max-tokens 16 \
  --rows-per-call 4 --backend hf --out "$out/sample-on-ray" --ray auto --replicas 2 \
  2> "$out/sample-on-ray.log" | tail -3
echo "ray sample wall: $(( $(date +%s) - start )) s"
start=$(date +%s)
OMP_NUM_THREADS=1 $lab sample --cases bundled:basic --limit 8 --k 4 --max-tokens 16 \
  --rows-per-call 4 --backend hf --out "$out/sample-local" 2> "$out/sample-local.log" | tail -3
echo "local sample wall: $(( $(date +%s) - start )) s"
.venv/bin/python experiments/ray-cluster/compare.py --samples "$out/sample-on-ray" "$out/sample-local"
