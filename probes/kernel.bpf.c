/* Kernel and system changes: modules, kexec, mount/umount/move_mount, ptrace, memfd_create,
 * bpf() program loads and detaches, time changes, sethostname/setdomainname, kill/tkill/tgkill of other
 * processes. Arguments are kept at syscall entry (per thread), the record is sent at exit.
 *
 * Module and kexec syscalls have no tracepoints on kernels built without them; there
 * (CFG(sc_fallback), hook raw_syscalls:sys_enter) their attempts are caught on raw_syscalls:sys_enter, filtered in
 * the kernel by syscall number (sc_watch), and sent as call "syscall" with `nr`. */
#include "common.h"

SPY_CONFIG(filter_ptrace, 0)    /* ptrace requests limited to ptrace_req_filter */
SPY_CONFIG(filter_bpf_cmds, 0)  /* bpf commands limited to bpf_cmd_filter */
SPY_CONFIG(kill_sigmask, ~0ULL) /* bit n-1: signal n is recorded */

#define KC_INIT_MODULE     0
#define KC_FINIT_MODULE    1
#define KC_DELETE_MODULE   2
#define KC_KEXEC_LOAD      3
#define KC_KEXEC_FILE_LOAD 4
#define KC_MOUNT           5
#define KC_UMOUNT          6
#define KC_PTRACE          7
#define KC_MEMFD_CREATE    8
#define KC_BPF             9
#define KC_SETTIMEOFDAY    10
#define KC_CLOCK_SETTIME   11
#define KC_ADJTIMEX        12
#define KC_CLOCK_ADJTIME   13
#define KC_SETHOSTNAME     14
#define KC_SETDOMAINNAME   15
#define KC_KILL            16
#define KC_TKILL           17
#define KC_TGKILL          18
#define KC_SYSCALL         19
#define KC_MOVE_MOUNT      20
#define KC_IO_URING_SETUP  21

struct kern_rec {
    struct hdr h;
    u32 call;
    s32 result;
    s32 target_pid;
    u32 request;       /* ptrace request, signal, bpf command, clock id */
    u64 flags;         /* mount/umount/memfd flags, bpf prog type, adjtimex modes, new time */
    s32 nr;            /* syscall number (fallback) */
    u32 pad;
    char name[256];    /* mount target, memfd/host/module name, bpf prog name */
    char source[256];  /* mount source */
    char fstype[32];
};
SPY_RECORD(kern_rec)

BPF_PERCPU_ARRAY(kern_scratch, struct kern_rec, 1);
BPF_LRU_HASH(kern_pending, u32, struct kern_rec, 1024);
BPF_HASH(ptrace_req_filter, u32, u8, 64);
BPF_HASH(bpf_cmd_filter, u32, u8, 64);

static __always_inline struct kern_rec *kbegin(u32 call) {
    u32 zero = 0;
    if (is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct kern_rec *r = bpf_map_lookup_elem(&kern_scratch, &zero);
    if (!r)
        return 0;
    fill_hdr(&r->h, K_KERNEL);
    r->call = call;
    r->result = 0;
    r->target_pid = 0;
    r->request = 0;
    r->flags = 0;
    r->nr = -1;
    r->pad = 0;
    r->name[0] = 0;
    r->source[0] = 0;
    r->fstype[0] = 0;
    return r;
}

static __always_inline int kstash(struct kern_rec *r) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    bpf_map_update_elem(&kern_pending, &tid, r, BPF_ANY);
    return 0;
}

static __always_inline int kexit(long ret, int fallback) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct kern_rec *p = bpf_map_lookup_elem(&kern_pending, &tid);
    if (!p || (p->call == KC_SYSCALL) != fallback)
        return 0;
    struct kern_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
        count_event(C_RETRIES);
        r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    }
    if (!r) {
        count_loss(K_KERNEL);
        bpf_map_delete_elem(&kern_pending, &tid);
        return 0;
    }
    __builtin_memcpy(r, p, sizeof(*r));
    r->result = ret;
    bpf_ringbuf_submit(r, 0);
    bpf_map_delete_elem(&kern_pending, &tid);
    return 1;
}

#define KEXIT(sc) SYSCALL_PROBE(sys_exit_##sc) { kexit(args->ret, 0); return 0; }

