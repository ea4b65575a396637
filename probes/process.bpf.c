/* Process lifecycle: fork/clone (process or thread, with clone flags), exec (filename, argv,
 * cwd, script interpreter, euid after exec, loginuid/sessionid, execveat), exit (status).
 *
 * Every kernel struct field comes at a BTF offset (OFF_* = KOFF()). Optional hooks
 * (clone3, execveat, ...) are marked in spyderd/capture/probe_process.py. */
#include "common.h"

/* Compile-time bounds (bcc sets them from capture.max_args / capture.arg_bytes); the
 * CO-RE object is built with these maxima and limited at run time by CFG(). */
#ifndef MAX_ARGS
#define MAX_ARGS 64
#endif
#ifndef ARGBUF
#define ARGBUF 4096            /* power of two */
#endif
SPY_CONFIG(max_args, 32)       /* capture.max_args (<= MAX_ARGS) */
SPY_CONFIG(arg_bytes, 2048)    /* capture.arg_bytes, power of two (<= ARGBUF) */
SPY_CONFIG(capture_threads, 0) /* capture.threads */

/* Kernel struct fields (CO-RE relocated; see probes/compat.h). */
#define OFF_TASK_PID KOFF(task_struct, pid)
#define OFF_TASK_TGID KOFF(task_struct, tgid)
#define OFF_TASK_START_BOOTTIME KOFF(task_struct, start_boottime)
#define OFF_TASK_REAL_PARENT KOFF(task_struct, real_parent)
#define OFF_TASK_EXIT_CODE KOFF(task_struct, exit_code)
#define OFF_TASK_CRED KOFF(task_struct, cred)
#define OFF_CRED_EUID KOFF(cred, euid)
#define OFF_TASK_FS KOFF(task_struct, fs)
#define OFF_FS_PWD KOFF(fs_struct, pwd)
#define OFF_FS_ROOT KOFF(fs_struct, root)
#define OFF_PATH_DENTRY KOFF(path, dentry)
#define OFF_PATH_MNT KOFF(path, mnt)
#define OFF_DENTRY_D_PARENT KOFF(dentry, d_parent)
#define OFF_DENTRY_D_NAME KOFF(dentry, d_name)
#define OFF_QSTR_NAME KOFF(qstr, name)
#define OFF_MOUNT_MNT KOFF(mount, mnt)
#define OFF_MOUNT_MNT_PARENT KOFF(mount, mnt_parent)
#define OFF_MOUNT_MNT_MOUNTPOINT KOFF(mount, mnt_mountpoint)
#define OFF_VFSMOUNT_MNT_ROOT KOFF(vfsmount, mnt_root)
#define OFF_BPRM_FILENAME KOFF(linux_binprm, filename)
#define OFF_CRED_CAP_EFFECTIVE KOFF(cred, cap_effective)
#define OFF_TASK_FILES KOFF(task_struct, files)
#define OFF_FILES_FDT KOFF(files_struct, fdt)
#define OFF_FDT_FD KOFF(fdtable, fd)
#define OFF_FDT_MAX_FDS KOFF(fdtable, max_fds)
#define OFF_FILE_F_PATH_DENTRY KOFF(file, f_path.dentry)
#define OFF_FILE_F_PATH_MNT KOFF(file, f_path.mnt)
#define OFF_FILE_F_INODE KOFF(file, f_inode)
#define OFF_FILE_PRIVATE_DATA KOFF(file, private_data)
#define OFF_INODE_I_MODE KOFF(inode, i_mode)
#define OFF_INODE_I_INO KOFF(inode, i_ino)
#define OFF_INODE_I_SB KOFF(inode, i_sb)
#define OFF_INODE_I_RDEV KOFF(inode, i_rdev)
#define OFF_SB_S_DEV KOFF(super_block, s_dev)
#define OFF_SOCKET_SK KOFF(socket, sk)
#define OFF_SOCK_SK_TYPE KOFF(sock, sk_type)
#define OFF_SKC_FAMILY KOFF(sock_common, skc_family)
#define OFF_SKC_NUM KOFF(sock_common, skc_num)
#define OFF_SKC_DPORT KOFF(sock_common, skc_dport)
#define OFF_SKC_DADDR KOFF(sock_common, skc_daddr)
#define OFF_SKC_RCV_SADDR KOFF(sock_common, skc_rcv_saddr)
#define OFF_SKC_V6_DADDR KOFF(sock_common, skc_v6_daddr)
#define OFF_SKC_V6_RCV_SADDR KOFF(sock_common, skc_v6_rcv_saddr)
#define OFF_BPRM_INTERP KOFF(linux_binprm, interp)


