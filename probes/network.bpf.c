/* Network: TCP connect (with its result), accept, listen (all with the socket's netns),
 * bind (TCP/UDP), UDP destinations (sendto/sendmsg/sendmmsg with an address, connect on a
 * UDP socket), Unix-socket connects (path from the sockaddr_un).
 *
 * UDP repeats (same process, same destination within CFG(udp_repeat_ns)) are folded in the
 * kernel and counted (C_UDP_REPEATS); capture.udp_ports limits UDP to some ports. */
#include "common.h"

SPY_CONFIG(udp_repeat_ns, 1000000000ULL) /* capture.udp_repeat_seconds */
SPY_CONFIG(filter_udp_ports, 0)          /* capture.udp_ports is not empty */


/* Kernel struct fields (CO-RE relocated; see probes/compat.h). */
#define OFF_TASK_FILES KOFF(task_struct, files)
#define OFF_FILES_FDT KOFF(files_struct, fdt)
#define OFF_FDT_FD KOFF(fdtable, fd)
#define OFF_FDT_MAX_FDS KOFF(fdtable, max_fds)
#define OFF_FILE_PRIVATE_DATA KOFF(file, private_data)
#define OFF_SOCKET_SK KOFF(socket, sk)
#define OFF_SOCKET_TYPE KOFF(socket, type)
#define OFF_SOCK_SK_ERR KOFF(sock, sk_err)
#define OFF_SKC_FAMILY KOFF(sock_common, skc_family)
#define OFF_SKC_NUM KOFF(sock_common, skc_num)
#define OFF_SKC_DPORT KOFF(sock_common, skc_dport)
#define OFF_SKC_DADDR KOFF(sock_common, skc_daddr)
#define OFF_SKC_RCV_SADDR KOFF(sock_common, skc_rcv_saddr)
#define OFF_SKC_V6_DADDR KOFF(sock_common, skc_v6_daddr)
#define OFF_SKC_V6_RCV_SADDR KOFF(sock_common, skc_v6_rcv_saddr)
#define OFF_SKC_NET KOFF(sock_common, skc_net)
#define OFF_NET_NS_INUM KOFF(net, ns.inum)
#define OFF_FILE_F_INODE KOFF(file, f_inode)
#define OFF_INODE_I_MODE KOFF(inode, i_mode)
#define OFF_SOCK_SK_TYPE KOFF(sock, sk_type)


#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define PROTO_TCP 6
#define AF_UNIX_ 1
#define AF_INET_ 2
#define AF_INET6_ 10
#define SOCK_STREAM_ 1
#define SOCK_DGRAM_ 2

struct conn_rec {
    struct hdr h;
    u16 family;
    u16 lport;
    u16 rport;
    u16 pad;
    s32 result;
    u32 netns;
    u8 laddr[16];
    u8 raddr[16];
};
SPY_RECORD(conn_rec)

static __always_inline u32 netns_of(u64 sk) {
    return read_u32(read_ptr(sk, OFF_SKC_NET), OFF_NET_NS_INUM);
}

/* The socket behind a descriptor of the current task: files->fdt->fd[fd]->private_data. */
static __always_inline u64 socket_of_fd(u64 fd) {
    u64 task = bpf_get_current_task();
    u64 fdt = read_ptr(read_ptr(task, OFF_TASK_FILES), OFF_FILES_FDT);
    u32 max = read_u32(fdt, OFF_FDT_MAX_FDS);
    if (fd >= max)
        return 0;
    u64 file = read_ptr(read_ptr(fdt, OFF_FDT_FD), fd * 8);
    return read_ptr(file, OFF_FILE_PRIVATE_DATA);
}

static __always_inline u16 socket_type(u64 sock) {
    u16 t = 0;
    if (sock)
        bpf_probe_read_kernel(&t, sizeof(t), (void *)(sock + OFF_SOCKET_TYPE));
    return t;
}

/* Who started a connect: the SYN_SENT transition runs in the caller's context,
 * the outcome later in softirq, so the caller is remembered by socket address. */
BPF_LRU_HASH(connecting, u64, struct hdr, 16384);

