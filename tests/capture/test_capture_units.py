"""The pure parts of capture, without the kernel: decoders' text helpers, filter flags,
per-hook guards, blaming the probe a compiler error points at, status lines."""

from __future__ import annotations

from spyderd.capture import probe_kernel, probe_network
from spyderd.capture.bpf import LoadError, ProbeStatus, blame, hook_labels, source_spans
from spyderd.capture.probe_process import cwd_text
from spyderd.capture.records import fallback_syscalls, signed32
from spyderd.capture.registry import AttachPoint, Probe


def test_cwd_from_leaf_first_components():
    assert cwd_text(b"er\0deep\0tmp\0", False) == "/tmp/deep/er"
    assert cwd_text(b"", False) == "/"
    assert cwd_text(b"c\0b\0", True) == ".../b/c"


def test_unix_paths_and_abstract_names():
    assert probe_network.unix_path(b"/run/x.sock\0\0\0", 12) == "/run/x.sock"
    assert probe_network.unix_path(b"\0abstract\0\0", 9) == "@abstract"


def test_unset_ids_read_as_minus_one():
    assert signed32(0xFFFFFFFF) == -1
    assert signed32(1000) == 1000


def test_guard_names_and_labels():
    assert AttachPoint("tracepoint", "syscalls:sys_enter_init_module").guard == (
        "HAVE_SYSCALLS_SYS_ENTER_INIT_MODULE")
    assert AttachPoint("raw_tracepoint", "sched:sched_process_fork").guard == (
        "HAVE_SCHED_SCHED_PROCESS_FORK")
    assert hook_labels(["syscalls:sys_enter_kexec_load", "syscalls:sys_exit_kexec_load",
                        "sock:inet_sock_set_state"]) == ["kexec_load()",
                                                         "sock:inet_sock_set_state"]


def test_kernel_probe_fallback_only_for_missing_hooks():
    missing = frozenset({"syscalls:sys_enter_init_module", "syscalls:sys_exit_init_module"})
    flags, note = probe_kernel.configure({}, missing)
    maps = probe_kernel.maps({}, missing)
    if fallback_syscalls():
        assert "-DSC_FALLBACK=1" in flags and "raw_syscalls" in note
        assert maps["sc_watch"] == {fallback_syscalls()["init_module"]: 1}
    flags, note = probe_kernel.configure({}, frozenset())
    assert "-DSC_FALLBACK=1" not in flags and note == ""
    flags, note = probe_kernel.configure({"syscall_fallback": False}, missing)
    assert "-DSC_FALLBACK=1" not in flags
    assert probe_kernel.maps({"syscall_fallback": False}, missing)["sc_watch"] == {}


def test_kernel_probe_filters_from_config():
    flags, _ = probe_kernel.configure({"kill_signals": [9, 15], "ptrace_requests": [],
                                       "bpf_cmds": [5]}, frozenset())
    assert f"-DKILL_SIGMASK={(1 << 8) | (1 << 14)}ULL" in flags
    assert "-DFILTER_PTRACE=1" not in flags  # empty list: every request
    assert "-DFILTER_BPF_CMDS=1" in flags
    flags, _ = probe_kernel.configure({}, frozenset())
    assert f"-DKILL_SIGMASK={(1 << 64) - 1}ULL" in flags
    assert "-DFILTER_PTRACE=1" in flags  # default: attach and write requests only


def test_network_probe_udp_filters():
    flags, _ = probe_network.configure({"udp_ports": [53], "udp_repeat_seconds": 0.5},
                                       frozenset())
    assert "-DFILTER_UDP_PORTS=1" in flags and "-DUDP_REPEAT_NS=500000000ULL" in flags
    assert probe_network.maps({"udp_ports": [53]}, frozenset()) == {
        "udp_port_filter": {53: 1}}
    flags, _ = probe_network.configure({"udp_repeat_seconds": 0}, frozenset())
    assert "-DUDP_REPEAT_NS=0ULL" in flags and "-DFILTER_UDP_PORTS=1" not in flags


def test_blame_finds_probe_from_compiler_line_and_program_name():
    a = Probe("a", "a.bpf.c", ())
    b = Probe("b", "b.bpf.c", ())
    texts = {"a": "int x;\nint y;\n", "b": "TRACEPOINT_PROBE(syscalls, sys_enter_link) {}\n"}
    (_, a1), (b0, _) = source_spans([a, b], texts)
    err = LoadError("Failed to compile BPF module <text>",
                    f"/virtual/main.c:{b0}:3: error: conflicting types for 'stash'\n")
    assert blame(err, [a, b], texts) is b
    assert "conflicting types" in err.reason()
    err = LoadError("Failed to compile BPF module <text>",
                    f"/virtual/main.c:{a1}:1: error: boom\n")
    assert blame(err, [a, b], texts) is a
    err = LoadError("Failed to load BPF program b'tracepoint__syscalls__sys_enter_link': "
                    "Argument list too long", "")
    assert blame(err, [a, b], texts) is b
    assert blame(LoadError("something else", ""), [a, b], texts) is None


def test_status_lines():
    st = ProbeStatus("kernel", "attached", selftest="ok",
                     missing=["syscalls:sys_enter_init_module", "syscalls:sys_exit_init_module"],
                     note="init_module() seen through raw_syscalls")
    assert st.text() == ("attached, self-test ok; hooks unavailable: init_module() "
                         "(init_module() seen through raw_syscalls)")
    assert ProbeStatus("x", "unavailable", "missing hooks: a:b").text() == (
        "unavailable: missing hooks: a:b")
    assert ProbeStatus("x", "attached").to_dict()["text"] == "attached"


def test_program_names_from_bcc_are_text():
    from types import SimpleNamespace as NS

    from spyderd.capture.progstats import bpf_programs, program_label

    bpf = NS(funcs={b"tracepoint__sock__inet_sock_set_state": NS(fd=0), b"gone": NS(fd=-1)})
    progs = bpf_programs(bpf)
    assert list(progs) == ["tracepoint__sock__inet_sock_set_state"]
    assert program_label(next(iter(progs))) == "inet_sock_set_state"
