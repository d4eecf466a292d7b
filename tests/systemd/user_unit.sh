#!/bin/bash
# Starts deploy/quantune.service for real under a systemd user manager and checks what the
# unit promises: `systemctl start` returns once READY=1 is sent (the socket answers at once),
# STATUS= is shown, a trial runs inside the sandbox, and a daemon whose watchdog pings stop
# is killed and restarted by systemd. Run by tests/systemd.rs; by hand:
#
#   sudo unshare -m --propagation private tests/systemd/user_unit.sh target/debug/quantune
#
# Needs root and its own mount namespace: PID 1 here is not systemd, so a tmpfs on
# /run/systemd/system makes the user manager believe it runs on a systemd host.
#
# The unit is deploy/quantune.service with what a user manager cannot do taken out: User= and
# Group= (a user manager runs units as its own user), ProtectKernelTunables= and
# ProtectKernelLogs= (this sandbox refuses the /proc/sys remount they need: status
# 226/NAMESPACE), and WatchdogSec= shortened to 4 s.
set -u
bin=$(realpath "$1")
repo=$(cd "$(dirname "$0")/../.." && pwd)
# Not under /tmp (PrivateTmp=) nor /home or /root (ProtectHome=read-only).
base=$(mktemp -d /var/lib/quantune-unit-test.XXXXXX)
# The binary may have been built under /tmp (e.g. CARGO_TARGET_DIR=/tmp/…), which PrivateTmp=
# hides from the unit: run a copy from the test's own directory.
cp "$bin" "$base/quantune" && bin=$base/quantune
export XDG_RUNTIME_DIR=$base/xdg HOME=$base/home
mkdir -p "$XDG_RUNTIME_DIR" "$HOME/.config/systemd/user/quantune.service.d" "$base/study"
chmod 700 "$XDG_RUNTIME_DIR"
mkdir -p /run/systemd/system
mount -t tmpfs tmpfs /run/systemd/system || { echo "FAIL cannot mount a tmpfs on /run/systemd/system"; exit 1; }

fail=0
check() { # check NAME CONDITION-RESULT(0/1) DETAIL
  if [ "$2" -eq 0 ]; then echo "ok   $1"; else echo "FAIL $1: $3"; fail=1; fi
}
sc() { systemctl --user --no-ask-password --no-pager "$@"; }
prop() { sc show quantune.service -p "$1" --value; }
q() { "$bin" --socket "$XDG_RUNTIME_DIR/quantune/quantune.sock" "$@"; }

# In user mode systemd 252 maps StateDirectory= to ~/.config and RuntimeDirectory= to
# $XDG_RUNTIME_DIR.
cat > "$base/quantune.toml" <<EOT
state_dir = "$HOME/.config/quantune"
socket = "$XDG_RUNTIME_DIR/quantune/quantune.sock"
cpu_slots = 1
gpu_discovery = false
EOT
sed -e "s|^ExecStart=.*|ExecStart=$bin serve --config $base/quantune.toml|" \
    -e '/^User=/d' -e '/^Group=/d' -e '/^ProtectKernelTunables=/d' -e '/^ProtectKernelLogs=/d' \
    -e 's/^WatchdogSec=.*/WatchdogSec=4s/' "$repo/deploy/quantune.service" \
    > "$HOME/.config/systemd/user/quantune.service"
printf '[Service]\nStandardError=append:%s/daemon.log\n' "$base" \
    > "$HOME/.config/systemd/user/quantune.service.d/log.conf"

/lib/systemd/systemd --user --log-target=console > "$base/manager.log" 2>&1 &
mgr=$!
cleanup() {
  sc stop quantune.service >/dev/null 2>&1
  kill "$mgr" 2>/dev/null; wait "$mgr" 2>/dev/null
  umount /run/systemd/system 2>/dev/null
  if [ "$fail" -ne 0 ]; then echo "--- daemon log"; tail -30 "$base/daemon.log"; fi
  rm -rf "$base"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$XDG_RUNTIME_DIR/systemd/private" ] && break; sleep 0.1; done

# 1. start returns once READY=1 is sent: the socket answers right away.
t0=$(date +%s.%N)
sc start quantune.service; rc=$?
t1=$(date +%s.%N)
check "systemctl --user start returned 0 ($(echo "$t1 - $t0" | bc) s)" $rc "rc=$rc"
q studies >/dev/null 2>&1; check "the socket answers as soon as start returns" $? "$(q studies 2>&1)"
state=$(prop ActiveState)
[ "$state" = active ]; check "ActiveState=active" $? "$state"
sleep 2
status=$(prop StatusText)
echo "$status" | grep -q "running"; check "STATUS= shown: \"$status\"" $? "$status"
mode=$(stat -c %a "$XDG_RUNTIME_DIR/quantune/quantune.sock")
[ "$mode" = 660 ]; check "socket mode $mode" $? "$mode"

# 2. A trial runs inside the sandbox.
cp "$repo/tests/fixtures/objective.sh" "$base/study/"
cat > "$base/study/s.toml" <<EOT
[study]
name = "under-systemd"
seed = 1
[[objective]]
metric = "loss"
direction = "minimize"
[space.x]
type = "float"
low = -1.0
high = 1.0
[space.q]
type = "categorical"
choices = ["a", "b"]
[budget]
max_trials = 2
[trial]
command = ["sh", "objective.sh", "{x}", "{q}"]
timeout = "1m"
EOT
out=$(q submit "$base/study/s.toml" 2>&1); check "submit" $? "$out"
for _ in $(seq 100); do
  q status under-systemd --format json 2>/dev/null | grep -q '"state": "completed"' && break
  sleep 0.2
done
q status under-systemd --format json | grep -q '"state": "completed"'
check "a study's trials ran to completion in the sandbox" $? "$(q trials under-systemd 2>&1)"

# 3. A daemon that stops pinging (SIGSTOP freezes the scheduler loop with everything else) is
# killed by the watchdog and restarted.
pid=$(prop MainPID)
[ "$pid" -gt 0 ] 2>/dev/null; check "MainPID=$pid" $? "no main pid"
if [ "$pid" -gt 0 ] 2>/dev/null; then
  restarts=$(prop NRestarts)
  kill -STOP "$pid"
  frozen_at=$(date +%s.%N)
  new=$pid
  for _ in $(seq 250); do
    new=$(prop MainPID)
    if [ "$new" != "$pid" ] && [ "$new" != 0 ] && [ "$(prop ActiveState)" = active ]; then break; fi
    sleep 0.1
  done
  took=$(echo "$(date +%s.%N) - $frozen_at" | bc)
  after=$(prop NRestarts)
  [ "$new" != "$pid" ] && [ "$after" -gt "$restarts" ]
  check "watchdog: frozen daemon $pid was restarted as $new after ${took} s (NRestarts $restarts -> $after)" $? "MainPID=$new NRestarts=$after"
  # Nothing but the watchdog ends a stopped process: it was killed no sooner than WatchdogSec.
  [ "$(echo "$took >= 3.5" | bc)" = 1 ]; check "the restart came after the 4 s watchdog period" $? "${took} s"
  q status under-systemd --format json | grep -q '"state": "completed"'
  check "after the restart the study is still there" $? "$(q studies 2>&1)"
fi

# 4. A clean stop.
sc stop quantune.service; check "systemctl --user stop" $? "stop failed"
result=$(prop Result)
[ "$result" = success ]; check "Result=$result after the stop" $? "$result"
exit $fail
