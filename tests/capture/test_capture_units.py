"""The pure parts of capture, without the kernel: decoders' text helpers, probe settings,
the bcc rewrite of the shared probe dialect, hooks from program names, blaming the probe a
compiler error points at, loader choice, status lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from spyderd.capture.config import CaptureConfig
from spyderd.capture.load_bcc import (
    LoadError,
    blame,
    config_defaults,
    map_calls_to_bcc,
    required_fields,
    resolve_fields,
    source_spans,
)
from spyderd.capture.load_bcc import hook_of as bcc_hook
from spyderd.capture.load_libbpf import hook_of as libbpf_hook
from spyderd.capture.loader import Capture, ProbeStatus, choose_loader, hook_labels
from spyderd.capture.probes import kernel as probe_kernel
from spyderd.capture.probes import network as probe_network
from spyderd.capture.probes.process import cwd_text
from spyderd.capture.records import fallback_syscalls, signed32
from spyderd.capture.registry import Probe
from spyderd.errors import ConfigError


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


def test_hook_labels():
    assert hook_labels(["syscalls:sys_enter_kexec_load", "syscalls:sys_exit_kexec_load",
                        "sock:inet_sock_set_state"]) == ["kexec_load()",
                                                         "sock:inet_sock_set_state"]


def test_kernel_probe_fallback_only_for_missing_hooks():
    missing = frozenset({"syscalls:sys_enter_init_module", "syscalls:sys_exit_init_module"})
    s = probe_kernel.configure(CaptureConfig(), missing)
    maps = probe_kernel.maps(CaptureConfig(), missing)
    if fallback_syscalls():
        assert probe_kernel.SC_HOOK not in s.skip and "raw_syscalls" in s.note
        assert maps["sc_watch"] == {fallback_syscalls()["init_module"]: 1}
    s = probe_kernel.configure(CaptureConfig(), frozenset())
    assert probe_kernel.SC_HOOK in s.skip and s.note == ""
    s = probe_kernel.configure(CaptureConfig(syscall_fallback=False), missing)
    assert probe_kernel.SC_HOOK in s.skip
    assert probe_kernel.maps(CaptureConfig(syscall_fallback=False), missing)["sc_watch"] == {}


def test_kernel_probe_filters_from_config():
    s = probe_kernel.configure(CaptureConfig(kill_signals=(9, 15), ptrace_requests=(),
                                             bpf_cmds=(5,)), frozenset())
    assert s.values["kill_sigmask"] == (1 << 8) | (1 << 14)
    assert s.values["filter_ptrace"] == 0  # empty list: every request
    assert s.values["filter_bpf_cmds"] == 1
    s = probe_kernel.configure(CaptureConfig(), frozenset())
    assert s.values["kill_sigmask"] == (1 << 64) - 1
    assert s.values["filter_ptrace"] == 1  # default: attach and write requests only


def test_network_probe_udp_filters():
    s = probe_network.configure(CaptureConfig(udp_ports=(53,), udp_repeat_seconds=0.5),
                                frozenset())
    assert s.values == {"filter_udp_ports": 1, "udp_repeat_ns": 500_000_000}
    assert probe_network.maps(CaptureConfig(udp_ports=(53,)), frozenset()) == {
        "udp_port_filter": {53: 1}}
    s = probe_network.configure(CaptureConfig(udp_repeat_seconds=0.0), frozenset())
    assert s.values == {"filter_udp_ports": 0, "udp_repeat_ns": 0}


def test_map_helper_calls_become_bcc_methods():
    src = ("u64 *v = bpf_map_lookup_elem(&kcount, &idx);\n"
           "bpf_map_update_elem(&pending, &tid, f(a, b), BPF_ANY);\n"
           "bpf_map_delete_elem(&pending, &tid);\n"
           "r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);\n"
           "bpf_ringbuf_output(&events, r, size, 0);\n"
           "bpf_ringbuf_submit(r, 0);\n"
           "bpf_tail_call(ctx, &fstages, STAGE_FINISH);\n")
    assert map_calls_to_bcc(src) == (
        "u64 *v = kcount.lookup(&idx);\n"
        "pending.update(&tid, f(a, b));\n"
        "pending.delete(&tid);\n"
        "r = events.ringbuf_reserve(sizeof(*r));\n"
        "events.ringbuf_output(r, size, 0);\n"
        "bpf_ringbuf_submit(r, 0);\n"
        "fstages.call(ctx, STAGE_FINISH);\n")


class _FakeBTF:
    def offsetof(self, struct: str, path: str) -> int:
        known = {("task_struct", "tgid"): 2360, ("fs_struct", "pwd.dentry"): 48}
        if (struct, path) not in known:
            raise KeyError(f"{struct}.{path} not in BTF")
        return known[(struct, path)]


def test_kernel_fields_resolved_for_bcc():
    src = ("#define OFF_TGID KOFF(task_struct, tgid)\n"
           "x = KOFF(fs_struct, pwd.dentry);\n"
           "if (KFIELD_EXISTS(task_struct, loginuid)) y = KOFF(task_struct, loginuid);\n")
    out = resolve_fields(src, _FakeBTF())  # type: ignore[arg-type]
    assert out == ("#define OFF_TGID 2360\nx = 48;\nif (0) y = 0;\n")
    assert required_fields(src) == {("task_struct", "tgid"), ("fs_struct", "pwd.dentry")}
    no_btf = resolve_fields(src, None)
    assert "offsetof(struct fs_struct, pwd.dentry)" in no_btf and "if (0)" in no_btf


def test_config_defaults_from_source():
    src = "SPY_CONFIG(max_args, 32)       /* x */\nSPY_CONFIG(kill_sigmask, ~0ULL)\n"
    assert config_defaults(src) == {"max_args": "32", "kill_sigmask": "~0ULL"}


def test_hooks_from_program_names_and_sections():
    assert bcc_hook("sc__sys_enter_openat") == ("tracepoint", "syscalls:sys_enter_openat")
    assert bcc_hook("raw_tp__sched_process_exec") == ("raw_tracepoint", "sched_process_exec")
    assert bcc_hook("raw_tp__sched_process_exec__files_on_exec") == (
        "raw_tracepoint", "sched_process_exec")
    assert bcc_hook("files_resolve") is None
    assert libbpf_hook("tracepoint/syscalls/sys_exit_openat") == "syscalls:sys_exit_openat"
    assert libbpf_hook("raw_tp/sched_process_fork") == "sched_process_fork"
    assert libbpf_hook("tracepoint") is None  # a tail-called program


def test_loader_choice(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("SPYDERD_LOADER", raising=False)
    assert choose_loader("auto", True, tmp_path)[0] == "bcc"  # no objects built
    (tmp_path / "process.bpf.o").write_bytes(b"")
    assert choose_loader("auto", True, tmp_path) == ("libbpf", "")
    assert choose_loader("auto", False, tmp_path) == ("bcc", "the kernel has no BTF")
    assert choose_loader("bcc", True, tmp_path) == ("bcc", "forced by capture.loader")
    monkeypatch.setenv("SPYDERD_LOADER", "bcc")
    assert choose_loader("libbpf", True, tmp_path)[1] == "forced by SPYDERD_LOADER"
    monkeypatch.setenv("SPYDERD_LOADER", "nope")
    with pytest.raises(ConfigError):
        choose_loader("auto", True, tmp_path)


def test_blame_finds_probe_from_compiler_line_and_program_name():
    a = Probe("a", "a.bpf.c", ())
    b = Probe("b", "b.bpf.c", ())
    texts = {"a": "int x;\nint y;\n", "b": "SYSCALL_PROBE(sys_enter_link) {}\n"}
    (_, a1), (b0, _) = source_spans([a, b], texts)
    err = LoadError("Failed to compile BPF module <text>",
                    f"/virtual/main.c:{b0}:3: error: conflicting types for 'stash'\n")
    assert blame(err, [a, b], texts) is b
    assert "conflicting types" in err.reason()
    err = LoadError("Failed to compile BPF module <text>",
                    f"/virtual/main.c:{a1}:1: error: boom\n")
    assert blame(err, [a, b], texts) is a
    err = LoadError("Failed to load BPF program b'sc__sys_enter_link': "
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


def test_loader_setting_checked_with_location(tmp_path: Path):
    from spyderd.common.config import load_config

    cfg = tmp_path / "spyderd.yaml"
    cfg.write_text("capture:\n  loader: llvm\n")
    with pytest.raises(ConfigError) as exc:
        load_config(str(cfg))
    assert f"{cfg}:2:" in str(exc.value) and "auto, libbpf, bcc" in str(exc.value)
    cfg.write_text("capture:\n  loader: bcc\n")
    assert load_config(str(cfg)).capture.loader == "bcc"


def test_capture_takes_its_section():
    cap = Capture(CaptureConfig(ring_buffer_pages=64, max_args=8, arg_bytes=3000, batch_ms=5.0,
                                state_dir="/tmp/x"))
    assert (cap.ring_pages, cap.max_args, cap.arg_bytes) == (64, 8, 4096)
    assert cap.batch_s == 0.005 and cap.config.state_dir == "/tmp/x"
    default = Capture()
    assert default.config == CaptureConfig() and default.ring_pages == 1024