static __always_inline void copy_addrs(struct conn_rec *r, u16 family,
                                       const u8 *s4, const u8 *d4,
                                       const u8 *s6, const u8 *d6) {
    if (family == AF_INET_) {
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
        if (is_self(bpf_get_current_pid_tgid() >> 32))
            return 0;
        fill_hdr(&h, K_CONNECT);
        bpf_map_update_elem(&connecting, &sk, &h, BPF_ANY);
        return 0;
    }
    if (o == TCP_SYN_SENT) {
        struct hdr *h = bpf_map_lookup_elem(&connecting, &sk);
        if (!h)
            return 0;
        struct conn_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
        if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
            count_event(C_RETRIES);
            r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
        }
        if (!r) {
            count_loss(K_CONNECT);
            bpf_map_delete_elem(&connecting, &sk);
            return 0;
        }
        __builtin_memcpy(&r->h, h, sizeof(r->h));
        r->h.ktime = bpf_ktime_get_boot_ns();
        r->family = args->family;
        r->lport = args->sport;
        r->rport = args->dport;
        r->pad = 0;
        r->netns = netns_of(sk);
        if (n == TCP_ESTABLISHED) {
            r->result = 0;
        } else {
            int err = (int)read_u32(sk, OFF_SOCK_SK_ERR);
            r->result = err ? -err : -103; /* ECONNABORTED when no error was recorded */
        }
        __builtin_memset(r->laddr, 0, 16);
        __builtin_memset(r->raddr, 0, 16);
        copy_addrs(r, args->family, args->saddr, args->daddr, args->saddr_v6, args->daddr_v6);
        bpf_ringbuf_submit(r, 0);
        bpf_map_delete_elem(&connecting, &sk);
        return 0;
    }
    if (n == TCP_LISTEN) {
        if (is_self(bpf_get_current_pid_tgid() >> 32))
            return 0;
        struct conn_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
        if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
            count_event(C_RETRIES);
            r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
        }
        if (!r) {
            count_loss(K_LISTEN);
            return 0;
        }
        fill_hdr(&r->h, K_LISTEN);
        r->family = args->family;
        r->lport = args->sport;
        r->rport = 0;
        r->pad = 0;
        r->netns = netns_of(sk);
        r->result = 0;
        __builtin_memset(r->laddr, 0, 16);
        __builtin_memset(r->raddr, 0, 16);
        copy_addrs(r, args->family, args->saddr, args->daddr, args->saddr_v6, args->daddr_v6);
        bpf_ringbuf_submit(r, 0);
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
    u64 sk = read_ptr(socket_of_fd((u64)ret), OFF_SOCKET_SK);
    if (!sk)
        return 0;
    u16 family = 0;
    bpf_probe_read_kernel(&family, sizeof(family), (void *)(sk + OFF_SKC_FAMILY));
    if (family != AF_INET_ && family != AF_INET6_)
        return 0;
    struct conn_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
        count_event(C_RETRIES);
        r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    }
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
    r->netns = netns_of(sk);
    r->result = 0;
    __builtin_memset(r->laddr, 0, 16);
    __builtin_memset(r->raddr, 0, 16);
    if (family == AF_INET_) {
        bpf_probe_read_kernel(r->laddr, 4, (void *)(sk + OFF_SKC_RCV_SADDR));
        bpf_probe_read_kernel(r->raddr, 4, (void *)(sk + OFF_SKC_DADDR));
    } else {
        bpf_probe_read_kernel(r->laddr, 16, (void *)(sk + OFF_SKC_V6_RCV_SADDR));
        bpf_probe_read_kernel(r->raddr, 16, (void *)(sk + OFF_SKC_V6_DADDR));
    }
    bpf_ringbuf_submit(r, 0);
    return 0;
}

SYSCALL_PROBE(sys_exit_accept) {
    return on_accept_exit(args->ret);
}

SYSCALL_PROBE(sys_exit_accept4) {
    return on_accept_exit(args->ret);
}

/* ---- bind, UDP destinations, Unix connects: read the sockaddr at entry, send at exit ---- */

struct addr_rec {          /* K_BIND and K_UDP */
    struct hdr h;
    u16 family;
    u16 port;
    u16 type;              /* SOCK_STREAM / SOCK_DGRAM */
    u16 call;              /* UDP: 0 sendto, 1 sendmsg, 2 connect, 3 sendmmsg */
    s32 result;
    u32 netns;
    u8 addr[16];
    u64 sk;                /* bind: the socket, for the port an ephemeral bind got; 0 out */
};
SPY_RECORD(addr_rec)

#define UNIX_PATH 108
struct unix_rec {
    struct hdr h;
    s32 result;
    u32 len;               /* bytes of path (abstract names start with a NUL) */
    char path[128];        /* sun_path is 108 bytes; the rest keeps the verifier's bound */
};
SPY_RECORD(unix_rec)