/* ---- clone flags: remembered at syscall entry (per thread), consumed at the fork ---- */

BPF_LRU_HASH(clone_flags_of, u32, u64, 4096);

static __always_inline int remember_flags(u64 flags) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    bpf_map_update_elem(&clone_flags_of, &tid, &flags, BPF_ANY);
    return 0;
}

SYSCALL_PROBE(sys_enter_clone) {
    return remember_flags((u64)args->clone_flags);
}

SYSCALL_PROBE(sys_enter_clone3) {
    u64 flags = 0; /* struct clone_args starts with u64 flags */
    bpf_probe_read_user(&flags, sizeof(flags), (void *)args->uargs);
    return remember_flags(flags);
}

SYSCALL_PROBE(sys_enter_fork) {
    return remember_flags(17 /* SIGCHLD */);
}

SYSCALL_PROBE(sys_enter_vfork) {
    return remember_flags(0x4000 | 0x100 | 17 /* CLONE_VFORK | CLONE_VM | SIGCHLD */);
}

struct fork_rec {
    struct hdr h;
    u32 child_pid;     /* child tgid (== child tid for a process) */
    u32 parent_pid;
    u64 child_start;   /* child's start_boottime, ns */
    u64 clone_flags;
    u32 child_tid;
    u32 thread;
};
SPY_RECORD(fork_rec)

RAW_TRACEPOINT_PROBE(sched_process_fork) {
    u64 parent = ctx->args[0];
    u64 child = ctx->args[1];
    u32 ctgid = read_u32(child, OFF_TASK_TGID);
    u32 cpid = read_u32(child, OFF_TASK_PID);
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 flags = 0;
    u64 *fl = bpf_map_lookup_elem(&clone_flags_of, &tid);
    if (fl) {
        flags = *fl;
        bpf_map_delete_elem(&clone_flags_of, &tid);
    }
    u32 thread = ctgid != cpid;
    if (thread) {
        count_event(C_THREADS); /* counted even when not sent */
        if (!CFG(capture_threads))
            return 0;
    }
    u32 ptgid = read_u32(parent, OFF_TASK_TGID);
    if (is_self(ptgid))
        return 0;
    struct fork_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
        count_event(C_RETRIES);
        r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    }
    if (!r) {
        count_loss(K_FORK);
        return 0;
    }
    fill_hdr(&r->h, K_FORK);
    r->child_pid = ctgid;
    r->child_tid = cpid;
    r->parent_pid = ptgid;
    r->thread = thread;
    r->clone_flags = flags;
    r->child_start = read_ptr(child, OFF_TASK_START_BOOTTIME);
    bpf_ringbuf_submit(r, 0);
    return 0;
}

/* ---- exec ---- */

#define ARGBUF_MASK (ARGBUF - 1)
#define CWDBUF 512           /* bytes of cwd kept; deeper or longer paths are flagged */
#define CWD_DEPTH 16         /* path components walked (mount crossings count as one) */
#define TRUNC_ARGS 1
#define TRUNC_CWD 2
#define TRUNC_ENV 4          /* more watched variables than ENVBUF holds */
#define TRUNC_STDIO 8        /* an fd 0-2 path deeper or longer than its buffer */
#define ENVBUF 512           /* watched NAME=value strings, NUL separated */
#define ENV_ENTRY 256        /* bytes kept of one of them */
#ifndef MAX_ENV
#define MAX_ENV 128          /* environment entries looked at */
#endif
#define STDIO_PATH 256       /* bytes of an fd 0-2 path: components leaf first */
#define STDIO_DEPTH 12

/* What fd 0, 1 or 2 of the new image is: the inode's type, identity and, for a socket, its
 * addresses; for a file or FIFO its path (leaf first, NUL separated). mode 0: closed. */
struct stdio_rec {
    u32 mode;          /* inode i_mode */
    u32 rdev;          /* character devices (ttys): kernel dev_t */
    u64 ino;           /* pipes: the same number at both ends */
    u32 dev;
    u16 family;        /* sockets */
    u16 sotype;
    u16 protocol;
    u16 lport;
    u16 rport;         /* host order */
    u16 path_len;
    u8 laddr[16];
    u8 raddr[16];
    char path[STDIO_PATH];
};

