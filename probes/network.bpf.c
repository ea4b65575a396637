/* TCP: connect (with its result), accept (addresses read from the accepted socket), listen. */

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define PROTO_TCP 6

struct conn_rec {
    struct hdr h;
    u16 family;
    u16 lport;
    u16 rport;
    u16 pad;
    s32 result;
    u32 pad2;
    u8 laddr[16];
    u8 raddr[16];
};

/* Who started a connect: the SYN_SENT transition runs in the caller's context,
 * the outcome later in softirq, so the caller is remembered by socket address. */
BPF_TABLE("lru_hash", u64, struct hdr, connecting, 16384);

static __always_inline void copy_addrs(struct conn_rec *r, u16 family,
                                       const u8 *s4, const u8 *d4,
                                       const u8 *s6, const u8 *d6) {
    if (family == 2) {
        bpf_probe_read_kernel(r->laddr, 4, s4);
        bpf_probe_read_kernel(r->raddr, 4, d4);
    } else {
        bpf_probe_read_kernel(r->laddr, 16, s6);
        bpf_probe_read_kernel(r->raddr, 16, d6);
    }
}

TRACEPOINT_PROBE(sock, inet_sock_set_state) {
    if (args->protocol != PROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    int o = args->oldstate, n = args->newstate;
    if (o == TCP_CLOSE && n == TCP_SYN_SENT) {
        struct hdr h = {};
        fill_hdr(&h, K_CONNECT);
        if (is_self(h.pid))
            return 0;
        connecting.update(&sk, &h);
        return 0;
    }
    if (o == TCP_SYN_SENT) {
        struct hdr *h = connecting.lookup(&sk);
        if (!h)
            return 0;
        struct conn_rec *r = events.ringbuf_reserve(sizeof(*r));
        if (!r) {
            count_loss(K_CONNECT);
            connecting.delete(&sk);
            return 0;
        }
        __builtin_memcpy(&r->h, h, sizeof(r->h));
        r->h.ktime = bpf_ktime_get_boot_ns();
        r->family = args->family;
        r->lport = args->sport;
        r->rport = args->dport;
        r->pad = 0;
        r->pad2 = 0;
        if (n == TCP_ESTABLISHED) {
            r->result = 0;
        } else {
            int err = (int)read_u32(sk, OFF_SOCK_SK_ERR);
            r->result = err ? -err : -103; /* ECONNABORTED when no error was recorded */
        }
        __builtin_memset(r->laddr, 0, 16);
        __builtin_memset(r->raddr, 0, 16);
        copy_addrs(r, args->family, args->saddr, args->daddr, args->saddr_v6, args->daddr_v6);
        events.ringbuf_submit(r, 0);
        connecting.delete(&sk);
        return 0;
    }
    if (n == TCP_LISTEN) {
        if (is_self(bpf_get_current_pid_tgid() >> 32))
            return 0;
        struct conn_rec *r = events.ringbuf_reserve(sizeof(*r));
        if (!r) {
            count_loss(K_LISTEN);
            return 0;
        }
        fill_hdr(&r->h, K_LISTEN);
        r->family = args->family;
        r->lport = args->sport;
        r->rport = 0;
        r->pad = 0;
        r->pad2 = 0;
        r->result = 0;
        __builtin_memset(r->laddr, 0, 16);
        __builtin_memset(r->raddr, 0, 16);
        copy_addrs(r, args->family, args->saddr, args->daddr, args->saddr_v6, args->daddr_v6);
        events.ringbuf_submit(r, 0);
    }
    return 0;
}

/* The accepted socket: current->files->fdt->fd[ret]->private_data (struct socket)->sk. */
static __always_inline int on_accept_exit(long ret) {
    if (ret < 0)
        return 0;
    u64 pt = bpf_get_current_pid_tgid();
    if (is_self(pt >> 32))
        return 0;
    u64 task = bpf_get_current_task();
    u64 fdt = read_ptr(read_ptr(task, OFF_TASK_FILES), OFF_FILES_FDT);
    u64 fdarr = read_ptr(fdt, OFF_FDT_FD);
    u64 file = read_ptr(fdarr, (u64)ret * 8);
    u64 sock = read_ptr(file, OFF_FILE_PRIVATE_DATA);
    u64 sk = read_ptr(sock, OFF_SOCKET_SK);
    if (!sk)
        return 0;
    u16 family = 0;
    bpf_probe_read_kernel(&family, sizeof(family), (void *)(sk + OFF_SKC_FAMILY));
    if (family != 2 && family != 10)
        return 0;
    struct conn_rec *r = events.ringbuf_reserve(sizeof(*r));
    if (!r) {
        count_loss(K_ACCEPT);
        return 0;
    }
    fill_hdr(&r->h, K_ACCEPT);
    r->family = family;
    u16 lport = 0, rport = 0;
    bpf_probe_read_kernel(&lport, 2, (void *)(sk + OFF_SKC_NUM));
    bpf_probe_read_kernel(&rport, 2, (void *)(sk + OFF_SKC_DPORT));
    r->lport = lport;
    r->rport = (rport >> 8) | (rport << 8);
    r->pad = 0;
    r->pad2 = 0;
    r->result = 0;
    __builtin_memset(r->laddr, 0, 16);
    __builtin_memset(r->raddr, 0, 16);
    if (family == 2) {
        bpf_probe_read_kernel(r->laddr, 4, (void *)(sk + OFF_SKC_RCV_SADDR));
        bpf_probe_read_kernel(r->raddr, 4, (void *)(sk + OFF_SKC_DADDR));
    } else {
        bpf_probe_read_kernel(r->laddr, 16, (void *)(sk + OFF_SKC_V6_RCV_SADDR));
        bpf_probe_read_kernel(r->raddr, 16, (void *)(sk + OFF_SKC_V6_DADDR));
    }
    events.ringbuf_submit(r, 0);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_accept) {
    return on_accept_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_accept4) {
    return on_accept_exit(args->ret);
}
