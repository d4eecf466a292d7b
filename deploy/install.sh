#!/bin/sh
# Installs quantune as a systemd service: the `quantune` user and group, the binary, the config,
# the unit, and (with --tcp) a bearer token. Idempotent: run it again to upgrade the binary and
# the unit; an existing config or token is never overwritten.
#
#   sudo deploy/install.sh [--bin PATH] [--tcp] [--no-start] [--root DIR]
#
#   --bin PATH   the quantune binary (default: target/release/quantune, then ./quantune)
#   --tcp        also write /etc/quantune/token (mode 0600, owned by quantune); enable the
#                listener by uncommenting [tcp] in /etc/quantune/quantune.toml
#   --no-start   install only; do not enable or (re)start the service
#   --root DIR   install into DIR instead of / (a staging tree or a test; DIR/etc must hold
#                passwd, group, shadow and gshadow); systemctl is not called
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=""
tcp=0
start=1
root=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --tcp) tcp=1; shift ;;
    --no-start) start=0; shift ;;
    --root) root=$(cd "$2" && pwd); shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  for c in "$repo/target/release/quantune" "./quantune"; do
    if [ -x "$c" ]; then bin=$c; break; fi
  done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "install.sh: no quantune binary; build one (cargo build --release) or pass --bin PATH" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (it creates a system user and writes to /usr and /etc)" >&2
  exit 1
fi

say() { echo "install.sh: $*"; }
rootopt=""
[ -n "$root" ] && rootopt="--root $root"

has_group() {
  if [ -n "$root" ]; then grep -q "^$1:" "$root/etc/group"; else getent group "$1" >/dev/null; fi
}
has_user() {
  if [ -n "$root" ]; then grep -q "^$1:" "$root/etc/passwd"; else getent passwd "$1" >/dev/null; fi
}

# 1. The group and the system user (no login, no home of its own).
if has_group quantune; then
  say "group quantune exists"
else
  # shellcheck disable=SC2086
  groupadd --system $rootopt quantune
  say "created group quantune"
fi
if has_user quantune; then
  say "user quantune exists"
else
  nologin=/usr/sbin/nologin
  [ -x "$nologin" ] || nologin=/bin/false
  # shellcheck disable=SC2086
  useradd --system $rootopt --gid quantune --home-dir /var/lib/quantune --no-create-home \
    --shell "$nologin" --comment "quantune daemon" quantune
  say "created user quantune"
fi
# GPU device nodes belong to `video` or `render` on some distributions.
for g in video render; do
  if has_group "$g" && ! grep "^$g:" "$root/etc/group" | cut -d: -f4 | tr ',' '\n' | grep -qx quantune; then
    # shellcheck disable=SC2086
    usermod $rootopt -a -G "$g" quantune
    say "added quantune to group $g (GPU devices)"
  fi
done

# 2. The binary, the documentation the unit points at, the config, the token.
install -D -m 0755 "$bin" "$root/usr/bin/quantune"
say "installed $root/usr/bin/quantune ($("$root/usr/bin/quantune" --version))"
install -D -m 0644 "$repo/docs/DEPLOY.md" "$root/usr/share/doc/quantune/DEPLOY.md"
install -d -m 0755 "$root/etc/quantune"
if [ -e "$root/etc/quantune/quantune.toml" ]; then
  say "kept the existing $root/etc/quantune/quantune.toml"
  if ! cmp -s "$here/quantune.toml" "$root/etc/quantune/quantune.toml"; then
    install -m 0644 "$here/quantune.toml" "$root/etc/quantune/quantune.toml.dist"
    say "the shipped default is in $root/etc/quantune/quantune.toml.dist for comparison"
  fi
else
  install -m 0644 "$here/quantune.toml" "$root/etc/quantune/quantune.toml"
  say "installed $root/etc/quantune/quantune.toml"
fi
if [ "$tcp" -eq 1 ]; then
  token="$root/etc/quantune/token"
  if [ -e "$token" ]; then
    say "kept the existing $token"
  else
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token")
    say "wrote a new token to $token; uncomment [tcp] in quantune.toml to use it"
  fi
  if [ -n "$root" ]; then
    # The names mean nothing to chown outside the staged tree: use its numbers.
    chown "$(grep '^quantune:' "$root/etc/passwd" | cut -d: -f3):$(grep '^quantune:' "$root/etc/group" | cut -d: -f3)" "$token"
  else
    chown quantune:quantune "$token"
  fi
  chmod 0600 "$token"
fi

# 3. The unit.
install -D -m 0644 "$here/quantune.service" "$root/etc/systemd/system/quantune.service"
say "installed $root/etc/systemd/system/quantune.service"

# 4. Start it, when systemd runs this machine.
if [ -n "$root" ] || [ "$start" -eq 0 ]; then
  say "not starting the service; then: systemctl daemon-reload && systemctl enable --now quantune"
elif [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable quantune.service
  systemctl restart quantune.service
  say "quantune is running: systemctl status quantune; journalctl -u quantune"
else
  say "systemd is not running here; start the daemon by hand: runuser -u quantune -- /usr/bin/quantune serve --config /etc/quantune/quantune.toml"
fi
say "let a user submit studies: usermod -aG quantune NAME (then they log in again)"
