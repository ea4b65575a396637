/* Process lifecycle: fork (new thread groups only), exec with argv, exit with status. */

struct fork_rec {
    struct hdr h;
    u32 child_pid;
    u32 parent_pid;
    u64 child_start;   /* child's start_boottime, ns */
};

RAW_TRACEPOINT_PROBE(sched_process_fork) {
    u64 parent = ctx->args[0];
    u64 child = ctx->args[1];
    u32 ctgid = read_u32(child, OFF_TASK_TGID);
    u32 cpid = read_u32(child, OFF_TASK_PID);
    if (ctgid != cpid)
        return 0; /* a thread, not a process */
    u32 ptgid = read_u32(parent, OFF_TASK_TGID);
    if (is_self(ptgid))
        return 0;
    struct fork_rec *r = events.ringbuf_reserve(sizeof(*r));
    if (!r) {
        count_loss(K_FORK);
        return 0;
    }
    fill_hdr(&r->h, K_FORK);
    r->child_pid = cpid;
    r->parent_pid = ptgid;
    r->child_start = read_ptr(child, OFF_TASK_START_BOOTTIME);
    events.ringbuf_submit(r, 0);
    return 0;
}

#define ARGBUF_MASK (ARGBUF - 1)

struct exec_rec {
    struct hdr h;
    u64 start;         /* start_boottime, ns */
    u32 ppid;
    u32 argc;
    u32 args_len;
    u32 truncated;
    char filename[256];
    char args[ARGBUF * 2];
};

BPF_PERCPU_ARRAY(exec_scratch, struct exec_rec, 1);
BPF_TABLE("lru_hash", u32, struct exec_rec, exec_pending, 1024);

static __always_inline int save_argv(const char *const *argv) {
    u32 zero = 0, tid = (u32)bpf_get_current_pid_tgid();
    if (is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct exec_rec *r = exec_scratch.lookup(&zero);
    if (!r)
        return 0;
    r->argc = 0;
    r->args_len = 0;
    r->truncated = 0;
    u32 off = 0;
#pragma unroll
    for (int i = 0; i < MAX_ARGS; i++) {
        const char *p = NULL;
        if (bpf_probe_read_user(&p, sizeof(p), &argv[i]) || !p)
            goto done;
        if (off >= ARGBUF) {
            r->truncated = 1;
            goto done;
        }
        int n = bpf_probe_read_user_str(&r->args[off & ARGBUF_MASK], ARGBUF, p);
        if (n <= 0)
            goto done;
        if (n >= ARGBUF)
            r->truncated = 1;
        off += n;
        r->argc++;
    }
    {
        const char *p = NULL;
        bpf_probe_read_user(&p, sizeof(p), &argv[MAX_ARGS]);
        if (p)
            r->truncated = 1;
    }
done:
    r->args_len = off;
    exec_pending.update(&tid, r);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    return save_argv((const char *const *)args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat) {
    return save_argv((const char *const *)args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    exec_pending.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    exec_pending.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec) {
    u32 zero = 0, old = args->old_pid;
    u64 task = bpf_get_current_task();
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
    }
    fill_hdr(&r->h, K_EXEC);
    r->start = read_ptr(task, OFF_TASK_START_BOOTTIME);
    r->ppid = read_u32(read_ptr(task, OFF_TASK_REAL_PARENT), OFF_TASK_TGID);
    bpf_probe_read_kernel_str(r->filename, sizeof(r->filename),
                              (char *)args + (args->data_loc_filename & 0xFFFF));
    u32 size = offsetof(struct exec_rec, args) + (r->args_len & (ARGBUF * 2 - 1));
    if (size > sizeof(struct exec_rec))
        size = sizeof(struct exec_rec);
    if (events.ringbuf_output(r, size, 0))
        count_loss(K_EXEC);
    exec_pending.delete(&old);
    return 0;
}

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
