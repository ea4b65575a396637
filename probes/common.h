/* Shared record header, ring buffer and helpers for every spyderd probe.
 *
 * Kernel struct fields are never read at header offsets (the headers bcc compiles
 * against may belong to another kernel): offsets come from KOFF() (probes/compat.h),
 * relocated by libbpf or computed by spyderd from the running kernel's BTF. */
#ifndef SPYDER_COMMON_H
#define SPYDER_COMMON_H
#include "compat.h"

#define K_FORK    1
#define K_EXEC    2
#define K_EXIT    3
#define K_CONNECT 4
#define K_ACCEPT  5
#define K_LISTEN  6
/* 7, 8: file probe. */
#define K_BIND         9
#define K_UDP          10
#define K_UNIX_CONNECT 11
#define K_CRED         12
#define K_SETSID       13
#define K_PRCTL        14
#define K_KERNEL       15
#define K_SOCKET       16  /* packet and raw sockets */
#define K_DUP          17  /* a socket duplicated onto fd 0, 1 or 2 */

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

/* Configuration (capture.*), written by the loader. */
SPY_CONFIG(ignore_tgid, 0)     /* the daemon's own tgid, in its pid namespace */
SPY_CONFIG(self_pidns_dev, 0)  /* that pid namespace (nsfs dev, inode) when it is not the */
SPY_CONFIG(self_pidns_ino, 0)  /* initial one: spyderd runs in a container */
SPY_CONFIG(ignore_comms, 0)    /* capture.ignore_comms is not empty */
SPY_CONFIG(scope_netns, 0)     /* capture.scope netns: inode of the only network namespace kept */
SPY_CONFIG(scope_cgroup, 0)    /* capture.scope cgroup: id of the subtree's top cgroup (v2) */
SPY_CONFIG(scope_cgroup_level, 0) /* and its depth below the root cgroup */

/* Losses per event kind: ring buffer full (reserve/output failed). */
BPF_ARRAY(lost, u64, 32);

/* In-kernel counters of what was seen but deliberately not sent (see records.py COUNTERS). */
#define C_THREADS      0   /* threads created (sent only with capture.threads) */
#define C_UDP_REPEATS  1   /* UDP sends folded into an earlier identical destination */
#define C_FILTERED     2   /* events dropped by capture.ignore_comms */
#define C_FILE_REPEATS 3   /* file records folded into an identical earlier one */
#define C_RETRIES      4   /* ring-buffer reservations that failed once, then succeeded */
#define C_SCOPE        5   /* events of tasks outside capture.scope, never sent */
BPF_ARRAY(kcount, u64, 8);

static __always_inline void count_event(u32 idx) {
    u64 *v = bpf_map_lookup_elem(&kcount, &idx);
    if (v)
        __sync_fetch_and_add(v, 1);
}

/* capture.ignore_comms: command names whose activity never leaves the kernel. */
struct comm_key { char comm[16]; };
BPF_HASH(ignore_comm, struct comm_key, u8, 64);

static __always_inline void count_loss(u32 kind) {
    u64 *v = bpf_map_lookup_elem(&lost, &kind);
    if (v)
        __sync_fetch_and_add(v, 1);
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
/* capture.scope: the current task is outside the network namespace or cgroup subtree this
 * daemon watches. A task whose namespaces are already gone (exiting) is let through: user
 * space decides for it. */
static __always_inline int out_of_scope(void) {
    if (CFG(scope_cgroup) &&
        bpf_get_current_ancestor_cgroup_id(CFG(scope_cgroup_level)) != CFG(scope_cgroup))
        return 1;
    if (CFG(scope_netns)) {
        u64 nsp = read_ptr((u64)bpf_get_current_task(), KOFF(task_struct, nsproxy));
        u64 net = read_ptr(nsp, KOFF(nsproxy, net_ns));
        if (net && read_u32(net, KOFF(net, ns.inum)) != CFG(scope_netns))
            return 1;
    }
    return 0;
}

/* True for the daemon's own activity (its tgid as it sees it, also from inside a container)
 * and, when capture.ignore_comms is set, for the current task's command name. Always
 * called with the current tgid. */
static __always_inline int is_self(u32 tgid) {
    if ((CFG(scope_netns) || CFG(scope_cgroup)) && out_of_scope()) {
        count_event(C_SCOPE);
        return 1;
    }
    if (CFG(ignore_tgid)) {
        if (CFG(self_pidns_ino)) { /* pids as the daemon sees them (kernel 5.7+) */
            struct bpf_pidns_info ns = {};
            if (!bpf_get_ns_current_pid_tgid(CFG(self_pidns_dev), CFG(self_pidns_ino), &ns,
                                             sizeof(ns)) && ns.tgid == CFG(ignore_tgid))
                return 1;
        } else if (tgid == CFG(ignore_tgid)) {
            return 1;
        }
    }
    if (CFG(ignore_comms)) {
        struct comm_key k = {};
        bpf_get_current_comm(&k.comm, sizeof(k.comm));
        if (bpf_map_lookup_elem(&ignore_comm, &k)) {
            count_event(C_FILTERED);
            return 1;
        }
    }
    return 0;
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

#endif