BPF_LRU_HASH(addr_pending, u32, struct addr_rec, 4096);
BPF_LRU_HASH(unix_pending, u32, struct unix_rec, 1024);
BPF_PERCPU_ARRAY(unix_scratch, struct unix_rec, 1);

struct udp_key {
    u32 tgid;
    u16 port;
    u16 family;
    u8 addr[16];
};
BPF_LRU_HASH(udp_seen, struct udp_key, u64, 8192);
BPF_HASH(udp_port_filter, u16, u8, 256);

/* sockaddr_in / sockaddr_in6 from user memory: family, port (host order), address. */
static __always_inline int read_inet(struct addr_rec *r, const void *uaddr) {
    u16 fam = 0, port = 0;
    if (!uaddr || bpf_probe_read_user(&fam, 2, uaddr))
        return -1;
    if (fam != AF_INET_ && fam != AF_INET6_)
        return -1;
    bpf_probe_read_user(&port, 2, (u8 *)uaddr + 2);
    r->family = fam;
    r->port = (port >> 8) | (port << 8);
    __builtin_memset(r->addr, 0, 16);
    if (fam == AF_INET_)
        bpf_probe_read_user(r->addr, 4, (u8 *)uaddr + 4);
    else
        bpf_probe_read_user(r->addr, 16, (u8 *)uaddr + 8);
    return 0;
}

static __always_inline void net_stash(struct addr_rec *r, u32 kind) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    fill_hdr(&r->h, kind);
    r->result = 0;
    bpf_map_update_elem(&addr_pending, &tid, r, BPF_ANY);
}

/* A UDP destination worth sending: port filter, then repeats folded per process. */
static __always_inline int udp_wanted(struct addr_rec *r) {
    u16 port = r->port;
    if (CFG(filter_udp_ports) && !bpf_map_lookup_elem(&udp_port_filter, &port))
        return 0;
    if (CFG(udp_repeat_ns)) {
    struct udp_key k = {};
    k.tgid = bpf_get_current_pid_tgid() >> 32;
    k.port = r->port;
    k.family = r->family;
    __builtin_memcpy(k.addr, r->addr, 16);
    u64 now = bpf_ktime_get_boot_ns();
    u64 *last = bpf_map_lookup_elem(&udp_seen, &k);
    if (last && now - *last < CFG(udp_repeat_ns)) {
        count_event(C_UDP_REPEATS);
        return 0;
    }
    bpf_map_update_elem(&udp_seen, &k, &now, BPF_ANY);
    }
    return 1;
}

static __always_inline int udp_enter(u64 fd, const void *uaddr, u16 call) {
    if (!uaddr || is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct addr_rec r = {};
    if (read_inet(&r, uaddr))
        return 0;
    u64 sock = socket_of_fd(fd);
    r.type = socket_type(sock);
    if (r.type != SOCK_DGRAM_)
        return 0;
    r.call = call;
    if (!udp_wanted(&r))
        return 0;
    r.netns = netns_of(read_ptr(sock, OFF_SOCKET_SK));
    net_stash(&r, K_UDP);
    return 0;
}

static __always_inline int addr_exit(long ret) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct addr_rec *p = bpf_map_lookup_elem(&addr_pending, &tid);
    if (!p)
        return 0;
    struct addr_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
        count_event(C_RETRIES);
        r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    }
    if (!r) {
        count_loss(p->h.kind);
        bpf_map_delete_elem(&addr_pending, &tid);
        return 0;
    }
    __builtin_memcpy(r, p, sizeof(*r));
    r->result = ret < 0 ? ret : 0;
    if (r->h.kind == K_BIND && ret == 0 && r->port == 0 && r->sk) {
        u16 port = 0;
        bpf_probe_read_kernel(&port, 2, (void *)(r->sk + OFF_SKC_NUM));
        r->port = port;
    }
    r->sk = 0;
    bpf_ringbuf_submit(r, 0);
    bpf_map_delete_elem(&addr_pending, &tid);
    return 0;
}

