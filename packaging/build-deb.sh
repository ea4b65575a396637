#!/usr/bin/env bash
# Build the Debian package spyderd_<version>_all.deb from this checkout (no debhelper).
#
#   packaging/build-deb.sh [--out DIR]
#
#   --out DIR   where the .deb goes (default: the current directory)
#
# Python, plus the probes' CO-RE objects compiled here (build dependencies in
# packaging/debian/build-depends: clang, bpftool, libbpf-dev, make). The package goes to
# /usr/lib/python3/dist-packages and runs on Debian's python3 with libbpf1, systemd, lark,
# yaml, lmdb and pyroute2 (Depends in packaging/debian/control.in; bcc only recommended,
# for kernels without BTF). Prints the path of the .deb on its last line.
set -euo pipefail

OUT=$PWD
usage() { sed -n '2,10s/^# \{0,1\}//p' "$0"; }
while (($#)); do
    case "$1" in
        --out) [[ $# -ge 2 ]] || { echo "build-deb.sh: --out needs a directory" >&2; exit 2; }
               OUT=$2; shift ;;
        --out=*) OUT=${1#*=} ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build-deb.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKG=$SRC/packaging
VERSION=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$SRC/pyproject.toml" | head -n1)
[[ -n $VERSION ]] || { echo "build-deb.sh: no version in $SRC/pyproject.toml" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEB=$OUT/spyderd_${VERSION}_all.deb

missing=()
while read -r dep; do
    [[ -z $dep || $dep == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q 'ok installed' || missing+=("$dep")
done <"$PKG/debian/build-depends"
((${#missing[@]} == 0)) || {
    echo "build-deb.sh: missing build dependencies: ${missing[*]}" >&2; exit 1; }

STAGE=$(mktemp -d /tmp/spyderd-deb.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
R=$STAGE/root

# The probes' CO-RE objects, from a scratch copy of probes/ (the checkout stays clean).
cp -r "$SRC/probes" "$STAGE/probes"
rm -rf "$STAGE/probes/build"
make -s -C "$STAGE/probes" >&2

# ---------------------------------------------------------------- files
# Python package (sources only; postinst byte-compiles with py3compile).
install -d "$R/usr/lib/python3/dist-packages"
tar -C "$SRC" --exclude=__pycache__ --exclude='*.pyc' -cf - spyderd |
    tar -C "$R/usr/lib/python3/dist-packages" -xf -

# Entry points. -I: a root daemon ignores PYTHON* variables and the user site directory.
entry() {  # $1 path, $2 module
    install -d "$(dirname "$1")"
    printf '#!/usr/bin/python3 -I\nimport sys\n\nfrom %s import main\n\nsys.exit(main())\n' \
        "$2" >"$1"
    chmod 0755 "$1"
}
entry "$R/usr/sbin/spyderd" spyderd.daemon.wiring
entry "$R/usr/bin/spyderctl" spyderd.ctl.cli
entry "$R/usr/bin/spyderd-stitch" spyderd.fleet.stitch

shopt -s nullglob
install -d "$R/usr/share/spyderd/rules" "$R/usr/share/spyderd/probes"
install -m 0644 "$SRC"/rules/*.yaml "$R/usr/share/spyderd/rules/"
install -m 0644 "$SRC"/probes/*.c "$SRC"/probes/*.h "$R/usr/share/spyderd/probes/"
install -d "$R/usr/share/spyderd/probes/build"
install -m 0644 "$STAGE"/probes/build/*.bpf.o "$R/usr/share/spyderd/probes/build/"
shopt -u nullglob
install -m 0644 "$PKG/kernel-headers.sh" "$R/usr/share/spyderd/kernel-headers.sh"

install -D -m 0644 "$PKG/spyderd.service" "$R/lib/systemd/system/spyderd.service"
install -D -m 0644 "$PKG/spyderd-stitch.service" "$R/lib/systemd/system/spyderd-stitch.service"
install -D -m 0644 "$PKG/sysusers.conf" "$R/usr/lib/sysusers.d/spyderd.conf"
install -D -m 0644 "$PKG/tmpfiles.conf" "$R/usr/lib/tmpfiles.d/spyderd.conf"
install -D -m 0644 "$PKG/spyderd.catalog" "$R/usr/lib/systemd/catalog/spyderd.catalog"
install -D -m 0644 "$PKG/spyderd.yaml" "$R/etc/spyderd/spyderd.yaml"
install -d -m 0755 "$R/etc/spyderd/rules.d"

install -D -m 0644 "$SRC/README.md" "$R/usr/share/doc/spyderd/README.md"
install -m 0644 "$PKG/debian/copyright" "$R/usr/share/doc/spyderd/copyright"
gzip -9n -c >"$R/usr/share/doc/spyderd/changelog.Debian.gz" <<EOF
spyderd ($VERSION) unstable; urgency=medium

  * Built from the spyderd source tree by packaging/build-deb.sh.

 -- spyderd developers <spyderd@localhost>  $(date -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")
EOF

# ---------------------------------------------------------------- control
install -d "$R/DEBIAN"
SIZE=$(du -sk --exclude=DEBIAN "$R" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@INSTALLED_SIZE@/$SIZE/" "$PKG/debian/control.in" \
    >"$R/DEBIAN/control"
for s in postinst prerm postrm; do
    install -m 0755 "$PKG/debian/$s" "$R/DEBIAN/$s"
done
# Every file under /etc is a conffile: local edits survive upgrades (dpkg asks).
(cd "$R" && find etc -type f | sed 's|^|/|' | sort) >"$R/DEBIAN/conffiles"
(cd "$R" && find . -path ./DEBIAN -prune -o -type f -print0 | sort -z |
    xargs -0 md5sum | sed 's| \./| |') >"$R/DEBIAN/md5sums"

# Files are root-owned in the package whoever builds it.
dpkg-deb --root-owner-group -Zxz --build "$R" "$DEB" >/dev/null
echo "$DEB"
