"""The script operand of an interpreter's argv, in user space (`process.script`) and as the
files probe finds it in the kernel (the option letters `kernel_interpreters` hands it).

The kernel's walk (probes/files.bpf.c `interp_wait`/`word_kind`) is modelled here over the
same masks so that the two agree on ordinary command lines; the live tests
(tests/capture/test_exec_context.py) run the real one."""

from __future__ import annotations

import pytest

from spyderd.capture.execinfo import (
    IF_NOPLAIN,
    IF_PLUS,
    INTERP_OPTS,
    interpreter_family,
    interpreter_options,
    kernel_interpreters,
    script_arg,
    script_path,
)


def _bit(c: str) -> int:
    return 1 << (ord(c) - ord("a") if c.islower() else 26 + ord(c) - ord("A"))


def _kernel_pick(opts: bytes, argv: list[str]) -> str | None:
    """What interp_wait arms for `argv` (a model of the C walk, 8 words after argv[0])."""
    inline, valued, script_opt, flags, _ = INTERP_OPTS.unpack(opts)
    state = "on"
    for w in argv[1:9]:
        if state == "skip":
            state = "on"
            continue
        if state == "next":
            return w or None
        if w[:1] != "-" and not (w[:1] == "+" and flags & IF_PLUS):
            return None if flags & IF_NOPLAIN else (w or None)
        if w == "-":
            return None
        if w[1] == "-":
            state = "on" if w[2:] else "next"
            continue
        for j, c in enumerate(w[1:16], 1):
            bit = _bit(c) if c.isascii() and c.isalpha() else 0
            if inline & bit:
                return None
            if script_opt & bit:
                if w[j + 1:]:
                    return None
                state = "next"
                break
            if valued & bit:
                state = "on" if w[j + 1:] else "skip"
                break
    return None


ARGVS = [
    (["bash", "/tmp/x.sh", "a"], "/tmp/x.sh"),
    (["sh", "-e", "x.sh"], "x.sh"),
    (["bash", "-x", "-o", "pipefail", "x.sh"], "x.sh"),
    (["bash", "+o", "history", "x.sh"], "x.sh"),
    (["bash", "-c", "echo hi", "x"], None),
    (["bash", "-xc", "echo hi"], None),
    (["bash", "-s", "a"], None),
    (["bash"], None),
    (["dash", "--", "x.sh"], "x.sh"),
    (["python3", "/dev/shm/x.py"], "/dev/shm/x.py"),
    (["python3", "-u", "-W", "ignore", "x.py", "-v"], "x.py"),
    (["python3", "-Wignore", "x.py"], "x.py"),
    (["python3", "-m", "http.server"], None),
    (["python3", "-c", "print(1)", "x.py"], None),
    (["python3", "-"], None),
    (["perl", "-I", "lib", "x.pl"], "x.pl"),
    (["perl", "-Ilib", "-w", "x.pl"], "x.pl"),
    (["perl", "-e", "print 1"], None),
    (["ruby", "-r", "json", "x.rb"], "x.rb"),
    (["node", "app.js"], "app.js"),
    (["node", "-e", "1"], None),
    (["php", "-d", "x=1", "x.php"], "x.php"),
    (["awk", "-f", "prog.awk", "data"], "prog.awk"),
    (["awk", "-F:", "{print $1}", "data"], None),
    (["gawk", "-v", "a=1", "-f", "p.awk"], "p.awk"),
]


@pytest.mark.parametrize(("argv", "script"), ARGVS)
def test_script_operand_user_space_and_kernel_agree(argv: list[str], script: str | None):
    family = interpreter_family(argv[0])
    assert family is not None
    assert script_arg(family, argv) == script
    opts = kernel_interpreters()[argv[0].encode().ljust(16, b"\0")]
    assert _kernel_pick(opts, argv) == script


def test_interpreter_option_letters():
    inline, valued, script_opt, flags, _ = INTERP_OPTS.unpack(interpreter_options("python"))
    assert inline == _bit("c") | _bit("m") and valued == _bit("W") | _bit("X")
    assert script_opt == 0 and flags == 0
    inline, valued, _, flags, _ = INTERP_OPTS.unpack(interpreter_options("shell"))
    assert inline == _bit("c") | _bit("s") and valued == _bit("o") | _bit("O")
    assert flags == IF_PLUS
    _, valued, script_opt, flags, _ = INTERP_OPTS.unpack(interpreter_options("awk"))
    assert script_opt == _bit("f") and valued == _bit("v") | _bit("F") and flags == IF_NOPLAIN


def test_kernel_interpreters_are_comm_keys(tmp_path):
    for name in ("python3.13", "perl5.40.0", "tclsh8.6", "ls", "busybox"):
        (tmp_path / name).touch()
    (tmp_path / "a-very-long-interpreter").touch()
    keys = kernel_interpreters((str(tmp_path),))
    names = {k.rstrip(b"\0").decode() for k in keys}
    assert {"bash", "sh", "dash", "python3", "perl", "node", "awk"} <= names
    assert {"python3.13", "perl5.40.0", "tclsh8.6"} <= names
    assert "ls" not in names and "busybox" not in names  # busybox runs every applet
    assert all(len(k) == 16 and k.endswith(b"\0") for k in keys)
    assert all(len(v) == INTERP_OPTS.size for v in keys.values())


def test_script_path_joins_cwd_and_takes_shebang_scripts():
    assert script_path("/usr/bin/bash", "", ["bash", "x.sh"], "/srv") == "/srv/x.sh"
    assert script_path("/tmp/run", "/bin/sh", ["/bin/sh", "/tmp/run"], "/") == "/tmp/run"
    assert script_path("/usr/bin/python3", "", ["python3", "-c", "1"], "/") == ""