/* ---- modules and kexec (only where the kernel has these syscalls) ---- */

SYSCALL_PROBE(sys_enter_init_module) {
    struct kern_rec *r = kbegin(KC_INIT_MODULE);
    if (!r)
        return 0;
    r->flags = args->len;
    bpf_probe_read_user_str(r->source, sizeof(r->source), (void *)args->uargs);
    return kstash(r);
}
KEXIT(init_module)

SYSCALL_PROBE(sys_enter_finit_module) {
    struct kern_rec *r = kbegin(KC_FINIT_MODULE);
    if (!r)
        return 0;
    r->flags = args->flags;
    r->target_pid = args->fd;
    bpf_probe_read_user_str(r->source, sizeof(r->source), (void *)args->uargs);
    return kstash(r);
}
KEXIT(finit_module)

SYSCALL_PROBE(sys_enter_delete_module) {
    struct kern_rec *r = kbegin(KC_DELETE_MODULE);
    if (!r)
        return 0;
    r->flags = args->flags;
    bpf_probe_read_user_str(r->name, sizeof(r->name), (void *)args->name_user);
    return kstash(r);
}
KEXIT(delete_module)

SYSCALL_PROBE(sys_enter_kexec_load) {
    struct kern_rec *r = kbegin(KC_KEXEC_LOAD);
    if (!r)
        return 0;
    r->flags = args->flags;
    return kstash(r);
}
KEXIT(kexec_load)

SYSCALL_PROBE(sys_enter_kexec_file_load) {
    struct kern_rec *r = kbegin(KC_KEXEC_FILE_LOAD);
    if (!r)
        return 0;
    r->flags = args->flags;
    bpf_probe_read_user_str(r->source, sizeof(r->source), (void *)args->cmdline_ptr);
    return kstash(r);
}
KEXIT(kexec_file_load)

/* ---- fallback: raw_syscalls filtered by number ---- */

/* Only syscalls this kernel does not implement are watched here (their tracepoints are
 * missing because the calls are not built in), so every attempt fails with ENOSYS: the
 * record is sent at entry with that result, and no sys_exit program is needed. One array
 * lookup per syscall is the whole cost for everything else. */
BPF_ARRAY(sc_watch, u8, 512);

RAW_TRACEPOINT_PROBE(sys_enter) {
    u64 id = ctx->args[1];
    if (id >= 512)
        return 0;
    u32 idx = id;
    u8 *w = bpf_map_lookup_elem(&sc_watch, &idx);
    if (!w || !*w)
        return 0;
    struct kern_rec *r = kbegin(KC_SYSCALL);
    if (!r)
        return 0;
    r->nr = idx;
    r->result = -38; /* -ENOSYS */
    if (KFIELD_EXISTS(pt_regs, di))
        r->flags = read_ptr(ctx->args[0], KOFF(pt_regs, di));
    if (bpf_ringbuf_output(&events, r, sizeof(*r), 0)) {
        count_event(C_RETRIES);
        if (bpf_ringbuf_output(&events, r, sizeof(*r), 0))
            count_loss(K_KERNEL);
    }
    return 0;
}

/* ---- mounts ---- */

SYSCALL_PROBE(sys_enter_mount) {
    struct kern_rec *r = kbegin(KC_MOUNT);
    if (!r)
        return 0;
    r->flags = args->flags;
    bpf_probe_read_user_str(r->source, sizeof(r->source), (void *)args->dev_name);
    bpf_probe_read_user_str(r->name, sizeof(r->name), (void *)args->dir_name);
    bpf_probe_read_user_str(r->fstype, sizeof(r->fstype), (void *)args->type);
    return kstash(r);
}
KEXIT(mount)

SYSCALL_PROBE(sys_enter_umount) {
    struct kern_rec *r = kbegin(KC_UMOUNT);
    if (!r)
        return 0;
    r->flags = args->flags;
    bpf_probe_read_user_str(r->name, sizeof(r->name), (void *)args->name);
    return kstash(r);
}
KEXIT(umount)

SYSCALL_PROBE(sys_enter_move_mount) {
    struct kern_rec *r = kbegin(KC_MOVE_MOUNT);
    if (!r)
        return 0;
    r->flags = args->flags;
    bpf_probe_read_user_str(r->source, sizeof(r->source), (void *)args->from_pathname);
    bpf_probe_read_user_str(r->name, sizeof(r->name), (void *)args->to_pathname);
    return kstash(r);
}
KEXIT(move_mount)