struct exec_rec {
    struct hdr h;
    u64 start;         /* start_boottime, ns */
    u32 ppid;
    u32 argc;
    u32 args_len;
    u32 truncated;     /* TRUNC_* bits */
    u32 execveat;
    u32 euid;
    u32 loginuid;
    u32 sessionid;
    u32 cwd_len;       /* bytes used in cwd: components leaf first, NUL separated */
    u32 pad;
    char filename[256];
    char interp[256];  /* set only when it differs from filename (scripts, binfmt_misc) */
    u64 cap_effective; /* of the new image */
    u32 env_len;       /* bytes used in env */
    u32 env_seen;      /* environment entries looked at */
    struct stdio_rec fds[3];
    char env[ENVBUF];  /* capture.env_vars entries only, filtered here (env_watch) */
    char cwd[CWDBUF * 2];
    char args[ARGBUF * 2];
};
SPY_RECORD(exec_rec)

BPF_PERCPU_ARRAY(exec_scratch, struct exec_rec, 1);
BPF_LRU_HASH(exec_pending, u32, struct exec_rec, 1024);

/* ---- environment: only the variables of capture.env_vars ---- */

/* First 7 bytes of "NAME=..." (as an 8-byte NUL-terminated read) -> 1, for names of 7 bytes
 * or more; shorter names are keyed by "NAME=" and matched under a mask of its length
 * (ENV_SHORT: bit n set when some name has n - 1 bytes). A hit is copied whole; user space
 * keeps exactly the configured names (a longer name with the same first bytes is dropped
 * and counted there). */
BPF_HASH(env_watch, u64, u8, 64);
SPY_CONFIG(env_short, 0)       /* capture.env_vars: bit n set when a name has n - 1 bytes */

static __always_inline int env_hit(u64 w) {
    if (bpf_map_lookup_elem(&env_watch, &w))
        return 1;
    u64 shorts = CFG(env_short);
    if (!shorts)
        return 0;
#pragma unroll
    for (int n = 2; n < 8; n++) {
        if (!((shorts >> n) & 1))
            continue;
        u64 k = w & ((1ULL << (8 * n)) - 1);
        if (bpf_map_lookup_elem(&env_watch, &k))
            return 1;
    }
    return 0;
}

/* The write position lives in the record (map memory), not in a register: reloaded, it is
 * unknown to the verifier, so the paths through the loop prune instead of multiplying. */
#define VOLATILE_READ(x) (*(volatile typeof(x) *)&(x))

static __always_inline void save_env(struct exec_rec *r, const char *const *envp) {
    u32 i = 0;
    r->env_len = 0;
    r->env_seen = 0;
    if (!envp)
        return;
#pragma clang loop unroll(disable)
    for (i = 0; i < MAX_ENV; i++) {
        const char *p = NULL;
        if (bpf_probe_read_user(&p, sizeof(p), &envp[i]) || !p)
            break;
        u64 w = 0;
        if (bpf_probe_read_user_str(&w, sizeof(w), p) <= 0 || !env_hit(w))
            continue;
        u32 off = VOLATILE_READ(r->env_len);
        if (off >= ENVBUF / 2) {
            r->truncated |= TRUNC_ENV;
            break;
        }
        int n = bpf_probe_read_user_str(&r->env[off & (ENVBUF / 2 - 1)], ENV_ENTRY, p);
        if (n > 0)
            r->env_len = off + (n & (ENV_ENTRY - 1));
    }
    r->env_seen = i;
}

