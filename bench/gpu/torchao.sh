#!/usr/bin/env bash
# The torchao QAT recipe on a GPU (issue 17): every scheme on a randomly initialized ~0.75B
# Llama through `quantune run` (bench/gpu/torchao-random.toml), then the leaderboard and each
# trial's timing record (GPU, driver, clocks, power/temperature before and after, versions,
# each layer's tensor type, the decode step's operators). Needs: a built quantune, and a python3
# with torch (CUDA build), transformers and torchao (python/ci-requirements.txt pins a set that
# works together) plus this checkout's python/ package (PYTHONPATH is set below, no install
# needed). Everything goes to $OUT (default /tmp/quantune-torchao-gpu). From the repository root:
#   QUANTUNE=target/release/quantune PYTHON=python3 bash bench/gpu/torchao.sh
set -u
Q=$(realpath "${QUANTUNE:-target/release/quantune}")
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/quantune-torchao-gpu}
mkdir -p "$OUT"
W=$(mktemp -d)
exec > >(tee "$OUT/torchao.log") 2>&1
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
step() { echo; echo "== $* ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,compute_cap,driver_version,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv || true
"$PY" -c "import torch, torchao, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), 'torchao', torchao.__version__, 'transformers', transformers.__version__)" || {
  echo "this python cannot import torch, torchao and transformers: install python/ci-requirements.txt"; exit 2; }
$Q --version

step "quantune run: every scheme"
sed "s|\"python3\"|\"$(command -v "$PY")\"|" bench/gpu/torchao-random.toml > "$W/study.toml"
$Q run "$W/study.toml" --state "$W/state" | tee "$OUT/leaderboard.txt"

step "trials and timing records"
cat > "$W/daemon.toml" <<CFG
state_dir = "$W/state"
socket = "$W/q.sock"
cpu_slots = 1
CFG
$Q serve --config "$W/daemon.toml" 2> "$OUT/daemon.log" &
DPID=$!
for _ in $(seq 100); do $Q --socket "$W/q.sock" studies >/dev/null 2>&1 && break; sleep 0.1; done
$Q --socket "$W/q.sock" trials torchao-random --format json > "$OUT/trials.json"
$Q --socket "$W/q.sock" leaderboard torchao-random
"$PY" - "$OUT/trials.json" <<'PYEOF'
import json, sys
rows = json.load(open(sys.argv[1]))
print(f"{'scheme':22} {'state':10} {'TTFT ms':>9} {'TPOT ms':>9} {'tok/s':>9} {'dloss':>8}  kernels")
base = {}
for t in rows:
    m, i = t["metrics"], t.get("info", {})
    if t["params"]["scheme"] == "bf16" and m:
        base = m
    print(f"{t['params']['scheme']:22} {t['state']:10} {m.get('ttft_ms', float('nan')):9.3f} "
          f"{m.get('tpot_ms', float('nan')):9.3f} {m.get('throughput_tok_s', float('nan')):9.1f} "
          f"{m.get('eval_loss_delta', float('nan')):8.4f}  {i.get('layer_kernels', t.get('reason', ''))}")
for t in rows:
    m = t["metrics"]
    if base and m and t["params"]["scheme"] != "bf16":
        print(f"{t['params']['scheme']}: prefill {base['ttft_ms'] / m['ttft_ms']:.2f}x, "
              f"decode {base['tpot_ms'] / m['tpot_ms']:.2f}x vs bf16")
PYEOF
kill "$DPID"; wait "$DPID" 2>/dev/null
cp -r "$W/state/trials" "$OUT/trial-logs" 2>/dev/null || true
echo "logs in $OUT"
