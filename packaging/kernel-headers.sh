# Shell functions that point /lib/modules/$(uname -r)/{build,source} at kernel headers bcc
# can compile against. Sourced by packaging/install.sh and by the Debian package's postinst
# (installed as /usr/share/spyderd/kernel-headers.sh); POSIX sh, no apt calls in here.
#
# bcc compiles the probes against /lib/modules/$KVER/build. Headers for the running kernel
# are best. Without them, Debian's generic linux-headers-<flavor> do: struct layouts then
# differ from the running kernel, which is why spyderd never uses header offsets and takes
# them from BTF (/sys/kernel/btf/vmlinux) instead.

# kh_flavor: Debian's kernel flavor for this architecture (amd64, arm64, 686-pae, ...).
kh_flavor() {
    case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
        i386) echo 686-pae ;;
        armhf) echo armmp ;;
        x86_64) echo amd64 ;;
        aarch64) echo arm64 ;;
        *) dpkg --print-architecture ;;
    esac
}

# kh_matches DIR KVER: DIR holds headers built for kernel KVER.
kh_matches() {
    [ -f "$1/include/generated/utsrelease.h" ] &&
        grep -qF "\"$2\"" "$1/include/generated/utsrelease.h"
}

# kh_state KVER: prints "matching", "present" (a usable build dir for another version, or
# one we must not touch) or "missing" (absent or a dangling link).
kh_state() {
    build=/lib/modules/$1/build
    if kh_matches "$build" "$1"; then
        echo matching
    elif [ -d "$build" ]; then
        echo present
    else
        echo missing
    fi
}

# kh_newest_generic FLAVOR: the newest /usr/src/linux-headers-*-FLAVOR directory, if any.
kh_newest_generic() {
    find /usr/src -maxdepth 1 -type d -name "linux-headers-*-$1" 2>/dev/null | sort -V | tail -n1
}

# kh_link KVER FLAVOR: when /lib/modules/KVER/build is missing or dangling, point build and
# source at the newest generic headers. Never replaces a real directory or a working link
# (a read-only /lib/modules, as in a container, is left alone). Prints what it did; returns
# 1 when no headers can be found.
kh_link() {
    kver=$1
    flavor=$2
    state=$(kh_state "$kver")
    if [ "$state" != missing ]; then
        echo "kernel headers: /lib/modules/$kver/build is $state; left alone"
        return 0
    fi
    hdr=$(kh_newest_generic "$flavor")
    if [ -z "$hdr" ]; then
        echo "kernel headers: none for $kver and no /usr/src/linux-headers-*-$flavor;" \
            "install linux-headers-$kver or linux-headers-$flavor" >&2
        return 1
    fi
    common=${hdr%-"$flavor"}-common
    [ -d "$common" ] || common=$hdr
    if ! mkdir -p "/lib/modules/$kver" 2>/dev/null ||
        ! ln -sfn "$hdr" "/lib/modules/$kver/build" 2>/dev/null; then
        echo "kernel headers: cannot write /lib/modules/$kver (read-only?); bcc may fail" >&2
        return 1
    fi
    if [ -e "/lib/modules/$kver/source" ] && [ ! -L "/lib/modules/$kver/source" ]; then
        echo "kernel headers: /lib/modules/$kver/source is a real directory; left alone" >&2
    else
        ln -sfn "$common" "/lib/modules/$kver/source"
    fi
    echo "kernel headers: MISMATCHED: /lib/modules/$kver/build -> $hdr (kernel $kver);" \
        "spyderd takes struct offsets from BTF, never from these headers"
    return 0
}
