/* Process lifecycle: fork/clone (process or thread, with clone flags), exec (filename, argv,
 * cwd, script interpreter, euid after exec, loginuid/sessionid, execveat), exit (status).
 *
 * Every kernel struct field comes at a BTF offset (OFF_*). Hooks wrapped in #ifdef HAVE_*
 * are optional: the probe runs without them on kernels that lack them. */

/* ---- clone flags: remembered at syscall entry (per thread), consumed at the fork ---- */

BPF_TABLE("lru_hash", u32, u64, clone_flags_of, 4096);

static __always_inline int remember_flags(u64 flags) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    clone_flags_of.update(&tid, &flags);
    return 0;
}

#ifdef HAVE_SYSCALLS_SYS_ENTER_CLONE
TRACEPOINT_PROBE(syscalls, sys_enter_clone) {
    return remember_flags((u64)args->clone_flags);
}
#endif

#ifdef HAVE_SYSCALLS_SYS_ENTER_CLONE3
TRACEPOINT_PROBE(syscalls, sys_enter_clone3) {
    u64 flags = 0; /* struct clone_args starts with u64 flags */
    bpf_probe_read_user(&flags, sizeof(flags), (void *)args->uargs);
    return remember_flags(flags);
}
#endif

#ifdef HAVE_SYSCALLS_SYS_ENTER_FORK
TRACEPOINT_PROBE(syscalls, sys_enter_fork) {
    return remember_flags(17 /* SIGCHLD */);
}
#endif

#ifdef HAVE_SYSCALLS_SYS_ENTER_VFORK
TRACEPOINT_PROBE(syscalls, sys_enter_vfork) {
    return remember_flags(0x4000 | 0x100 | 17 /* CLONE_VFORK | CLONE_VM | SIGCHLD */);
}
#endif

struct fork_rec {
    struct hdr h;
    u32 child_pid;     /* child tgid (== child tid for a process) */
    u32 parent_pid;
    u64 child_start;   /* child's start_boottime, ns */
    u64 clone_flags;
    u32 child_tid;
    u32 thread;
};

RAW_TRACEPOINT_PROBE(sched_process_fork) {
    u64 parent = ctx->args[0];
    u64 child = ctx->args[1];
    u32 ctgid = read_u32(child, OFF_TASK_TGID);
    u32 cpid = read_u32(child, OFF_TASK_PID);
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 flags = 0;
    u64 *fl = clone_flags_of.lookup(&tid);
    if (fl) {
        flags = *fl;
        clone_flags_of.delete(&tid);
    }
    u32 thread = ctgid != cpid;
    if (thread) {
        count_event(C_THREADS); /* counted even when not sent */
#if !CAPTURE_THREADS
        return 0;
#endif
    }
    u32 ptgid = read_u32(parent, OFF_TASK_TGID);
    if (is_self(ptgid))
        return 0;
    struct fork_rec *r = events.ringbuf_reserve(sizeof(*r));
    if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
        count_event(C_RETRIES);
        r = events.ringbuf_reserve(sizeof(*r));
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
    events.ringbuf_submit(r, 0);
    return 0;
}

/* ---- exec ---- */

#define ARGBUF_MASK (ARGBUF - 1)
#define CWDBUF 512           /* bytes of cwd kept; deeper or longer paths are flagged */
#define CWD_DEPTH 16         /* path components walked (mount crossings count as one) */
#define TRUNC_ARGS 1
#define TRUNC_CWD 2

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
    char cwd[CWDBUF * 2];
    char args[ARGBUF * 2];
};

BPF_PERCPU_ARRAY(exec_scratch, struct exec_rec, 1);
BPF_TABLE("lru_hash", u32, struct exec_rec, exec_pending, 1024);