static __always_inline int save_argv(const char *const *argv, const char *const *envp,
                                     u32 at) {
    u32 zero = 0, tid = (u32)bpf_get_current_pid_tgid();
    if (is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct exec_rec *r = bpf_map_lookup_elem(&exec_scratch, &zero);
    if (!r)
        return 0;
    r->argc = 0;
    r->args_len = 0;
    r->truncated = 0;
    r->execveat = at;
    u32 off = 0;
    u32 nargs = CFG(max_args) < MAX_ARGS ? CFG(max_args) : MAX_ARGS;
    u32 limit = CFG(arg_bytes) < ARGBUF ? CFG(arg_bytes) : ARGBUF;
#ifdef SPYDER_BCC
#pragma unroll /* bcc: MAX_ARGS is capture.max_args; libbpf: a bounded loop (5.3+) */
#endif
    for (int i = 0; i < MAX_ARGS; i++) {
        if (i >= nargs)
            goto last;
        const char *p = NULL;
        if (bpf_probe_read_user(&p, sizeof(p), &argv[i]) || !p)
            goto done;
        if (off >= limit) {
            r->truncated |= TRUNC_ARGS;
            goto done;
        }
        int n = bpf_probe_read_user_str(&r->args[off & ARGBUF_MASK], limit, p);
        if (n <= 0)
            goto done;
        if (n >= limit)
            r->truncated |= TRUNC_ARGS;
        off += n;
        r->argc++;
    }
last:
    {
        const char *p = NULL;
        bpf_probe_read_user(&p, sizeof(p), &argv[nargs]);
        if (p)
            r->truncated |= TRUNC_ARGS;
    }
done:
    r->args_len = off;
    save_env(r, envp);
    bpf_map_update_elem(&exec_pending, &tid, r, BPF_ANY);
    return 0;
}

SYSCALL_PROBE(sys_enter_execve) {
    return save_argv((const char *const *)args->argv, (const char *const *)args->envp, 0);
}

SYSCALL_PROBE(sys_exit_execve) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    bpf_map_delete_elem(&exec_pending, &tid);
    return 0;
}

SYSCALL_PROBE(sys_enter_execveat) {
    return save_argv((const char *const *)args->argv, (const char *const *)args->envp, 1);
}

SYSCALL_PROBE(sys_exit_execveat) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    bpf_map_delete_elem(&exec_pending, &tid);
    return 0;
}

/* The working directory as the process sees it: dentry names from task->fs->pwd up to
 * task->fs->root, crossing mounts through mount->mnt_mountpoint, leaf first. */
static __always_inline void read_cwd(struct exec_rec *r, u64 task) {
    u64 fs = read_ptr(task, OFF_TASK_FS);
    u64 dentry = read_ptr(fs, OFF_FS_PWD + OFF_PATH_DENTRY);
    u64 vfsmnt = read_ptr(fs, OFF_FS_PWD + OFF_PATH_MNT);
    u64 root_dentry = read_ptr(fs, OFF_FS_ROOT + OFF_PATH_DENTRY);
    u64 root_mnt = read_ptr(fs, OFF_FS_ROOT + OFF_PATH_MNT);
    u32 off = 0;
    r->cwd_len = 0;
    if (!dentry || !vfsmnt)
        return;
#pragma unroll
    for (int i = 0; i < CWD_DEPTH; i++) {
        if (dentry == root_dentry && vfsmnt == root_mnt)
            goto done;
        u64 mnt = vfsmnt - OFF_MOUNT_MNT;
        if (dentry == read_ptr(vfsmnt, OFF_VFSMOUNT_MNT_ROOT)) {
            u64 parent = read_ptr(mnt, OFF_MOUNT_MNT_PARENT);
            if (!parent || parent == mnt)
                goto done; /* the top of the mount tree */
            dentry = read_ptr(mnt, OFF_MOUNT_MNT_MOUNTPOINT);
            vfsmnt = parent + OFF_MOUNT_MNT;
            continue;
        }
        u64 parent = read_ptr(dentry, OFF_DENTRY_D_PARENT);
        if (!parent || parent == dentry)
            goto done;
        if (off >= CWDBUF) {
            r->truncated |= TRUNC_CWD;
            goto done;
        }
        u64 name = read_ptr(dentry, OFF_DENTRY_D_NAME + OFF_QSTR_NAME);
        int n = bpf_probe_read_kernel_str(&r->cwd[off & (CWDBUF - 1)], CWDBUF, (void *)name);
        if (n <= 0)
            goto done;
        off += n;
        dentry = parent;
    }
    r->truncated |= TRUNC_CWD; /* deeper than CWD_DEPTH */
done:
    r->cwd_len = off;
}

/* ---- fds 0, 1, 2 of the new image ---- */

#define S_IFMT_ 0170000
#define S_IFSOCK_ 0140000
#define AF_INET_ 2
#define AF_INET6_ 10

static __always_inline u64 stdio_file(u64 task, u32 fd) {
    u64 fdt = read_ptr(read_ptr(task, OFF_TASK_FILES), OFF_FILES_FDT);
    if (!fdt || fd >= read_u32(fdt, OFF_FDT_MAX_FDS))
        return 0;
    return read_ptr(read_ptr(fdt, OFF_FDT_FD), (u64)fd * 8);
}

