#!/usr/bin/env bash
# The GPU checks of issues 4 and 9, on a machine with a CUDA GPU, python3 with PyTorch, and a
# built quantune: GPU discovery, the PyTorch QAT example through `quantune run`, then a daemon
# on the same store for the GPU-slot behaviour (hardware-aware choices, trial.gpu_memory making
# a trial wait, NVML sampling, GPU metrics, the measurement record). Everything it prints is
# also written under $OUT (default /tmp/quantune-gpu-check). Run from the repository root:
#   QUANTUNE=target/release/quantune bash bench/gpu/check.sh
set -u
Q=$(realpath "${QUANTUNE:-target/release/quantune}")
STUDIES=${STUDIES:-bench/gpu}
OUT=${OUT:-/tmp/quantune-gpu-check}
mkdir -p "$OUT"
W=$(mktemp -d)
exec > >(tee "$OUT/check.log") 2>&1
step() { echo; echo "== $* ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,memory.free --format=csv || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
$Q --version

step "quantune gpus"
$Q gpus
$Q gpus --format json

step "validate (hardware warnings)"
$Q validate "$STUDIES/pytorch-qat.toml"
$Q validate "$STUDIES/needs-blackwell.toml"

step "quantune run: the PyTorch QAT example on the GPU"
$Q run "$STUDIES/pytorch-qat.toml" --state "$W/state" | tee "$OUT/run-leaderboard.txt"

step "daemon on the same store"
cat > "$W/daemon.toml" <<CFG
state_dir = "$W/state"
socket = "$W/q.sock"
cpu_slots = 2
trials_per_gpu = 2
metrics_listen = "127.0.0.1:9797"
CFG
$Q serve --config "$W/daemon.toml" > "$OUT/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 50); do [ -S "$W/q.sock" ] && break; sleep 0.2; done
S() { $Q --socket "$W/q.sock" "$@"; }
S status
S status --format json
S trials pytorch-qat-gpu --format json > "$OUT/trials.json"
S leaderboard pytorch-qat-gpu

step "trial.gpu_memory larger than any GPU: the trial waits"
S submit "$STUDIES/too-big.toml"
step "requires compute capability 10.0 on this GPU: fp8 never proposed, enqueue refused"
S submit "$STUDIES/needs-blackwell.toml"
S enqueue needs-blackwell --params '{"quantization": "fp8"}' && echo "UNEXPECTED: fp8 enqueued"
sleep 6
S status too-big
S status too-big --format json
for _ in $(seq 240); do
  st=$(S status needs-blackwell --format json | python3 -c "import json,sys; print(json.load(sys.stdin)['state'])")
  [ "$st" != running ] && break
  sleep 1
done
S trials needs-blackwell
S trials needs-blackwell --format json > "$OUT/trials-blackwell.json"
step "GPU metrics while a trial waits"
curl -s http://127.0.0.1:9797/metrics | grep -E "^quantune_(gpu|slots|trials)" | head -40
S status too-big
S cancel too-big
kill -TERM $DAEMON; wait $DAEMON
echo "daemon exit: $?"

step "summary"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for name in ("trials.json", "trials-blackwell.json"):
    trials = json.load(open(f"{out}/{name}"))
    print(name, len(trials), "trials")
    for t in trials:
        m, i, g = t.get("metrics", {}), t.get("info", {}), t.get("gpu") or {}
        print(f"  #{t['trial']} {t['state']:9} {t['params'].get('quantization'):5} "
              f"lat {m.get('latency_ms', float('nan')):.3f} ms (spread {m.get('latency_ms_spread', float('nan')):.3f}) "
              f"thr {m.get('throughput_tok_s', float('nan')):.0f} tok/s dloss {m.get('eval_loss_delta', float('nan')):+.4f} "
              f"kernel={i.get('kernel')} slot={t.get('slot')} gpu={i.get('gpu')} driver={i.get('gpu_driver')} "
              f"cuda={i.get('cuda_version')} util={g.get('mean_utilization')} peak={g.get('peak_memory_bytes')} "
              f"samples={g.get('samples')} gpu_s={g.get('gpu_seconds')}")
    print("  host:", {t['info'].get('host') for t in trials})
PY