/* ---- ptrace, memfd_create, bpf ---- */

SYSCALL_PROBE(sys_enter_ptrace) {
    u32 req = args->request;
    if (CFG(filter_ptrace) && !bpf_map_lookup_elem(&ptrace_req_filter, &req))
        return 0;
    struct kern_rec *r = kbegin(KC_PTRACE);
    if (!r)
        return 0;
    r->request = args->request;
    r->target_pid = args->pid;
    return kstash(r);
}
KEXIT(ptrace)

SYSCALL_PROBE(sys_enter_memfd_create) {
    struct kern_rec *r = kbegin(KC_MEMFD_CREATE);
    if (!r)
        return 0;
    r->flags = args->flags;
    bpf_probe_read_user_str(r->name, sizeof(r->name), (void *)args->uname);
    return kstash(r);
}
KEXIT(memfd_create)

SYSCALL_PROBE(sys_enter_bpf) {
    u32 cmd = args->cmd;
    if (CFG(filter_bpf_cmds) && !bpf_map_lookup_elem(&bpf_cmd_filter, &cmd))
        return 0;
    struct kern_rec *r = kbegin(KC_BPF);
    if (!r)
        return 0;
    r->request = cmd;
    if (cmd == 5) { /* BPF_PROG_LOAD: prog_type at 0, prog_name[16] at 48 of bpf_attr */
        u32 type = 0;
        bpf_probe_read_user(&type, sizeof(type), (void *)args->uattr);
        r->flags = type;
        bpf_probe_read_user_str(r->name, 16, (u8 *)args->uattr + 48);
    } else { /* LINK_DETACH/LINK_UPDATE: link_fd; PROG_DETACH: target_fd (first word) */
        u32 first = 0;
        bpf_probe_read_user(&first, sizeof(first), (void *)args->uattr);
        r->flags = first;
    }
    return kstash(r);
}
KEXIT(bpf)

/* ---- time: only calls that would change the clock ---- */

SYSCALL_PROBE(sys_enter_settimeofday) {
    if (!args->tv && !args->tz)
        return 0;
    struct kern_rec *r = kbegin(KC_SETTIMEOFDAY);
    if (!r)
        return 0;
    if (args->tv)
        bpf_probe_read_user(&r->flags, 8, (void *)args->tv);
    return kstash(r);
}
KEXIT(settimeofday)

SYSCALL_PROBE(sys_enter_clock_settime) {
    struct kern_rec *r = kbegin(KC_CLOCK_SETTIME);
    if (!r)
        return 0;
    r->request = args->which_clock;
    bpf_probe_read_user(&r->flags, 8, (void *)args->tp);
    return kstash(r);
}
KEXIT(clock_settime)

/* struct __kernel_timex starts with unsigned int modes; 0 only reads the clock state. */
static __always_inline int adj_enter(u32 call, u32 clock, const void *tx) {
    u32 modes = 0;
    if (bpf_probe_read_user(&modes, sizeof(modes), tx) || !modes)
        return 0;
    struct kern_rec *r = kbegin(call);
    if (!r)
        return 0;
    r->request = clock;
    r->flags = modes;
    return kstash(r);
}

SYSCALL_PROBE(sys_enter_adjtimex) {
    return adj_enter(KC_ADJTIMEX, 0, args->txc_p);
}
KEXIT(adjtimex)

SYSCALL_PROBE(sys_enter_clock_adjtime) {
    return adj_enter(KC_CLOCK_ADJTIME, args->which_clock, args->utx);
}
KEXIT(clock_adjtime)

/* ---- host and domain name ---- */

static __always_inline int name_enter(u32 call, const char *name, int len) {
    struct kern_rec *r = kbegin(call);
    if (!r)
        return 0;
    u32 n = (u32)len; /* a negative length becomes large and is cut to 64 */
    if (n > 64)
        n = 64;
    /* A fixed-size read (clang hides the bound of `n` from the verifier); userspace cuts
     * the name at `flags` = n. */
    if (bpf_probe_read_user(r->name, 64, name))
        bpf_probe_read_user_str(r->name, 65, name);
    r->name[64] = 0;
    r->flags = n;
    return kstash(r);
}