static __always_inline int save_argv(const char *const *argv, u32 at) {
    u32 zero = 0, tid = (u32)bpf_get_current_pid_tgid();
    if (is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct exec_rec *r = exec_scratch.lookup(&zero);
    if (!r)
        return 0;
    r->argc = 0;
    r->args_len = 0;
    r->truncated = 0;
    r->execveat = at;
    u32 off = 0;
#pragma unroll
    for (int i = 0; i < MAX_ARGS; i++) {
        const char *p = NULL;
        if (bpf_probe_read_user(&p, sizeof(p), &argv[i]) || !p)
            goto done;
        if (off >= ARGBUF) {
            r->truncated |= TRUNC_ARGS;
            goto done;
        }
        int n = bpf_probe_read_user_str(&r->args[off & ARGBUF_MASK], ARGBUF, p);
        if (n <= 0)
            goto done;
        if (n >= ARGBUF)
            r->truncated |= TRUNC_ARGS;
        off += n;
        r->argc++;
    }
    {
        const char *p = NULL;
        bpf_probe_read_user(&p, sizeof(p), &argv[MAX_ARGS]);
        if (p)
            r->truncated |= TRUNC_ARGS;
    }
done:
    r->args_len = off;
    exec_pending.update(&tid, r);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    return save_argv((const char *const *)args->argv, 0);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    exec_pending.delete(&tid);
    return 0;
}

#if defined(HAVE_SYSCALLS_SYS_ENTER_EXECVEAT) && defined(HAVE_SYSCALLS_SYS_EXIT_EXECVEAT)
TRACEPOINT_PROBE(syscalls, sys_enter_execveat) {
    return save_argv((const char *const *)args->argv, 1);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    exec_pending.delete(&tid);
    return 0;
}
#endif

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

RAW_TRACEPOINT_PROBE(sched_process_exec) {
    u32 zero = 0, old = (u32)ctx->args[1];
    u64 task = ctx->args[0];
    u64 bprm = ctx->args[2];
    if (is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct exec_rec *r = exec_pending.lookup(&old);
    if (!r) {
        r = exec_scratch.lookup(&zero);
        if (!r)
            return 0;
        r->argc = 0;
        r->args_len = 0;
        r->truncated = 0;
        r->execveat = 0;
    }
    fill_hdr(&r->h, K_EXEC);
    r->start = read_ptr(task, OFF_TASK_START_BOOTTIME);
    r->ppid = read_u32(read_ptr(task, OFF_TASK_REAL_PARENT), OFF_TASK_TGID);
    r->euid = read_u32(read_ptr(task, OFF_TASK_CRED), OFF_CRED_EUID);
#ifdef OFF_TASK_LOGINUID
    r->loginuid = read_u32(task, OFF_TASK_LOGINUID);
    r->sessionid = read_u32(task, OFF_TASK_SESSIONID);
#else
    r->loginuid = 0xffffffff;
    r->sessionid = 0xffffffff;
#endif
    u64 fname = read_ptr(bprm, OFF_BPRM_FILENAME);
    u64 interp = read_ptr(bprm, OFF_BPRM_INTERP);
    bpf_probe_read_kernel_str(r->filename, sizeof(r->filename), (void *)fname);
    r->interp[0] = 0;
    if (interp && interp != fname)
        bpf_probe_read_kernel_str(r->interp, sizeof(r->interp), (void *)interp);
    read_cwd(r, task);
    r->pad = 0;
    u32 size = offsetof(struct exec_rec, args) + (r->args_len & (ARGBUF * 2 - 1));
    if (size > sizeof(struct exec_rec))
        size = sizeof(struct exec_rec);
    if (events.ringbuf_output(r, size, 0)) { /* retried once, as reservations are */
        count_event(C_RETRIES);
        if (events.ringbuf_output(r, size, 0))
            count_loss(K_EXEC);
    }
    exec_pending.delete(&old);
    return 0;
}

/* ---- exit ---- */

struct exit_rec {
    struct hdr h;
    u32 exit_code;
    u32 pad;
};

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 pt = bpf_get_current_pid_tgid();
#ifdef HAVE_GROUP_DEAD
    if (!args->group_dead)
        return 0;
#else
    if ((u32)pt != (pt >> 32))
        return 0;
#endif
    if (is_self(pt >> 32))
        return 0;
    struct exit_rec *r = events.ringbuf_reserve(sizeof(*r));
    if (!r) { /* the 6.15+ ring lock may give up once (rqspinlock): retry */
        count_event(C_RETRIES);
        r = events.ringbuf_reserve(sizeof(*r));
    }
    if (!r) {
        count_loss(K_EXIT);
        return 0;
    }
    fill_hdr(&r->h, K_EXIT);
    r->exit_code = read_u32(bpf_get_current_task(), OFF_TASK_EXIT_CODE);
    r->pad = 0;
    events.ringbuf_submit(r, 0);
    return 0;
}
