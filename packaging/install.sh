#!/usr/bin/env bash
# Install spyderd on Debian 12 (run as root; safe to run again).
#
#   packaging/install.sh [--no-start] [--prefix-venv DIR] [--bcc-headers]
#
#   --no-start         install only; do not start journald or spyderd
#   --prefix-venv DIR  where the Python venv goes (default /opt/spyderd/venv)
#   --bcc-headers      wire Debian's generic kernel headers for bcc even when the kernel
#                      has BTF (only the bcc fallback needs headers; CI tests it)
#
# Where systemd is PID 1 the unit is enabled and (re)started. Elsewhere (containers,
# Firecracker VMs) journald and spyderd are started in the background.
set -euo pipefail

VENV=/opt/spyderd/venv
START=1
BCC_HEADERS=0

usage() { sed -n '2,10s/^# \{0,1\}//p' "$0"; }

while (($#)); do
    case "$1" in
        --no-start) START=0 ;;
        --prefix-venv)
            [[ $# -ge 2 ]] || { echo "install.sh: --prefix-venv needs a directory" >&2; exit 2; }
            VENV=$2; shift ;;
        --prefix-venv=*) VENV=${1#*=} ;;
        --bcc-headers) BCC_HEADERS=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

step() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die()  { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (try: sudo $0)"

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ -f $SRC/pyproject.toml ]] || die "no pyproject.toml in $SRC (run from a spyderd checkout)"

KVER=$(uname -r)
ETC=/etc/spyderd
SHARE=/usr/share/spyderd
STATE_DIR=/var/lib/spyderd
RUN_DIR=/run/spyderd
PIDFILE=$RUN_DIR/spyderd.pid
LOG=/var/log/spyderd.log
SBIN=/usr/local/sbin

# ---------------------------------------------------------------- packages
PACKAGES=(
    # probes: CO-RE objects built here (clang, bpftool, libbpf-dev), loaded with libbpf1;
    # bcc (python3-bpfcc) is the fallback for kernels without BTF
    clang bpftool libbpf-dev libbpf1
    bpfcc-tools python3-bpfcc python3-systemd systemd python3-venv python3-setuptools
    python3-yaml python3-lark python3-lmdb python3-pyroute2 python3-pytest python3-hypothesis
    graphviz runc busybox-static auditd make procps iproute2 util-linux ca-certificates
    # tests/packaging: a Debian root booted with systemd-nspawn, the .deb built with dpkg-deb
    debootstrap systemd-container dpkg-dev
    # tests/integration/test_sessions.py: sudo keeps the caller's login uid
    sudo
    # the fleet bus (tests/fleet run a real JetStream broker on 127.0.0.1)
    nats-server
    # tests of `spyderctl trace -o html` in a real browser (headless, DevTools over a pipe)
    chromium
    # tests/attacks: the tools the technique catalogue and the benign workload run for real
    tcpdump nmap socat iptables at cron logrotate netcat-openbsd selinux-utils bind9-dnsutils
    zip kmod strace gdb gcc git curl wget openssh-client gnupg python3-pip libcap2-bin
    lsof net-tools psmisc fio
)
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
pkg_exists() {  # a real (not purely virtual) package apt could install
    apt-cache show --no-all-versions "$1" 2>/dev/null | grep -q '^Package:'
}

step "apt-get update"
apt-get update -qq

step "installing Debian packages"
apt_install "${PACKAGES[@]}"

# ---------------------------------------------------------------- kernel headers
# Only the bcc fallback (kernels without BTF) compiles against /lib/modules/$KVER/build;
# with BTF the probes load as CO-RE objects and need no headers. Headers for the running
# kernel are installed when Debian has them; Debian's generic ones (struct layouts then
# differ from the running kernel, which is why spyderd never uses header offsets) are
# wired only without BTF, or with --bcc-headers. The linking logic is shared with the
# Debian package's postinst.
# shellcheck source=packaging/kernel-headers.sh
. "$SRC/packaging/kernel-headers.sh"
FLAVOR=$(kh_flavor)
HAVE_BTF=0
[[ -e /sys/kernel/btf/vmlinux ]] && HAVE_BTF=1
if pkg_exists "linux-headers-$KVER"; then
    step "installing kernel headers linux-headers-$KVER"
    apt_install "linux-headers-$KVER"
elif [[ $(kh_state "$KVER") != missing ]]; then
    step "kernel headers: /lib/modules/$KVER/build exists ($(kh_state "$KVER")); leaving it alone"
elif ((HAVE_BTF && !BCC_HEADERS)); then
    step "kernel has BTF: no kernel headers wired (only the bcc fallback needs them)"
else
    step "no linux-headers-$KVER package; installing linux-headers-$FLAVOR"
    apt_install "linux-headers-$FLAVOR"
    kh_link "$KVER" "$FLAVOR" || die "no usable kernel headers for bcc"
