#!/bin/bash
# Ordinary admin and developer work, run as root by tests/attacks/test_attacks.py under a
# spyderd with the default rules: none of it may raise a high or critical finding.
# Everything it makes is removed at the end. $TAG is unique per run.
set -eu
W=$(mktemp -d /root/spyder-benign-XXXXXX)
USER_NAME="bn$TAG"
CTR="benign-$TAG"
cleanup() {
    set +e
    [ -n "${HTTP_PID:-}" ] && kill "$HTTP_PID" 2>/dev/null
    runc kill "$CTR" KILL 2>/dev/null; runc delete -f "$CTR" 2>/dev/null
    id "$USER_NAME" >/dev/null 2>&1 && deluser --quiet --remove-home "$USER_NAME" >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT
T0=$(date +%s)
step() { echo "== +$(( $(date +%s) - T0 ))s $*"; }
# Network steps (a package mirror, an index) and locks other admins hold (dpkg's) are
# retried, as an admin would, instead of failing the whole workload on one hiccup.
retry() {
    local n=1
    until "$@"; do
        [ "$n" -ge 3 ] && { echo "failed 3 times: $*" >&2; return 1; }
        echo "attempt $n failed, retrying: $*" >&2
        sleep $((n * 5)); n=$((n + 1))
    done
}
# The host's own package index when pip's configuration names one that holds the package
# (an offline mirror, file://...), so that the install does not depend on PyPI being up.
local_index() {
    "$1" config list 2>/dev/null | grep -o "file://[^' ]*" | while read -r url; do
        if [ -d "${url#file://}/$2" ]; then echo "--index-url=$url"; break; fi
    done
}

step "apt reinstall of a package"
# the .deb comes from apt's cache when it holds the candidate; dpkg's lock is waited for
retry env DEBIAN_FRONTEND=noninteractive apt-get install --reinstall -y -qq \
    -o DPkg::Lock::Timeout=120 -o Acquire::Retries=3 netcat-openbsd >/dev/null

step "pip install into a virtualenv"
python3 -m venv "$W/venv"
INDEX=$(local_index "$W/venv/bin/pip" six)
retry "$W/venv/bin/pip" install -q --disable-pip-version-check --retries 2 --timeout 20 \
    ${INDEX:+"$INDEX"} six
"$W/venv/bin/python" -c "import six"

step "compile and run a program"
mkdir -p "$W/src" && cd "$W/src"
printf '#include <stdio.h>\nint main(void){puts("hello");return 0;}\n' > hello.c
gcc -O2 -o hello hello.c
./hello >/dev/null
make -s -f /dev/null hello 2>/dev/null || true

step "git"
git init -q "$W/repo" && cd "$W/repo"
git config user.email dev@example.test && git config user.name dev
echo "readme" > README && git add README && git commit -q -m "first"
git checkout -q -b feature && echo more >> README && git commit -q -am "second"
git log --oneline >/dev/null && git diff HEAD~1 >/dev/null
git clone -q "$W/repo" "$W/clone"

step "an HTTP server serving files"
mkdir -p "$W/www" && echo "<h1>hi</h1>" > "$W/www/index.html"
# a free port (a fixed one may be taken by another program on a shared machine)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$W/www" "$PORT" >/dev/null 2>&1 &
HTTP_PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
curl -sf --retry 3 --retry-connrefused "http://127.0.0.1:$PORT/index.html" >/dev/null
wget -q --tries=3 -O "$W/index.copy" "http://127.0.0.1:$PORT/index.html"
grep -q hi "$W/index.copy"
kill "$HTTP_PID"; wait "$HTTP_PID" 2>/dev/null || true; HTTP_PID=

step "run-parts of cron.daily (no random sleep in apt's job)"
printf 'APT::Periodic::RandomSleep "0";\n' > "$W/apt.conf"
APT_CONFIG="$W/apt.conf" run-parts --report /etc/cron.daily >/dev/null 2>&1 || true

step "sudo and su"
sudo -n true
sudo -u nobody -n /bin/true
su -s /bin/sh -c true nobody
su - root -c 'id -u' >/dev/null

step "log rotation (an application's own log directory)"
mkdir -p "$W/log"
echo "line" > "$W/log/app.log"
cat > "$W/rotate.conf" <<EOF
$W/log/app.log {
    rotate 2
    compress
    missingok
    create 0640 root root
}
EOF
logrotate -f -s "$W/rotate.state" "$W/rotate.conf"
echo "again" >> "$W/log/app.log"
logrotate -f -s "$W/rotate.state" "$W/rotate.conf"

step "add and remove a user the documented way"
adduser --quiet --disabled-password --gecos "" "$USER_NAME"
deluser --quiet --remove-home "$USER_NAME" >/dev/null 2>&1

step "container start and stop with runc"
B="$W/bundle"
mkdir -p "$B/rootfs/bin" "$B/rootfs/proc" "$B/rootfs/dev" "$B/rootfs/sys" "$B/rootfs/tmp"
cp /bin/busybox "$B/rootfs/bin/busybox"
for a in sh sleep echo; do ln -s busybox "$B/rootfs/bin/$a"; done
(cd "$B" && runc spec)
python3 - "$B/config.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["process"]["terminal"] = False
cfg["process"]["args"] = ["sh", "-c", "echo up; sleep 30"]
cfg["root"]["readonly"] = True
json.dump(cfg, open(sys.argv[1], "w"))
PY
runc run -d --bundle "$B" "$CTR" >"$W/runc.out" 2>&1 </dev/null || { cat "$W/runc.out" >&2; exit 1; }
for _ in $(seq 50); do runc state "$CTR" 2>/dev/null | grep -q '"running"' && break; sleep 0.1; done
runc kill "$CTR" TERM
for _ in $(seq 100); do runc state "$CTR" 2>/dev/null | grep -q stopped && break; sleep 0.1; done
runc delete -f "$CTR"
step "done"