SYSCALL_PROBE(sys_enter_sethostname) {
    return name_enter(KC_SETHOSTNAME, args->name, args->len);
}
KEXIT(sethostname)

SYSCALL_PROBE(sys_enter_setdomainname) {
    return name_enter(KC_SETDOMAINNAME, args->name, args->len);
}
KEXIT(setdomainname)

/* ---- signals to other processes (signal 0 only probes; to itself is not interesting) ---- */

/* The last signal sent to spyderd itself, kept in a map pinned to bpffs (spyderd's setup
 * pins it) so that it outlives a SIGKILL: the next start reads who sent it. */
struct self_signal {
    u32 pid;               /* sender tgid */
    u32 tid;
    u32 uid;
    u32 sig;
    u64 ktime;             /* CLOCK_BOOTTIME ns */
    u64 count;             /* signals aimed at spyderd since it started */
    u32 call;              /* KC_KILL / KC_TKILL / KC_TGKILL */
    u32 target;
    char comm[16];
};
BPF_ARRAY(self_signals, struct self_signal, 1);
SPY_CONFIG(spyderd_tgid, 0)    /* spyderd's own tgid (set even when capture.ignore_self is off) */
/* spyderd's other threads (kept current by the daemon): kill(tid) of any of them stops or
 * kills the whole daemon too. kill(-pgid) of its process group counts as well. */
BPF_HASH(self_tids, u32, u8, 1024);

static __always_inline void note_self_signal(u32 call, s32 target, s32 sig) {
    u32 zero = 0;
    struct self_signal *s = bpf_map_lookup_elem(&self_signals, &zero);
    if (!s)
        return;
    u64 pt = bpf_get_current_pid_tgid();
    s->pid = pt >> 32;
    s->tid = (u32)pt;
    s->uid = (u32)bpf_get_current_uid_gid();
    s->sig = sig;
    s->ktime = bpf_ktime_get_boot_ns();
    s->call = call;
    s->target = target;
    __sync_fetch_and_add(&s->count, 1);
    bpf_get_current_comm(&s->comm, sizeof(s->comm));
}

static __always_inline int kill_enter(u32 call, s32 target, s32 sig) {
    u64 pt = bpf_get_current_pid_tgid();
    if (sig <= 0 || sig > 64)
        return 0;
    if (target == (s32)(pt >> 32) || target == (s32)(u32)pt)
        return 0;
    /* Aimed at spyderd: always an event, whatever capture.kill_signals says, and noted
     * where a SIGKILL cannot erase it. */
    u32 me = CFG(spyderd_tgid);
    u32 tid = (u32)target;
    int at_self = me && (target == (s32)me || target == -1 || target == -(s32)me ||
                         (target > 0 && bpf_map_lookup_elem(&self_tids, &tid)));
    if (at_self)
        note_self_signal(call, target, sig);
    if (!at_self && !((CFG(kill_sigmask) >> (sig - 1)) & 1))
        return 0;
    struct kern_rec *r = kbegin(call);
    if (!r)
        return 0;
    r->target_pid = target;
    r->request = sig;
    return kstash(r);
}

SYSCALL_PROBE(sys_enter_kill) {
    return kill_enter(KC_KILL, args->pid, args->sig);
}
KEXIT(kill)

SYSCALL_PROBE(sys_enter_tkill) {
    return kill_enter(KC_TKILL, args->pid, args->sig);
}
KEXIT(tkill)

SYSCALL_PROBE(sys_enter_tgkill) {
    return kill_enter(KC_TGKILL, args->tgid, args->sig);
}
KEXIT(tgkill)

/* ---- io_uring: its file and network operations bypass the syscall tracepoints, so a ring
 * being set up is itself the event (entries, and the setup flags of io_uring_params). ---- */

SYSCALL_PROBE(sys_enter_io_uring_setup) {
    struct kern_rec *r = kbegin(KC_IO_URING_SETUP);
    if (!r)
        return 0;
    u32 flags = 0;  /* struct io_uring_params: sq_entries, cq_entries, flags */
    bpf_probe_read_user(&flags, sizeof(flags), (u8 *)args->params + 8);
    r->request = args->entries;
    r->flags = flags;
    return kstash(r);
}
KEXIT(io_uring_setup)