SYSCALL_PROBE(sys_enter_bind) {
    if (is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct addr_rec r = {};
    if (read_inet(&r, args->umyaddr))
        return 0;
    u64 sock = socket_of_fd(args->fd);
    r.type = socket_type(sock);
    if (r.type != SOCK_STREAM_ && r.type != SOCK_DGRAM_)
        return 0;
    r.call = 0;
    r.sk = read_ptr(sock, OFF_SOCKET_SK);
    r.netns = netns_of(r.sk);
    net_stash(&r, K_BIND);
    return 0;
}

SYSCALL_PROBE(sys_exit_bind) {
    return addr_exit(args->ret);
}

SYSCALL_PROBE(sys_enter_sendto) {
    return udp_enter(args->fd, args->addr, 0);
}

SYSCALL_PROBE(sys_exit_sendto) {
    return addr_exit(args->ret);
}

/* struct user_msghdr starts with void *msg_name (NULL on a connected socket). */
static __always_inline int msg_enter(u64 fd, const void *msg, u16 call) {
    void *name = NULL;
    if (!msg || bpf_probe_read_user(&name, sizeof(name), msg))
        return 0;
    return udp_enter(fd, name, call);
}

SYSCALL_PROBE(sys_enter_sendmsg) {
    return msg_enter(args->fd, args->msg, 1);
}

SYSCALL_PROBE(sys_exit_sendmsg) {
    return addr_exit(args->ret);
}

SYSCALL_PROBE(sys_enter_sendmmsg) {
    return msg_enter(args->fd, args->mmsg, 3); /* the first message's destination */
}

SYSCALL_PROBE(sys_exit_sendmmsg) {
    return addr_exit(args->ret);
}

SYSCALL_PROBE(sys_enter_connect) {
    const void *ua = args->uservaddr;
    u16 fam = 0;
    if (!ua || bpf_probe_read_user(&fam, 2, ua))
        return 0;
    if (fam == AF_UNIX_) {
        if (is_self(bpf_get_current_pid_tgid() >> 32))
            return 0;
        u32 zero = 0, tid = (u32)bpf_get_current_pid_tgid();
        struct unix_rec *r = bpf_map_lookup_elem(&unix_scratch, &zero);
        if (!r)
            return 0;
        long alen = args->addrlen;
        if (alen <= 2)
            return 0;
        u32 len = alen - 2 > UNIX_PATH ? UNIX_PATH : (u32)(alen - 2);
        __builtin_memset(r->path, 0, sizeof(r->path));
        asm volatile("" : "+r"(len)); /* keep the mask: the verifier needs the bound */
        bpf_probe_read_user(r->path, len & 127, (u8 *)ua + 2);
        r->len = len;
        fill_hdr(&r->h, K_UNIX_CONNECT);
        r->result = 0;
        bpf_map_update_elem(&unix_pending, &tid, r, BPF_ANY);
        return 0;
    }
    if (fam == AF_INET_ || fam == AF_INET6_)
        return udp_enter(args->fd, ua, 2); /* TCP connects come from inet_sock_set_state */
    return 0;
}

SYSCALL_PROBE(sys_exit_connect) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct unix_rec *p = bpf_map_lookup_elem(&unix_pending, &tid);
    if (!p)
        return addr_exit(args->ret);
    struct unix_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
        count_event(C_RETRIES);
        r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    }
    if (!r) {
        count_loss(K_UNIX_CONNECT);
        bpf_map_delete_elem(&unix_pending, &tid);
        return 0;
    }
    __builtin_memcpy(r, p, sizeof(*r));
    r->result = args->ret;
    bpf_ringbuf_submit(r, 0);
    bpf_map_delete_elem(&unix_pending, &tid);
    return 0;
}

/* ---- raw and packet sockets (sniffers, crafted packets), filtered here by family/type ---- */

#define AF_PACKET_ 17
#define SOCK_RAW_ 3

struct sock_rec {
    struct hdr h;
    s32 result;            /* the new fd, or -errno */
    u32 family;
    u32 type;              /* with SOCK_NONBLOCK / SOCK_CLOEXEC bits */
    u32 protocol;
};

BPF_LRU_HASH(sock_pending, u32, struct sock_rec, 1024);
SPY_RECORD(sock_rec)

SYSCALL_PROBE(sys_enter_socket) {
    u32 family = args->family, type = args->type;
    if (family != AF_PACKET_ && (type & 0xf) != SOCK_RAW_)
        return 0;
    if (is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct sock_rec r = {};
    fill_hdr(&r.h, K_SOCKET);
    r.family = family;
    r.type = type;
    r.protocol = args->protocol;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    bpf_map_update_elem(&sock_pending, &tid, &r, BPF_ANY);
    return 0;
}

SYSCALL_PROBE(sys_exit_socket) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sock_rec *p = bpf_map_lookup_elem(&sock_pending, &tid);
    if (!p)
        return 0;
    struct sock_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
        count_event(C_RETRIES);
        r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    }
    if (!r) {
        count_loss(K_SOCKET);
        bpf_map_delete_elem(&sock_pending, &tid);
        return 0;
    }
    __builtin_memcpy(r, p, sizeof(*r));
    r->result = args->ret;
    bpf_ringbuf_submit(r, 0);
    bpf_map_delete_elem(&sock_pending, &tid);
    return 0;
}

