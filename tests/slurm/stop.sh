#!/usr/bin/env bash
# Stops what tests/slurm/start.sh started: TERM, then KILL after 5 s.
dir=${1:-/tmp/quantune-slurm}
[ -f "$dir/pids" ] || exit 0
pids=$(cat "$dir/pids")
kill -TERM $pids 2>/dev/null || true
for _ in $(seq 50); do
  alive=0
  for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  sleep 0.1
done
kill -KILL $pids 2>/dev/null || true
rm -f "$dir/pids"
