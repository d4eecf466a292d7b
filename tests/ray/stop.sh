#!/usr/bin/env bash
# Stops what tests/ray/start.sh started (`ray stop`, forced if it does not end in time).
dir=${1:-${QUANTUNE_RAY_DIR:-/var/tmp/quantune-ray}}
ray=$dir/venv/bin/ray
[ -x "$ray" ] || exit 0
timeout 60 "$ray" stop >/dev/null 2>&1 || "$ray" stop --force >/dev/null 2>&1 || true
