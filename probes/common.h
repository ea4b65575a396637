/* Shared record header, ring buffer and helpers for every spyderd probe.
 *
 * Kernel struct fields are never read at header offsets (the headers bcc compiles
 * against may belong to another kernel): offsets arrive as -D OFF_* macros that
 * spyderd computes from the running kernel's BTF. */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>

#define K_FORK    1
#define K_EXEC    2
#define K_EXIT    3
#define K_CONNECT 4
#define K_ACCEPT  5
#define K_LISTEN  6

struct hdr {
    u32 kind;
    u32 pid;      /* tgid */
    u32 tid;
    u32 uid;
    u32 gid;
    u32 pad;
    u64 ktime;    /* CLOCK_BOOTTIME ns */
    u64 cgroup_id;
    char comm[16];
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

/* Losses per event kind: ring buffer full (reserve/output failed). */
BPF_ARRAY(lost, u64, 16);

static __always_inline void count_loss(u32 kind) {
    u64 *v = lost.lookup(&kind);
    if (v)
        __sync_fetch_and_add(v, 1);
}

static __always_inline int is_self(u32 tgid) {
#if IGNORE_TGID
    return tgid == IGNORE_TGID;
#else
    return 0;
#endif
}

static __always_inline void fill_hdr(struct hdr *h, u32 kind) {
    u64 pt = bpf_get_current_pid_tgid();
    u64 ug = bpf_get_current_uid_gid();
    h->kind = kind;
    h->pid = pt >> 32;
    h->tid = (u32)pt;
    h->uid = (u32)ug;
    h->gid = ug >> 32;
    h->pad = 0;
    h->ktime = bpf_ktime_get_boot_ns();
    h->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

static __always_inline u64 read_ptr(u64 base, u64 off) {
    u64 v = 0;
    if (base)
        bpf_probe_read_kernel(&v, sizeof(v), (void *)(base + off));
    return v;
}

static __always_inline u32 read_u32(u64 base, u64 off) {
    u32 v = 0;
    if (base)
        bpf_probe_read_kernel(&v, sizeof(v), (void *)(base + off));
    return v;
}
