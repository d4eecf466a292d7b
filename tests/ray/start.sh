#!/usr/bin/env bash
# Starts a single-node Ray cluster for the Ray executor tests (tests/ray.rs): ray[default]
# (pinned below) in a venv, `ray start --head` with 4 CPUs and 2 logical GPUs, token
# authentication on (Ray's gRPC ports listen on every interface; the token guards them), the
# dashboard — the Jobs API — on 127.0.0.1 only. Reuses a cluster that already answers.
# usage: tests/ray/start.sh [DIR]   (default $QUANTUNE_RAY_DIR or /var/tmp/quantune-ray; the venv is kept there)
# prints QUANTUNE_RAY_ADDRESS=… and QUANTUNE_RAY_TOKEN_FILE=… lines. Stop with tests/ray/stop.sh.
set -euo pipefail
dir=${1:-${QUANTUNE_RAY_DIR:-/var/tmp/quantune-ray}}
version=2.60.0
port=8265
venv=$dir/venv
mkdir -p "$dir"
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)

if ! "$venv/bin/ray" --version 2>/dev/null | grep -qF "$version"; then
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  start=$(date +%s)
  "$venv/bin/pip" install -q --disable-pip-version-check "ray[default]==$version" >&2
  echo "installed ray[default]==$version in $(( $(date +%s) - start ))s" >&2
fi

token=$dir/auth_token
if [ ! -s "$token" ]; then
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token")
fi
chmod 600 "$token"
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token RAY_USAGE_STATS_ENABLED=0

answers() {
  "$venv/bin/python" - "$port" "$token" <<'PY'
import sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/api/version",
    headers={"Authorization": "Bearer " + open(sys.argv[2]).read().strip()})
try:
    urllib.request.urlopen(req, timeout=3).read()
except Exception:
    sys.exit(1)
PY
}

if ! answers; then
  "$venv/bin/ray" stop --force >/dev/null 2>&1 || true
  "$venv/bin/ray" start --head --num-cpus 4 --num-gpus 2 --port 6390 \
    --dashboard-host 127.0.0.1 --dashboard-port "$port" --disable-usage-stats \
    --object-store-memory 100000000 > "$dir/ray-start.log" 2>&1 || {
      echo "ray start failed:" >&2; tail -n 30 "$dir/ray-start.log" >&2; exit 1; }
  for _ in $(seq 60); do answers && break; sleep 0.5; done
  answers || { echo "the Ray dashboard did not answer on 127.0.0.1:$port" >&2; exit 1; }
fi
echo "QUANTUNE_RAY_ADDRESS=http://127.0.0.1:$port"
echo "QUANTUNE_RAY_TOKEN_FILE=$token"