/* The file's path below the process root, leaf first, NUL separated (as read_cwd). */
static __always_inline void stdio_path(struct exec_rec *r, struct stdio_rec *s, u64 file,
                                       u64 root_dentry, u64 root_mnt) {
    u64 dentry = read_ptr(file, OFF_FILE_F_PATH_DENTRY);
    u64 vfsmnt = read_ptr(file, OFF_FILE_F_PATH_MNT);
    u32 off = 0;
#pragma unroll
    for (int i = 0; i < STDIO_DEPTH; i++) {
        if (!dentry || (dentry == root_dentry && vfsmnt == root_mnt))
            goto done;
        u64 mnt = vfsmnt - OFF_MOUNT_MNT;
        if (dentry == read_ptr(vfsmnt, OFF_VFSMOUNT_MNT_ROOT)) {
            u64 parent = read_ptr(mnt, OFF_MOUNT_MNT_PARENT);
            if (!parent || parent == mnt)
                goto done;
            dentry = read_ptr(mnt, OFF_MOUNT_MNT_MOUNTPOINT);
            vfsmnt = parent + OFF_MOUNT_MNT;
            continue;
        }
        u64 parent = read_ptr(dentry, OFF_DENTRY_D_PARENT);
        if (!parent || parent == dentry)
            goto done;
        if (off >= STDIO_PATH / 2) {
            r->truncated |= TRUNC_STDIO;
            goto done;
        }
        u64 name = read_ptr(dentry, OFF_DENTRY_D_NAME + OFF_QSTR_NAME);
        int n = bpf_probe_read_kernel_str(&s->path[off & (STDIO_PATH / 2 - 1)], STDIO_PATH / 2,
                                          (void *)name);
        if (n <= 0)
            goto done;
        off += n;
        dentry = parent;
    }
    r->truncated |= TRUNC_STDIO;
done:
    s->path_len = off;
}

static __always_inline void stdio_socket(struct stdio_rec *s, u64 file) {
    u64 sk = read_ptr(read_ptr(file, OFF_FILE_PRIVATE_DATA), OFF_SOCKET_SK);
    if (!sk)
        return;
    bpf_probe_read_kernel(&s->family, 2, (void *)(sk + OFF_SKC_FAMILY));
    bpf_probe_read_kernel(&s->sotype, 2, (void *)(sk + OFF_SOCK_SK_TYPE));
    if (KFIELD_EXISTS(sock, sk_protocol))
        bpf_probe_read_kernel(&s->protocol, 2, (void *)(sk + KOFF(sock, sk_protocol)));
    if (s->family != AF_INET_ && s->family != AF_INET6_)
        return;
    u16 rport = 0;
    bpf_probe_read_kernel(&s->lport, 2, (void *)(sk + OFF_SKC_NUM));
    bpf_probe_read_kernel(&rport, 2, (void *)(sk + OFF_SKC_DPORT));
    s->rport = (rport >> 8) | (rport << 8);
    if (s->family == AF_INET_) {
        bpf_probe_read_kernel(s->laddr, 4, (void *)(sk + OFF_SKC_RCV_SADDR));
        bpf_probe_read_kernel(s->raddr, 4, (void *)(sk + OFF_SKC_DADDR));
    } else {
        bpf_probe_read_kernel(s->laddr, 16, (void *)(sk + OFF_SKC_V6_RCV_SADDR));
        bpf_probe_read_kernel(s->raddr, 16, (void *)(sk + OFF_SKC_V6_DADDR));
    }
}

static __always_inline void read_stdio(struct exec_rec *r, u64 task) {
    u64 fs = read_ptr(task, OFF_TASK_FS);
    u64 root_dentry = read_ptr(fs, OFF_FS_ROOT + OFF_PATH_DENTRY);
    u64 root_mnt = read_ptr(fs, OFF_FS_ROOT + OFF_PATH_MNT);
#pragma unroll
    for (int fd = 0; fd < 3; fd++) {
        struct stdio_rec *s = &r->fds[fd];
        __builtin_memset(s, 0, offsetof(struct stdio_rec, path));
        s->path[0] = 0;
        u64 file = stdio_file(task, fd);
        if (!file)
            continue;
        u64 inode = read_ptr(file, OFF_FILE_F_INODE);
        u16 mode = 0;
        bpf_probe_read_kernel(&mode, sizeof(mode), (void *)(inode + OFF_INODE_I_MODE));
        s->mode = mode;
        s->ino = read_ptr(inode, OFF_INODE_I_INO);
        s->dev = read_u32(read_ptr(inode, OFF_INODE_I_SB), OFF_SB_S_DEV);
        s->rdev = read_u32(inode, OFF_INODE_I_RDEV);
        u32 type = mode & S_IFMT_;
        if (type == S_IFSOCK_)
            stdio_socket(s, file);
        else  /* files, FIFOs, ttys, /dev/null; an anonymous pipe has no path */
            stdio_path(r, s, file, root_dentry, root_mnt);
    }
}