/* ---- dup2/dup3 of a socket onto fd 0, 1 or 2 (a shell's stdio wired to a connection) ---- */

#define S_IFMT__ 0170000
#define S_IFSOCK__ 0140000

struct dup_rec {
    struct hdr h;
    s32 result;
    u32 oldfd;
    u32 newfd;
    u16 family;
    u16 sotype;
    u16 protocol;
    u16 lport;
    u16 rport;             /* host order */
    u16 pad;
    u8 laddr[16];
    u8 raddr[16];
};

BPF_LRU_HASH(dup_pending, u32, struct dup_rec, 1024);
SPY_RECORD(dup_rec)

static __always_inline int dup_enter(u32 oldfd, u32 newfd) {
    if (newfd > 2 || oldfd == newfd)
        return 0;
    u64 task = bpf_get_current_task();
    u64 fdt = read_ptr(read_ptr(task, OFF_TASK_FILES), OFF_FILES_FDT);
    if (!fdt || oldfd >= read_u32(fdt, OFF_FDT_MAX_FDS))
        return 0;
    u64 file = read_ptr(read_ptr(fdt, OFF_FDT_FD), (u64)oldfd * 8);
    u16 mode = 0;
    bpf_probe_read_kernel(&mode, 2, (void *)(read_ptr(file, OFF_FILE_F_INODE) + OFF_INODE_I_MODE));
    if ((mode & S_IFMT__) != S_IFSOCK__)
        return 0;
    if (is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    u64 sk = read_ptr(read_ptr(file, OFF_FILE_PRIVATE_DATA), OFF_SOCKET_SK);
    struct dup_rec r = {};
    fill_hdr(&r.h, K_DUP);
    r.oldfd = oldfd;
    r.newfd = newfd;
    if (sk) {
        bpf_probe_read_kernel(&r.family, 2, (void *)(sk + OFF_SKC_FAMILY));
        bpf_probe_read_kernel(&r.sotype, 2, (void *)(sk + OFF_SOCK_SK_TYPE));
        if (KFIELD_EXISTS(sock, sk_protocol))
            bpf_probe_read_kernel(&r.protocol, 2, (void *)(sk + KOFF(sock, sk_protocol)));
        if (r.family == AF_INET_ || r.family == AF_INET6_) {
            u16 rport = 0;
            bpf_probe_read_kernel(&r.lport, 2, (void *)(sk + OFF_SKC_NUM));
            bpf_probe_read_kernel(&rport, 2, (void *)(sk + OFF_SKC_DPORT));
            r.rport = (rport >> 8) | (rport << 8);
            if (r.family == AF_INET_) {
                bpf_probe_read_kernel(r.laddr, 4, (void *)(sk + OFF_SKC_RCV_SADDR));
                bpf_probe_read_kernel(r.raddr, 4, (void *)(sk + OFF_SKC_DADDR));
            } else {
                bpf_probe_read_kernel(r.laddr, 16, (void *)(sk + OFF_SKC_V6_RCV_SADDR));
                bpf_probe_read_kernel(r.raddr, 16, (void *)(sk + OFF_SKC_V6_DADDR));
            }
        }
    }
    u32 tid = (u32)bpf_get_current_pid_tgid();
    bpf_map_update_elem(&dup_pending, &tid, &r, BPF_ANY);
    return 0;
}

static __always_inline int dup_exit(long ret) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct dup_rec *p = bpf_map_lookup_elem(&dup_pending, &tid);
    if (!p)
        return 0;
    struct dup_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
        count_event(C_RETRIES);
        r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    }
    if (!r) {
        count_loss(K_DUP);
        bpf_map_delete_elem(&dup_pending, &tid);
        return 0;
    }
    __builtin_memcpy(r, p, sizeof(*r));
    r->result = ret;
    bpf_ringbuf_submit(r, 0);
    bpf_map_delete_elem(&dup_pending, &tid);
    return 0;
}

SYSCALL_PROBE(sys_enter_dup2) {
    return dup_enter(args->oldfd, args->newfd);
}

SYSCALL_PROBE(sys_exit_dup2) {
    return dup_exit(args->ret);
}

SYSCALL_PROBE(sys_enter_dup3) {
    return dup_enter(args->oldfd, args->newfd);
}

SYSCALL_PROBE(sys_exit_dup3) {
    return dup_exit(args->ret);
}
