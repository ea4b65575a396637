/* Credential changes (set*id, setfs*id, capset), setsid(), prctl(PR_SET_NAME).
 *
 * Arguments and the caller's uid/euid before the call are kept at syscall entry (per
 * thread), the record is sent at exit with the result. */
#include "common.h"


/* Kernel struct fields (CO-RE relocated; see probes/compat.h). */
#define OFF_TASK_CRED KOFF(task_struct, cred)
#define OFF_CRED_EUID KOFF(cred, euid)




#define CR_SETUID    0
#define CR_SETREUID  1
#define CR_SETRESUID 2
#define CR_SETGID    3
#define CR_SETREGID  4
#define CR_SETRESGID 5
#define CR_SETFSUID  6
#define CR_SETFSGID  7
#define CR_CAPSET    8
#define CR_SETSID    9
#define CR_PRCTL     10

#define PR_SET_NAME_ 15

struct cred_rec {
    struct hdr h;
    u32 call;
    s32 result;
    u32 old_uid;
    u32 old_euid;
    u32 nargs;
    u32 option;        /* prctl option */
    s64 args[4];
    char name[16];     /* prctl(PR_SET_NAME) */
};
SPY_RECORD(cred_rec)

BPF_LRU_HASH(cred_pending, u32, struct cred_rec, 1024);

static __always_inline int cred_enter(u32 kind, u32 call, u32 nargs, s64 a0, s64 a1, s64 a2,
                                      s64 a3) {
    u64 pt = bpf_get_current_pid_tgid();
    if (is_self(pt >> 32))
        return 0;
    struct cred_rec r = {};
    fill_hdr(&r.h, kind);
    r.call = call;
    r.old_uid = r.h.uid;
    r.old_euid = read_u32(read_ptr(bpf_get_current_task(), OFF_TASK_CRED), OFF_CRED_EUID);
    r.nargs = nargs;
    r.args[0] = a0;
    r.args[1] = a1;
    r.args[2] = a2;
    r.args[3] = a3;
    u32 tid = (u32)pt;
    bpf_map_update_elem(&cred_pending, &tid, &r, BPF_ANY);
    return 0;
}

static __always_inline int cred_exit(long ret) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct cred_rec *p = bpf_map_lookup_elem(&cred_pending, &tid);
    if (!p)
        return 0;
    struct cred_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
        count_event(C_RETRIES);
        r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    }
    if (!r) {
        count_loss(p->h.kind);
        bpf_map_delete_elem(&cred_pending, &tid);
        return 0;
    }
    __builtin_memcpy(r, p, sizeof(*r));
    r->result = ret;
    r->h.ktime = bpf_ktime_get_boot_ns();
    bpf_ringbuf_submit(r, 0);
    bpf_map_delete_elem(&cred_pending, &tid);
    return 0;
}

/* uid_t arguments are 32-bit; (uid_t)-1 means "unchanged" and is kept as -1. */
#define ID(x) ((s64)(s32)(x))

SYSCALL_PROBE(sys_enter_setuid) {
    return cred_enter(K_CRED, CR_SETUID, 1, ID(args->uid), 0, 0, 0);
}
SYSCALL_PROBE(sys_exit_setuid) { return cred_exit(args->ret); }

SYSCALL_PROBE(sys_enter_setreuid) {
    return cred_enter(K_CRED, CR_SETREUID, 2, ID(args->ruid), ID(args->euid), 0, 0);
}
SYSCALL_PROBE(sys_exit_setreuid) { return cred_exit(args->ret); }

SYSCALL_PROBE(sys_enter_setresuid) {
    return cred_enter(K_CRED, CR_SETRESUID, 3, ID(args->ruid), ID(args->euid),
                      ID(args->suid), 0);
}
SYSCALL_PROBE(sys_exit_setresuid) { return cred_exit(args->ret); }

SYSCALL_PROBE(sys_enter_setgid) {
    return cred_enter(K_CRED, CR_SETGID, 1, ID(args->gid), 0, 0, 0);
}
SYSCALL_PROBE(sys_exit_setgid) { return cred_exit(args->ret); }

SYSCALL_PROBE(sys_enter_setregid) {
    return cred_enter(K_CRED, CR_SETREGID, 2, ID(args->rgid), ID(args->egid), 0, 0);
}
SYSCALL_PROBE(sys_exit_setregid) { return cred_exit(args->ret); }

SYSCALL_PROBE(sys_enter_setresgid) {
    return cred_enter(K_CRED, CR_SETRESGID, 3, ID(args->rgid), ID(args->egid),
                      ID(args->sgid), 0);
}
SYSCALL_PROBE(sys_exit_setresgid) { return cred_exit(args->ret); }

SYSCALL_PROBE(sys_enter_setfsuid) {
    return cred_enter(K_CRED, CR_SETFSUID, 1, ID(args->uid), 0, 0, 0);
}
SYSCALL_PROBE(sys_exit_setfsuid) { return cred_exit(args->ret); }

SYSCALL_PROBE(sys_enter_setfsgid) {
    return cred_enter(K_CRED, CR_SETFSGID, 1, ID(args->gid), 0, 0, 0);
}
SYSCALL_PROBE(sys_exit_setfsgid) { return cred_exit(args->ret); }

/* capset(header, data): args = [target pid, effective, permitted, inheritable]; the 64-bit
 * sets of _LINUX_CAPABILITY_VERSION_2/3 are joined from the two 32-bit halves. */
SYSCALL_PROBE(sys_enter_capset) {
    u32 hdr[2] = {};
    u32 data[6] = {};
    bpf_probe_read_user(hdr, sizeof(hdr), (void *)args->header);
    if (hdr[0] == 0x19980330)
        bpf_probe_read_user(data, 12, (void *)args->data);
    else
        bpf_probe_read_user(data, sizeof(data), (void *)args->data);
    return cred_enter(K_CRED, CR_CAPSET, 4, (s32)hdr[1],
                      data[0] | ((u64)data[3] << 32), data[1] | ((u64)data[4] << 32),
                      data[2] | ((u64)data[5] << 32));
}
SYSCALL_PROBE(sys_exit_capset) { return cred_exit(args->ret); }

SYSCALL_PROBE(sys_enter_setsid) {
    return cred_enter(K_SETSID, CR_SETSID, 0, 0, 0, 0, 0);
}
SYSCALL_PROBE(sys_exit_setsid) { return cred_exit(args->ret); }

SYSCALL_PROBE(sys_enter_prctl) {
    if (args->option != PR_SET_NAME_)
        return 0;
    u64 pt = bpf_get_current_pid_tgid();
    if (is_self(pt >> 32))
        return 0;
    struct cred_rec r = {};
    fill_hdr(&r.h, K_PRCTL);
    r.call = CR_PRCTL;
    r.option = args->option;
    r.old_uid = r.h.uid;
    bpf_probe_read_user_str(r.name, sizeof(r.name), (void *)args->arg2);
    u32 tid = (u32)pt;
    bpf_map_update_elem(&cred_pending, &tid, &r, BPF_ANY);
    return 0;
}
SYSCALL_PROBE(sys_exit_prctl) { return cred_exit(args->ret); }