fi
case $(kh_state "$KVER") in
    matching) HEADERS_NOTE="matching ($KVER)" ;;
    missing) HEADERS_NOTE="none (not needed: the kernel has BTF)" ;;
    *) HEADERS_NOTE="MISMATCHED ($(readlink -f "/lib/modules/$KVER/build") for kernel $KVER)"
       warn "kernel headers do not match the running kernel $KVER: bcc compiles against"
       warn "$HEADERS_NOTE; spyderd takes struct offsets from BTF, never from headers." ;;
esac

# ---------------------------------------------------------------- venv + package
if [[ ! -x $VENV/bin/python ]]; then
    step "creating venv $VENV (--system-site-packages)"
    mkdir -p "$(dirname "$VENV")"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
else
    step "venv $VENV exists"
fi

# Build from a scratch copy so pip's in-tree build (build/, *.egg-info) never lands in the
# checkout other people are working in.
step "installing spyderd from $SRC into $VENV"
BUILD_TMP=$(mktemp -d /tmp/spyderd-build.XXXXXX)
trap 'rm -rf "$BUILD_TMP"' EXIT
tar -C "$SRC" --exclude=.git --exclude=build --exclude='*.egg-info' --exclude=__pycache__ \
    --exclude=.pytest_cache --exclude=.ruff_cache --exclude=.venv -cf - . | tar -C "$BUILD_TMP" -xf -
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation \
    --no-deps --upgrade "$BUILD_TMP"

# pySigma for `spyderctl rules import-sigma` (spyderd's Sigma backend), and sigma-cli so
# `sigma convert -t spyderd` works too; sigma-cli pins the pySigma version it works with.
if "$VENV/bin/python" -c 'import sigma.conversion, sigma.cli' 2>/dev/null; then
    step "pySigma and sigma-cli already in $VENV"
else
    step "installing pySigma and sigma-cli into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --timeout 60 \
        pysigma sigma-cli || die "could not install pysigma and sigma-cli from PyPI"
fi

# nats-py (fleet: exporter, spyderd-stitch, trace --fleet) is not packaged by Debian 12.
if "$VENV/bin/python" -c 'import nats' 2>/dev/null; then
    step "nats-py already in $VENV"
else
    step "installing nats-py into $VENV (fleet)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --timeout 30 \
        --retries 3 'nats-py>=2.6' || die "could not install nats-py from PyPI"
fi