RAW_TRACEPOINT_PROBE(sched_process_exec) {
    u32 zero = 0, old = (u32)ctx->args[1];
    u64 task = ctx->args[0];
    u64 bprm = ctx->args[2];
    if (is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct exec_rec *r = bpf_map_lookup_elem(&exec_pending, &old);
    if (!r) {
        r = bpf_map_lookup_elem(&exec_scratch, &zero);
        if (!r)
            return 0;
        r->argc = 0;
        r->args_len = 0;
        r->truncated = 0;
        r->execveat = 0;
        r->env_len = 0;
        r->env_seen = 0;
    }
    fill_hdr(&r->h, K_EXEC);
    r->start = read_ptr(task, OFF_TASK_START_BOOTTIME);
    r->ppid = read_u32(read_ptr(task, OFF_TASK_REAL_PARENT), OFF_TASK_TGID);
    r->euid = read_u32(read_ptr(task, OFF_TASK_CRED), OFF_CRED_EUID);
    r->loginuid = 0xffffffff; /* kernels without CONFIG_AUDIT have neither field */
    r->sessionid = 0xffffffff;
    if (KFIELD_EXISTS(task_struct, loginuid))
        r->loginuid = read_u32(task, KOFF(task_struct, loginuid));
    if (KFIELD_EXISTS(task_struct, sessionid))
        r->sessionid = read_u32(task, KOFF(task_struct, sessionid));
    u64 fname = read_ptr(bprm, OFF_BPRM_FILENAME);
    u64 interp = read_ptr(bprm, OFF_BPRM_INTERP);
    bpf_probe_read_kernel_str(r->filename, sizeof(r->filename), (void *)fname);
    r->interp[0] = 0;
    if (interp && interp != fname)
        bpf_probe_read_kernel_str(r->interp, sizeof(r->interp), (void *)interp);
    read_cwd(r, task);
    read_stdio(r, task);
    r->cap_effective = read_ptr(read_ptr(task, OFF_TASK_CRED), OFF_CRED_CAP_EFFECTIVE);
    r->pad = 0;
    u32 size = offsetof(struct exec_rec, args) + (r->args_len & (ARGBUF * 2 - 1));
    if (size > sizeof(struct exec_rec))
        size = sizeof(struct exec_rec);
    if (bpf_ringbuf_output(&events, r, size, 0)) { /* retried once, as reservations are */
        count_event(C_RETRIES);
        if (bpf_ringbuf_output(&events, r, size, 0))
            count_loss(K_EXEC);
    }
    bpf_map_delete_elem(&exec_pending, &old);
    return 0;
}

/* ---- exit ---- */

struct exit_rec {
    struct hdr h;
    u32 exit_code;
    u32 pad;
};
SPY_RECORD(exit_rec)

/* Whether the exiting task is the last of its thread group: the tracepoint's group_dead
 * (6.x) where it has one, else "the thread group leader exits". */
#ifdef SPYDER_BCC
#ifdef HAVE_GROUP_DEAD
#define group_dead(args, pt) ((args)->group_dead)
#else
#define group_dead(args, pt) ((u32)(pt) == ((pt) >> 32))
#endif
#else
static __always_inline int group_dead(void *args, u64 pt) {
    if (bpf_core_field_exists(struct trace_event_raw_sched_process_exit, group_dead))
        return ((struct trace_event_raw_sched_process_exit *)args)->group_dead;
    return (u32)pt == (pt >> 32);
}
#endif

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 pt = bpf_get_current_pid_tgid();
    if (!group_dead(args, pt))
        return 0;
    if (is_self(pt >> 32))
        return 0;
    struct exit_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
        count_event(C_RETRIES);
        r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    }
    if (!r) {
        count_loss(K_EXIT);
        return 0;
    }
    fill_hdr(&r->h, K_EXIT);
    r->exit_code = read_u32(bpf_get_current_task(), OFF_TASK_EXIT_CODE);
    r->pad = 0;
    bpf_ringbuf_submit(r, 0);
    return 0;
}