# The probes' CO-RE objects: compiled once here (clang -target bpf against a vmlinux.h
# from this machine's BTF), relocated by libbpf against the running kernel at each start.
if [[ -e /sys/kernel/btf/vmlinux ]]; then
    step "building the probes' CO-RE objects (make -C probes)"
    make -s -C "$BUILD_TMP/probes" || die "building probes/*.bpf.o failed"
    PROBE_OBJS=("$BUILD_TMP"/probes/build/*.bpf.o)
else
    warn "no /sys/kernel/btf/vmlinux: CO-RE objects not built; spyderd will use bcc"
    PROBE_OBJS=()
fi

if [[ -x $VENV/bin/ruff ]]; then
    step "ruff already in $VENV"
else
    step "installing ruff into $VENV (optional)"
    if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check --timeout 20 \
            --retries 1 ruff; then
        warn "could not install ruff (PyPI unreachable?); 'make lint' will be skipped"
    fi
fi

step "linking spyderd, spyderctl, spyderd-stitch into $SBIN"
mkdir -p "$SBIN"
for exe in spyderd spyderctl spyderd-stitch; do
    [[ -x $VENV/bin/$exe ]] || die "$VENV/bin/$exe missing after pip install"
    ln -sfn "$VENV/bin/$exe" "$SBIN/$exe"
done

# ---------------------------------------------------------------- files
step "installing configuration, rules, probes, unit and tmpfiles"
if getent group spyder >/dev/null; then :; else groupadd --system spyder; fi

install -d -m 0755 "$ETC" "$ETC/rules.d"
if [[ -e $ETC/spyderd.yaml ]]; then
    echo "    $ETC/spyderd.yaml exists; kept (new default: $SRC/packaging/spyderd.yaml)"
else
    install -m 0644 "$SRC/packaging/spyderd.yaml" "$ETC/spyderd.yaml"
fi

# Replace the shipped rules and probes wholesale (local rules belong in $ETC/rules.d).
replace_dir() {  # $1: destination; remaining: files to put there
    local dest=$1; shift
    rm -rf "$dest"
    install -d -m 0755 "$dest"
    (($#)) && install -m 0644 "$@" "$dest/"
    return 0
}
shopt -s nullglob
replace_dir "$SHARE/rules" "$SRC"/rules/*.yaml
replace_dir "$SHARE/probes" "$SRC"/probes/*.c "$SRC"/probes/*.h
replace_dir "$SHARE/probes/build" "${PROBE_OBJS[@]}"
shopt -u nullglob
install -D -m 0644 "$SRC/README.md" /usr/share/doc/spyderd/README.md

install -D -m 0644 "$SRC/packaging/spyderd.service" /etc/systemd/system/spyderd.service
install -D -m 0644 "$SRC/packaging/spyderd-stitch.service" \
    /etc/systemd/system/spyderd-stitch.service
install -D -m 0644 "$SRC/packaging/sysusers.conf" /etc/sysusers.d/spyderd.conf
install -D -m 0644 "$SRC/packaging/tmpfiles.conf" /etc/tmpfiles.d/spyderd.conf
install -d -m 0750 -o root -g spyder "$STATE_DIR" "$RUN_DIR" /var/log/spyderd
# journald message catalog: `journalctl -x` explains spyderd's own messages.
install -D -m 0644 "$SRC/packaging/spyderd.catalog" /usr/lib/systemd/catalog/spyderd.catalog
journalctl --update-catalog || warn "journalctl --update-catalog failed"

# ---------------------------------------------------------------- tracefs / debugfs
step "mounting tracefs and debugfs if needed"
mount_if_needed() {  # $1 type, $2 mount point
    if mountpoint -q "$2"; then return 0; fi
    mkdir -p "$2" 2>/dev/null || true
    mount -t "$1" "$1" "$2" || warn "could not mount $1 on $2; probes may fail to attach"
}
mount_if_needed tracefs /sys/kernel/tracing
mount_if_needed debugfs /sys/kernel/debug

# ---------------------------------------------------------------- start
spyderd_pid() {  # prints the pid of the background spyderd if it is alive
    local pid
    [[ -r $PIDFILE ]] || return 1
    pid=$(<"$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q spyderd || return 1
    echo "$pid"
}

JOURNAL_SOCKET=/run/systemd/journal/socket
journald_alive() {  # the socket exists and something listens on it (a dead journald leaves it)
    [[ -S $JOURNAL_SOCKET ]] || return 1
    /usr/bin/python3 - "$JOURNAL_SOCKET" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(sys.argv[1])
PY
}

START_NOTE="not started (--no-start)"
if ((START)); then
    if [[ $(cat /proc/1/comm 2>/dev/null) == systemd ]]; then
        step "systemd is PID 1: enabling and (re)starting spyderd.service"
        systemctl daemon-reload
        systemctl enable spyderd.service
        systemctl restart spyderd.service
        START_NOTE="systemd unit spyderd.service enabled and running"
    else
        if ! journald_alive; then
            step "starting systemd-journald in the background"
            mkdir -p /run/systemd/journal
            setsid /lib/systemd/systemd-journald </dev/null >/dev/null 2>&1 &
            for _ in $(seq 50); do
                journald_alive && break
                sleep 0.1
            done
            journald_alive || warn "journald is not answering on $JOURNAL_SOCKET after 5 s"
        fi
        if pid=$(spyderd_pid); then
            step "spyderd already running (pid $pid); not starting another"
        else
            step "starting spyderd in the background (log: $LOG)"
            # setsid does not fork here (we are not a process group leader), so $! is spyderd.
            setsid nohup "$SBIN/spyderd" </dev/null >>"$LOG" 2>&1 &
            pid=$!
            echo "$pid" >"$PIDFILE"
        fi
        step "waiting for spyderd to attach its probes (spyderctl status --wait 60)"
        if ! "$SBIN/spyderctl" status --wait 60; then
            echo "---- last lines of $LOG ----" >&2
            tail -n 30 "$LOG" >&2 || true
            die "spyderd did not become ready (pid $pid)"
        fi
        START_NOTE="running in the background, pid $pid (stop: kill \$(cat $PIDFILE))"
        echo "NOTE: systemd is not PID 1 here, so spyderd was started in the background."
        echo "      Stop it with: kill \$(cat $PIDFILE)"
    fi
fi

# ---------------------------------------------------------------- summary
cat <<EOF
==> done
    venv:      $VENV ($("$VENV/bin/python" -m pip show spyderd 2>/dev/null | sed -n 's/^Version: //p'))
    commands:  $SBIN/spyderd, $SBIN/spyderctl
    config:    $ETC/spyderd.yaml, local rules in $ETC/rules.d/
    shipped:   $SHARE/rules ($(find "$SHARE/rules" -type f | wc -l) files), $SHARE/probes ($(find "$SHARE/probes" -type f | wc -l) files, ${#PROBE_OBJS[@]} CO-RE objects)
    unit:      /etc/systemd/system/spyderd.service, /etc/{tmpfiles,sysusers}.d/spyderd.conf
    state:     $STATE_DIR, $RUN_DIR (0750 root:spyder)
    headers:   $HEADERS_NOTE
    spyderd:   $START_NOTE
EOF
