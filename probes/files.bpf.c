/* Files: changes under watched path prefixes, failed opens, and download-then-run.
 *
 * Filtering happens here, in the kernel:
 *  - a path-changing syscall (open for write, create, unlink, rename, chmod, chown, xattr,
 *    truncate, link, symlink) is saved at sys_enter only if its absolute path lies under a
 *    watched prefix (LPM trie `watch`, filled from capture.watch_paths) whose operation
 *    mask includes the call, and sent at sys_exit with the result;
 *  - read-only opens are never sent; an open failing with EACCES/EPERM is sent from
 *    anywhere when capture.failed_opens is on (fsettings[0]);
 *  - every successful write-open of a regular file records (dev, inode) -> writer in the
 *    cache `written` without sending anything; an exec of such a file sends one
 *    WROTE_EXEC record (ELF binaries at sched_process_exec; #! scripts when the
 *    interpreter opens the script, because the kernel has swapped bprm->file for the
 *    interpreter by the time any exec tracepoint fires; scripts named in an interpreter's
 *    argv, `bash /tmp/x.sh`, when the interpreter opens them: `interpreters` says how
 *    each one's argv names its script).
 *
 * Paths: absolute user strings as given; relative ones joined to the directory of dirfd
 * or to the cwd by walking dentries up to the process root (mount points crossed);
 * fd-based calls and successful opens take the path of the open file itself. A user
 * string with "." / ".." / "//" components is sent flagged RF_NORM whatever its prefix;
 * user space normalises it and applies the same watch list (count: "file filtered").
 * Kernel struct offsets all come from BTF (-DOFF_*), never from headers. */
#include "common.h"


/* Kernel struct fields (CO-RE relocated; see probes/compat.h). */
#define OFF_TASK_FILES KOFF(task_struct, files)
#define OFF_TASK_FS KOFF(task_struct, fs)
#define OFF_TASK_START_BOOTTIME KOFF(task_struct, start_boottime)
#define OFF_FILES_FDT KOFF(files_struct, fdt)
#define OFF_FDT_FD KOFF(fdtable, fd)
#define OFF_FDT_MAX_FDS KOFF(fdtable, max_fds)
#define OFF_FS_ROOT_DENTRY KOFF(fs_struct, root.dentry)
#define OFF_FS_ROOT_MNT KOFF(fs_struct, root.mnt)
#define OFF_FS_PWD_DENTRY KOFF(fs_struct, pwd.dentry)
#define OFF_FS_PWD_MNT KOFF(fs_struct, pwd.mnt)
#define OFF_MOUNT_MNT KOFF(mount, mnt)
#define OFF_MOUNT_MNT_PARENT KOFF(mount, mnt_parent)
#define OFF_MOUNT_MNT_MOUNTPOINT KOFF(mount, mnt_mountpoint)
#define OFF_VFSMOUNT_MNT_ROOT KOFF(vfsmount, mnt_root)
#define OFF_DENTRY_D_PARENT KOFF(dentry, d_parent)
#define OFF_DENTRY_D_NAME_LEN KOFF(dentry, d_name.len)
#define OFF_DENTRY_D_NAME_NAME KOFF(dentry, d_name.name)
#define OFF_FILE_F_PATH_DENTRY KOFF(file, f_path.dentry)
#define OFF_FILE_F_PATH_MNT KOFF(file, f_path.mnt)
#define OFF_FILE_F_INODE KOFF(file, f_inode)
#define OFF_FILE_F_MODE KOFF(file, f_mode)
#define OFF_INODE_I_INO KOFF(inode, i_ino)
#define OFF_INODE_I_SB KOFF(inode, i_sb)
#define OFF_INODE_I_MODE KOFF(inode, i_mode)
#define OFF_INODE_I_FLAGS KOFF(inode, i_flags)
#define OFF_SB_S_DEV KOFF(super_block, s_dev)
#define OFF_BPRM_FILE KOFF(linux_binprm, file)
#define OFF_BPRM_FILENAME KOFF(linux_binprm, filename)
#define OFF_BPRM_INTERP KOFF(linux_binprm, interp)
#define OFF_TASK_MM KOFF(task_struct, mm)
#define OFF_MM_ARG_START KOFF(mm_struct, arg_start)
#define OFF_MM_ARG_END KOFF(mm_struct, arg_end)


#define K_FILE       7
#define K_WROTE_EXEC 8

#define OP_OPEN        1
#define OP_OPEN_FAILED 2
#define OP_CREATE      3
#define OP_UNLINK      4
#define OP_RENAME      5
#define OP_CHMOD       6
#define OP_CHOWN       7
#define OP_SETXATTR    8
#define OP_REMOVEXATTR 9
#define OP_TRUNCATE    10
#define OP_LINK        11
#define OP_SYMLINK     12
#define OP_READ        13  /* successful read-only open of a capture.watch_reads path */
#define OP_UTIMES      14  /* timestamps set explicitly (utimensat, utimes, utime, futimesat) */
#define OP_SETFLAGS    15  /* FS_IOC_SETFLAGS touching the immutable or append-only flag */
#define BIT(op) (1ULL << (op))

#define RF_TRUNC1   0x001  /* path cut at PATHB-1 bytes or deeper than MAX_DEPTH */
#define RF_TRUNC2   0x002
#define RF_NORM1    0x004  /* user string has "." / ".." / "//" components */
#define RF_NORM2    0x008
#define RF_FD       0x010  /* path taken from an open file (fd-based call or opened file) */
#define RF_ANY      0x020  /* failed open sent regardless of the watch list */
#define RF_NAME     0x040  /* open matched by the (symlink) name given; path2 = file's path */
#define RF_NOPATH   0x080  /* the path could not be read */
#define RF_NOBASE   0x100  /* relative path whose dirfd could not be resolved */
#define RF_CREATED  0x200  /* open created the file (FMODE_CREATED) */

/* Read through memory every time (clang must not keep it in a register; see fscratch). */
#define VOL(x) (*(volatile typeof(x) *)&(x))

#define SLOT_USER 1        /* (dirfd, user string): resolved to an absolute path */
#define SLOT_RAW  2        /* user string as given (symlink target, name passed to open) */
#define SLOT_FILE 3        /* struct file *: its path, inode and device */
#define FIN_STASH 1        /* keep in fpending until sys_exit adds the result */
#define FIN_EMIT  2        /* send now (opens, at sys_exit) */
#define FIN_OPEN  3        /* send now; slot 1 is the name given, checked if slot 0 is not */
#define FIN_WEXEC 4        /* slot 0 is an exec'd script written earlier: send wrec */
#define STAGE_RESOLVE 0
#define STAGE_FINISH  1

#define PATHB 256          /* bytes of a path kept, NUL included (LPM key data limit) */
#define HALF 256
#define MAX_DEPTH 32       /* directory levels walked up from a dentry */
#define AT_FDCWD_ (-100)
#define O_ACCMODE_ 3
#define O_CREAT_ 0100
#define O_TRUNC_ 01000
#define O_WRITEISH (1 | 2 | O_CREAT_ | O_TRUNC_)
#define S_IFMT_ 0170000
#define S_IFREG_ 0100000
#ifndef FMODE_CREATED_BIT
#define FMODE_CREATED_BIT 0x100000
#endif
#ifndef C_FILE_REPEATS
#define C_FILE_REPEATS 3   /* kcount index (probes/common.h) */
#endif
#ifndef WRITTEN_MAX
#define WRITTEN_MAX 65536  /* power of two */
#endif
#define FOLD_SLOTS 4096    /* power of two */

struct lpm_key {
    u32 bits;              /* prefix length in bits: the path's length * 8 */
    char s[PATHB];
};

struct file_rec {
    struct hdr h;
    u32 op;
    u32 flags;
    u32 mode;
    s32 owner;
    s32 group;
    s32 result;
    u64 inode;
    u32 dev;               /* kernel encoding: major << 20 | minor */
    u32 rflags;
    s32 fd;
    u32 pad;
    char xattr[64];
    struct lpm_key p1;
    struct lpm_key p2;     /* last: a record without a second path is sent without it */
};
SPY_RECORD(file_rec)

struct wexec_rec {
    struct hdr h;
    u64 inode;
    u32 dev;
    u32 writer_pid;
    u64 writer_start;
    u64 write_ktime;
    char writer_comm[16];
    u32 rflags;
    u32 script;
    struct lpm_key path;
};
SPY_RECORD(wexec_rec)

struct slot {
    u64 ptr;               /* user string (SLOT_USER, SLOT_RAW) or struct file * (SLOT_FILE) */
    s32 dfd;
    u32 type;
};

struct fscratch {
    /* Work order for the stages (see "stages" below). */
    u32 cur;               /* slot being resolved */
    u32 nslots;
    u32 fin;               /* FIN_*: what files_finish does with the record */
    u32 pad0;
    u64 want;              /* operation bits the record is watched for */
    u64 ops0;              /* operation bits the watch list allows on slot 0's path */
    u64 ops1;
    u64 mnt;               /* the opened file's vfsmount (part of the repeat key) */
    struct slot slots[2];
    /* Loop state kept in map memory, not registers: a value reloaded from a map is
     * unknown to the verifier, so a loop's exits do not leave one state per iteration
     * (with a precise bound or index that would multiply the verification of all the
     * code that follows, ~10^6 steps for one path resolution). */
    u32 pos;               /* walk_path's write position */
    u32 done;
    u32 n;                 /* length bound of the current scan */
    u32 t0;                /* watch_ops: where the tail after the wildcard starts */
    char buf[2 * HALF];
    struct file_rec rec;
    struct lpm_key tk;
    char name[64];
    struct wexec_rec wrec;
};

struct oargs {
    u64 ptr;
    s32 dfd;
    u32 flags;
    u32 mode;
    u32 pad;
};

struct wkey {
    u64 ino;
    u32 dev;
    u32 pad;
};

/* One slot of the writer cache: who last wrote file (ino, dev). */
struct wval {
    u64 ino;
    u32 dev;
    u32 pid;
    u64 start;
    u64 ktime;
    char comm[16];
};

/* Repeat folding: the same process doing the same thing to the same file again within
 * capture.file_repeat_seconds is counted (C_FILE_REPEATS), not sent. */
struct fold_key {
    u32 tgid;
    u32 op;
    u32 flags;             /* access mode, O_CREAT, O_TRUNC */
    s32 result;            /* sign and errno; fds differ between repeats */
    u64 inode;
    u32 dev;
    u32 len;
    u64 w[3];              /* path bytes (first, middle, last 8) for records without inode */
};

struct fslot {
    struct fold_key key;
    u64 seen;              /* ktime of the verdict | SEEN_SENT */
};

struct swait {
    u32 n;                 /* length of path */
    u32 left;              /* opens still to look at */
    char path[PATHB];      /* bprm->filename of the script, or the script operand in argv */
};

/* How an interpreter's argv names its script (filled from spyderd/capture/execinfo.py by
 * probe_files.setup, keyed by the comm an exec of it gets). Option letters as bits:
 * a-z = 0-25, A-Z = 26-51. */
struct interp_opts {
    u64 inline_code;       /* -c, -e, -m ...: the code is inline, there is no script */
    u64 valued;            /* -W x, -I dir ...: the option takes the next word (or the rest) */
    u64 script_opt;        /* awk -f: the option's value is the script */
    u32 flags;             /* IF_* */
    u32 pad;
};
#define IF_PLUS    1       /* "+o" starts an option too (shells) */
#define IF_NOPLAIN 2       /* a plain first operand is code, not a file (awk) */
#define INTERP_WAIT 4096   /* read-only opens an interpreter may make before its script
                            * (python3 with many site packages: ~800). Until then each of
                            * its read-only opens costs a name comparison, then goes on to
                            * the watched-read check as any other. */
#define INTERP_ARGS 8      /* words of argv looked at for the script operand */

/* Watch list: value = ops mask (bits 0-15) | wildcard id << 16 | wildcard prefix length << 32. */
BPF_LPM_TRIE(watch, struct lpm_key, u64, 4096);
/* Tails after a "*" component, keyed by (wildcard id, tail bytes); value = ops mask. */
BPF_LPM_TRIE(watch_tail, struct lpm_key, u64, 1024);
/* [0]: capture.failed_opens, [1]: ready (maps filled), [2]: repeat window in ms,
 * [3] / [4]: capture.watch_reads name lengths (bit n: a name of n bytes, bit 31: 31 or
 * more) of the file itself / of its directory; 0: nothing to look up */
BPF_ARRAY(fsettings, u32, 8);
/* capture.watch_reads names: a read-only open is resolved and checked against the watch
 * list only when its file's name (where = 0) or its directory's name (where = 1) is one. */
struct nkey {
    u32 len;
    u32 where;
    u64 w[2];              /* the name's first 16 bytes, zero past its end */
};
BPF_HASH(read_names, struct nkey, u8, 1024);
/* (where, length up to 31, first byte) of those names: an array lookup the verifier inlines
 * turns most names of a wanted length away before the hash lookup. */
BPF_ARRAY(read_first, u8, 2 * 32 * 256);
BPF_PROG_ARRAY(fstages, 4);     /* STAGE_* -> program, filled by probe_files.setup */
BPF_PERCPU_ARRAY(fscratch, struct fscratch, 1);
BPF_HASH(fpending, u32, struct file_rec, 2048);
/* Direct-mapped caches (array slot chosen by a hash of the key, the key kept in the slot
 * and compared): a lookup or an insert costs one array access. LRU hash maps cost ~1-2 us
 * per insert once full (eviction), on every write-open of a new file. A colliding insert
 * replaces the older entry, like an eviction. */
BPF_ARRAY(written, struct wval, WRITTEN_MAX);           /* shared: exec may run elsewhere */
BPF_PERCPU_ARRAY(fseen, struct fslot, FOLD_SLOTS);      /* per CPU: repeats of one process */
BPF_LRU_HASH(script_wait, u32, struct swait, 4096);
BPF_HASH(interpreters, struct comm_key, struct interp_opts, 512);

static __always_inline u32 setting(u32 idx) {
    u32 *v = bpf_map_lookup_elem(&fsettings, &idx);
    return v ? *v : 0;
}

static __always_inline u64 fd_file(u64 task, s32 fd) {
    if (fd < 0)
        return 0;
    u64 fdt = read_ptr(read_ptr(task, OFF_TASK_FILES), OFF_FILES_FDT);
    if (!fdt || (u32)fd >= read_u32(fdt, OFF_FDT_MAX_FDS))
        return 0;
    return read_ptr(read_ptr(fdt, OFF_FDT_FD), (u64)fd * 8);
}

/* Writes "/c1/.../cn" for (dentry, vfsmount) so that it ends just before buf[HALF];
 * returns where it starts (HALF for the root itself). Stops at the process root.
 * The write position lives in map memory (sc->pos), not in a register: a value reloaded
 * from a map is unknown to the verifier, so the states of the unrolled iterations do not
 * differ by its range and prune (in a register this loop costs ~10^6 verifier steps). */
static __always_inline u32 walk_path(struct fscratch *sc, u64 dentry, u64 vfsmnt, u64 task,
                                     u32 *trunc) {
    char *buf = sc->buf;
    u64 fs = read_ptr(task, OFF_TASK_FS);
    u64 root_d = read_ptr(fs, OFF_FS_ROOT_DENTRY);
    u64 root_m = read_ptr(fs, OFF_FS_ROOT_MNT);
    u64 mnt = vfsmnt - OFF_MOUNT_MNT;
    u64 mnt_root = read_ptr(vfsmnt, OFF_VFSMOUNT_MNT_ROOT);
    sc->pos = HALF;
    sc->done = 0;
#pragma unroll
    for (int i = 0; i < MAX_DEPTH; i++) {
        if (!dentry || (dentry == root_d && vfsmnt == root_m)) {
            sc->done = 1;
            break;
        }
        if (dentry == mnt_root) {
            u64 up = read_ptr(mnt, OFF_MOUNT_MNT_PARENT);
            if (!up || up == mnt) {
                sc->done = 1;
                break;
            }
            dentry = read_ptr(mnt, OFF_MOUNT_MNT_MOUNTPOINT);
            mnt = up;
            vfsmnt = up + OFF_MOUNT_MNT;
            mnt_root = read_ptr(vfsmnt, OFF_VFSMOUNT_MNT_ROOT);
            continue;
        }
        u64 parent = read_ptr(dentry, OFF_DENTRY_D_PARENT);
        if (!parent || parent == dentry) {
            sc->done = 1;
            break;
        }
        u32 len = read_u32(dentry, OFF_DENTRY_D_NAME_LEN) & (HALF - 1);
        u64 name = read_ptr(dentry, OFF_DENTRY_D_NAME_NAME);
        u32 pos = VOL(sc->pos);
        if (len + 1 > pos) {
            *trunc = 1;
            sc->done = 1;
            break;
        }
        pos -= len + 1;
        bpf_probe_read_kernel(&buf[(pos + 1) & (HALF - 1)], len, (void *)name);
        buf[pos & (HALF - 1)] = '/';
        sc->pos = pos;
        dentry = parent;
    }
    if (!VOL(sc->done))
        *trunc = 1;
    return VOL(sc->pos);
}

/* Copies buf[start, end) into k as a NUL-terminated string with its LPM bit length. */
static __always_inline u32 finish(struct lpm_key *k, char *buf, u32 start, u32 end) {
    u32 len = end > start ? end - start : 0;
    u32 trunc = 0;
    if (len > PATHB - 1) {
        len = PATHB - 1;
        trunc = 1;
    }
    bpf_probe_read_kernel(k->s, len & (PATHB - 1), &buf[start & (2 * HALF - 1)]);
    k->s[len & (PATHB - 1)] = 0;
    k->bits = len * 8;
    return trunc;
}

/* 1 if buf[from, from + n), which starts with '/', has a ".", ".." or empty component.
 * Pattern tests at each '/' only: no counters carried between positions. */
static __always_inline u32 dot_segments(struct fscratch *sc, u32 from, u32 n) {
    char *buf = sc->buf;
    sc->n = n;
    sc->done = 0;
    for (int i = 0; i < PATHB; i++) {
        if ((u32)i >= VOL(sc->n))
            break;
        u32 at = from + i;
        if (buf[at & (2 * HALF - 1)] != '/')
            continue;
        char c1 = buf[(at + 1) & (2 * HALF - 1)];
        char c2 = buf[(at + 2) & (2 * HALF - 1)];
        char c3 = buf[(at + 3) & (2 * HALF - 1)];
        if (c1 == '/' || (c1 == '.' && (c2 == '/' || c2 == 0)) ||
            (c1 == '.' && c2 == '.' && (c3 == '/' || c3 == 0))) {
            sc->done = 1;
            break;
        }
    }
    return VOL(sc->done);
}

/* The absolute path a syscall's (dirfd, user string) names. Returns RF_* bits for slot 1
 * (shift left by 1 for slot 2). */
static __always_inline u32 resolve_user(struct fscratch *sc, s32 dfd, const char *uptr,
                                        struct lpm_key *k, u64 task) {
    char *buf = sc->buf;
    k->bits = 0;
    k->s[0] = 0;
    int n = bpf_probe_read_user_str(&buf[HALF + 1], HALF - 1, uptr);
    if (n <= 0)
        return RF_NOPATH;
    u32 ulen = n - 1;
    u32 rf = 0;
    if (ulen >= HALF - 2)
        rf |= RF_TRUNC1;
    if (buf[HALF + 1] == '/') {
        if (dot_segments(sc, HALF + 1, ulen))
            rf |= RF_NORM1;
        return rf | finish(k, buf, HALF + 1, HALF + 1 + ulen);
    }
    buf[HALF] = '/';
    if (ulen && dot_segments(sc, HALF, ulen + 1))  /* "./x", "../x" count too */
        rf |= RF_NORM1;
    u64 d = 0, m = 0;
    if (dfd == AT_FDCWD_) {
        u64 fs = read_ptr(task, OFF_TASK_FS);
        d = read_ptr(fs, OFF_FS_PWD_DENTRY);
        m = read_ptr(fs, OFF_FS_PWD_MNT);
    } else {
        u64 f = fd_file(task, dfd);
        d = read_ptr(f, OFF_FILE_F_PATH_DENTRY);
        m = read_ptr(f, OFF_FILE_F_PATH_MNT);
    }
    if (!d || !m)
        return rf | RF_NOBASE | finish(k, buf, HALF + 1, HALF + 1 + ulen);
    u32 trunc = 0;
    u32 start = walk_path(sc, d, m, task, &trunc);
    buf[HALF] = '/';
    u32 end = HALF + 1 + ulen;
    if (!ulen)
        end = start == HALF ? HALF + 1 : HALF;  /* AT_EMPTY_PATH: the directory itself */
    rf |= finish(k, buf, start, end);
    if (trunc)
        rf |= RF_TRUNC1;
    return rf;
}

/* Path of an open file; fills inode and device. */
static __always_inline u32 file_path(struct fscratch *sc, u64 file, struct lpm_key *k,
                                     u64 task, u64 *ino, u32 *dev) {
    char *buf = sc->buf;
    k->bits = 0;
    k->s[0] = 0;
    if (!file)
        return RF_NOPATH;
    u64 inode = read_ptr(file, OFF_FILE_F_INODE);
    *ino = read_ptr(inode, OFF_INODE_I_INO);
    *dev = read_u32(read_ptr(inode, OFF_INODE_I_SB), OFF_SB_S_DEV);
    u32 trunc = 0;
    u32 start = walk_path(sc, read_ptr(file, OFF_FILE_F_PATH_DENTRY),
                          read_ptr(file, OFF_FILE_F_PATH_MNT), task, &trunc);
    buf[HALF] = '/';
    u32 rf = RF_FD | finish(k, buf, start, start == HALF ? HALF + 1 : HALF);
    if (trunc)
        rf |= RF_TRUNC1;
    return rf;
}

/* The operations the watch list allows on path k (0: not watched). */
static __always_inline u64 watch_ops(struct fscratch *sc, struct lpm_key *k) {
    if (!k->bits)
        return 0;
    u64 *v = bpf_map_lookup_elem(&watch, k);
    if (!v)
        return 0;
    u64 val = *v;
    u64 ops = val & 0xffff;
    u32 wid = (val >> 16) & 0xff;
    u32 wplen = (val >> 32) & 0xffff;
    if (!wid)
        return ops;
    u32 len = k->bits / 8;
    sc->n = len;
    sc->t0 = 0;
    for (int j = 0; j < 128; j++) {
        u32 idx = wplen + j;
        if (idx >= VOL(sc->n))
            break;
        if (k->s[idx & (PATHB - 1)] == '/') {
            sc->t0 = idx + 1;
            break;
        }
    }
    u32 t0 = VOL(sc->t0);
    if (!t0 || t0 > len)
        return ops;
    u32 tlen = len - t0;
    if (tlen > PATHB - 2)
        tlen = PATHB - 2;
    struct lpm_key *tk = &sc->tk;
    tk->s[0] = wid;
    bpf_probe_read_kernel(&tk->s[1], PATHB - 2, &k->s[t0 & (PATHB - 1)]);
    tk->bits = (1 + tlen) * 8;
    u64 *tv = bpf_map_lookup_elem(&watch_tail, tk);
    if (tv)
        ops |= *tv;
    return ops;
}

static __always_inline struct fscratch *scratch(void) {
    u32 zero = 0;
    return bpf_map_lookup_elem(&fscratch, &zero);
}

/* A fresh file record in the scratch, header filled; the work order cleared. */
static __always_inline struct fscratch *begin(u32 op) {
    struct fscratch *sc = scratch();
    if (!sc)
        return 0;
    struct file_rec *r = &sc->rec;
    fill_hdr(&r->h, K_FILE);
    r->op = op;
    r->flags = 0;
    r->mode = 0;
    r->owner = -1;
    r->group = -1;
    r->result = 0;
    r->inode = 0;
    r->dev = 0;
    r->rflags = 0;
    r->fd = -1;
    r->pad = 0;
    r->p1.bits = 0;
    r->p1.s[0] = 0;
    r->p2.bits = 0;
    r->p2.s[0] = 0;
    r->xattr[0] = 0;
    sc->cur = 0;
    sc->nslots = 1;
    sc->fin = FIN_STASH;
    sc->want = BIT(op);
    sc->ops0 = 0;
    sc->ops1 = 0;
    sc->mnt = 0;
    return sc;
}

static __always_inline void set_slot(struct fscratch *sc, u32 i, u32 type, s32 dfd, u64 ptr) {
    struct slot *s = &sc->slots[i & 1];
    s->type = type;
    s->dfd = dfd;
    s->ptr = ptr;
}

/* Hand the work order to the stages; returns only if the tail call failed. */
static __always_inline int run(void *ctx, u32 kind) {
    bpf_tail_call(ctx, &fstages, STAGE_RESOLVE);
    count_loss(kind);
    return 0;
}

/* Bytes of a record worth sending: up to the end of the last path's string. */
static __always_inline u32 rec_size(struct file_rec *r) {
    if (r->p2.bits)
        return offsetof(struct file_rec, p2.s) + ((r->p2.bits / 8) & (PATHB - 1)) + 1;
    return offsetof(struct file_rec, p1.s) + ((r->p1.bits / 8) & (PATHB - 1)) + 1;
}

static __always_inline void send_rec(struct file_rec *r) {
    u32 size = rec_size(r);
    if (size > sizeof(*r))
        size = sizeof(*r);
    if (bpf_ringbuf_output(&events, r, size, 0))
        count_loss(K_FILE);
}

/* Repeat folding key: process, operation, open flags, result class, and the file (inode,
 * device and mount for records that have one; else the path's length and three words). */
static __always_inline struct fold_key *fold_key(struct fscratch *sc, u32 tgid, u32 op,
                                                 u32 flags, s32 result, u64 inode, u32 dev,
                                                 u64 mnt) {
    struct fold_key *k = (struct fold_key *)sc->buf;
    __builtin_memset(k, 0, sizeof(*k));
    k->tgid = tgid;
    k->op = op;
    k->flags = flags & (O_ACCMODE_ | O_CREAT_ | O_TRUNC_);
    k->result = result < 0 ? result : 0;
    k->inode = inode;
    k->dev = dev;
    k->w[0] = mnt;
    return k;
}

static __always_inline struct fold_key *fold_key_of(struct fscratch *sc, struct file_rec *r,
                                                    u64 mnt) {
    struct fold_key *k = fold_key(sc, r->h.pid, r->op, r->flags, r->result, r->inode, r->dev,
                                  mnt);
    if (r->inode)
        return k;
    u32 len = r->p1.bits / 8;
    k->len = len;
    bpf_probe_read_kernel(&k->w[0], 8, r->p1.s);
    bpf_probe_read_kernel(&k->w[1], 8, &r->p1.s[(len / 2) & (PATHB - 1)]);
    bpf_probe_read_kernel(&k->w[2], 8, &r->p1.s[(len > 8 ? len - 8 : 0) & (PATHB - 1)]);
    return k;
}

#define SEEN_SENT 1  /* low bit of an fseen value: the record was sent (else: not watched) */

static __always_inline u64 mix64(u64 h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static __always_inline struct fslot *fold_slot(struct fold_key *k) {
    const u64 *w = (const u64 *)k;
    u64 h = 0;
#pragma unroll
    for (int i = 0; i < (int)(sizeof(*k) / 8); i++)
        h = mix64(h ^ w[i]) + i;
    u32 idx = h & (FOLD_SLOTS - 1);
    return bpf_map_lookup_elem(&fseen, &idx);
}

static __always_inline int same_key(struct fold_key *a, struct fold_key *b) {
    const u64 *x = (const u64 *)a, *y = (const u64 *)b;
#pragma unroll
    for (int i = 0; i < (int)(sizeof(*a) / 8); i++)
        if (x[i] != y[i])
            return 0;
    return 1;
}

/* 0: not seen within the repeat window; else the earlier verdict: 1 sent, 2 not watched. */
static __always_inline int seen_verdict(struct fold_key *k, u64 now, u32 ms) {
    struct fslot *s = fold_slot(k);
    if (!s || !same_key(&s->key, k))
        return 0;
    if (now - (s->seen & ~(u64)SEEN_SENT) >= (u64)ms * 1000000)
        return 0;
    return (s->seen & SEEN_SENT) ? 1 : 2;
}

static __always_inline int fold_seen(struct fscratch *sc, struct file_rec *r, u64 mnt) {
    u32 ms = setting(2);
    return ms ? seen_verdict(fold_key_of(sc, r, mnt), r->h.ktime, ms) : 0;
}

static __always_inline void fold_mark(struct fscratch *sc, struct file_rec *r, u64 mnt,
                                      u32 sent) {
    if (!setting(2))
        return;
    struct fold_key *k = fold_key_of(sc, r, mnt);
    struct fslot *s = fold_slot(k);
    if (!s)
        return;
    __builtin_memcpy(&s->key, k, sizeof(s->key));
    s->seen = (r->h.ktime & ~(u64)SEEN_SENT) | (sent ? SEEN_SENT : 0);
}

/* 1 if this record repeats one sent within the window (counted, not sent again). */
static __always_inline int repeated(struct fscratch *sc, struct file_rec *r, u64 mnt) {
    if (fold_seen(sc, r, mnt) == 1) {
        count_event(C_FILE_REPEATS);
        return 1;
    }
    fold_mark(sc, r, mnt, 1);
    return 0;
}

/* ---- stages: separate programs reached by tail call, so the verifier checks the path
 * code once instead of once per syscall hook that needs it ---------------------------- */

/* Resolve slot `cur` into rec.p1 / rec.p2 and look it up in the watch list. */
TAIL_PROGRAM(files_resolve) {
    struct fscratch *sc = scratch();
    if (!sc)
        return 0;
    struct file_rec *r = &sc->rec;
    u32 cur = VOL(sc->cur) & 1;
    struct slot *sl = &sc->slots[cur];
    struct lpm_key *k = cur ? &r->p2 : &r->p1;
    u64 task = bpf_get_current_task();
    u32 type = sl->type;
    u32 rf = 0;
    u64 ops = 0;
    if (type == SLOT_USER) {
        rf = resolve_user(sc, sl->dfd, (const char *)sl->ptr, k, task);
        ops = watch_ops(sc, k);
    } else if (type == SLOT_FILE) {
        u64 ino = 0;
        u32 dev = 0;
        rf = file_path(sc, sl->ptr, k, task, &ino, &dev);
        r->inode = ino;
        r->dev = dev;
        ops = watch_ops(sc, k);
    } else {
        int n = bpf_probe_read_user_str(k->s, PATHB, (const char *)sl->ptr);
        k->bits = n > 0 ? (n - 1) * 8 : 0;
        if (n > 1 && k->s[0] == '/')
            ops = watch_ops(sc, k);
    }
    if (cur) {
        sc->ops1 = ops;
        r->rflags |= (rf & (RF_TRUNC1 | RF_NORM1)) << 1;
    } else {
        sc->ops0 = ops;
        r->rflags |= rf;
    }
    sc->cur = cur + 1;
    if (cur + 1 < VOL(sc->nslots))
        bpf_tail_call(ctx, &fstages, STAGE_RESOLVE);
    else
        bpf_tail_call(ctx, &fstages, STAGE_FINISH);
    count_loss(K_FILE);
    return 0;
}

/* Keep, send or drop the resolved record. */
TAIL_PROGRAM(files_finish) {
    struct fscratch *sc = scratch();
    if (!sc)
        return 0;
    struct file_rec *r = &sc->rec;
    u32 fin = sc->fin;
    if (fin == FIN_WEXEC) {
        struct wexec_rec *e = &sc->wrec;
        e->inode = r->inode;
        e->dev = r->dev;
        e->rflags = r->rflags;
        __builtin_memcpy(&e->path, &r->p1, sizeof(e->path));
        if (bpf_ringbuf_output(&events, e, sizeof(*e), 0))
            count_loss(K_WROTE_EXEC);
        return 0;
    }
    u64 want = sc->want;
    u64 mnt = sc->mnt;
    int keep = (r->rflags & RF_ANY) || (sc->ops0 & want);
    if (!keep && (sc->ops1 & want)) {
        keep = 1;
        if (fin == FIN_OPEN)
            r->rflags |= RF_NAME;
    }
    if (!keep && fin != FIN_OPEN && (r->rflags & (RF_NORM1 | RF_NORM2)))
        keep = 1;
    if (fin == FIN_OPEN && !keep)
        fold_mark(sc, r, mnt, 0);  /* not watched: the same open again skips the walk */
    if (!keep)
        return 0;
    if (fin == FIN_STASH) {
        u32 tid = (u32)bpf_get_current_pid_tgid();
        if (bpf_map_update_elem(&fpending, &tid, r, BPF_ANY))
            count_loss(K_FILE);
        return 0;
    }
    if (fin == FIN_OPEN && !(r->rflags & RF_NAME))
        r->p2.bits = 0;  /* the name given is only sent when it is what matched */
    if (repeated(sc, r, mnt))
        return 0;
    send_rec(r);
    return 0;
}

/* ---- hooks ---------------------------------------------------------------------------- */

static __always_inline int ready(void) {
    return setting(1);
}

/* Changes recorded wherever they happen, watched path or not (RF_ANY): a mode with the
 * set-user-id or set-group-id bit, file capabilities (the security.capability xattr),
 * explicit timestamps and immutable/append-only flags (OP_UTIMES / OP_SETFLAGS are sent
 * only when they are such changes). */
static __always_inline u32 anywhere(struct file_rec *r) {
    if (r->op == OP_CHMOD)
        return (r->mode & 06000) ? RF_ANY : 0;
    if (r->op == OP_UTIMES || r->op == OP_SETFLAGS)
        return RF_ANY;
    if (r->op != OP_SETXATTR)
        return 0;
    const char cap[] = "security.capability";
#pragma unroll
    for (int i = 0; i < (int)sizeof(cap); i++)
        if (r->xattr[i] != cap[i])
            return 0;
    return RF_ANY;
}

/* `extra` (32 bytes, or NULL) goes where the xattr name would: the times of OP_UTIMES,
 * the old inode flags of OP_SETFLAGS. */
static __always_inline int path_op_x(void *ctx, u32 op, s32 dfd, const char *p, u32 flags,
                                     u32 mode, s32 owner, s32 group, const char *xname,
                                     const u64 *extra) {
    if (!ready() || is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct fscratch *sc = begin(op);
    if (!sc)
        return 0;
    struct file_rec *r = &sc->rec;
    r->flags = flags;
    r->mode = mode;
    r->owner = owner;
    r->group = group;
    if (xname)
        bpf_probe_read_user_str(r->xattr, sizeof(r->xattr), xname);
    if (extra)
        __builtin_memcpy(r->xattr, extra, 32);
    r->rflags |= anywhere(r);
    set_slot(sc, 0, SLOT_USER, dfd, (u64)p);
    return run(ctx, K_FILE);
}

static __always_inline int path_op(void *ctx, u32 op, s32 dfd, const char *p, u32 flags,
                                   u32 mode, s32 owner, s32 group, const char *xname) {
    return path_op_x(ctx, op, dfd, p, flags, mode, owner, group, xname, 0);
}

static __always_inline int fd_op_x(void *ctx, u32 op, s32 fd, u32 flags, u32 mode, s32 owner,
                                   s32 group, const char *xname, const u64 *extra) {
    if (!ready() || is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct fscratch *sc = begin(op);
    if (!sc)
        return 0;
    struct file_rec *r = &sc->rec;
    r->fd = fd;
    r->flags = flags;
    r->mode = mode;
    r->owner = owner;
    r->group = group;
    if (xname)
        bpf_probe_read_user_str(r->xattr, sizeof(r->xattr), xname);
    if (extra)
        __builtin_memcpy(r->xattr, extra, 32);
    r->rflags |= anywhere(r);
    set_slot(sc, 0, SLOT_FILE, 0, fd_file(bpf_get_current_task(), fd));
    return run(ctx, K_FILE);
}

static __always_inline int fd_op(void *ctx, u32 op, s32 fd, u32 flags, u32 mode, s32 owner,
                                 s32 group, const char *xname) {
    return fd_op_x(ctx, op, fd, flags, mode, owner, group, xname, 0);
}

/* rename/link: both names resolved; watched if either is. symlink: the target is kept as
 * given (it is relative to the link, not to the cwd). */
static __always_inline int two_path_op(void *ctx, u32 op, u32 t1, s32 d1, const char *p1,
                                       s32 d2, const char *p2, u32 flags) {
    if (!ready() || is_self(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct fscratch *sc = begin(op);
    if (!sc)
        return 0;
    sc->rec.flags = flags;
    sc->nslots = 2;
    set_slot(sc, 0, t1, d1, (u64)p1);
    set_slot(sc, 1, SLOT_USER, d2, (u64)p2);
    return run(ctx, K_FILE);
}

static __always_inline int file_exit(long ret) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct file_rec *r = bpf_map_lookup_elem(&fpending, &tid);
    if (!r)
        return 0;
    r->result = ret;
    r->h.ktime = bpf_ktime_get_boot_ns();
    send_rec(r);
    bpf_map_delete_elem(&fpending, &tid);
    return 0;
}

/* ---- opens ---------------------------------------------------------------------------- */

static __always_inline struct wval *writer_slot(u64 ino, u32 dev) {
    u32 idx = mix64(ino * 0x9E3779B97F4A7C15ULL ^ dev) & (WRITTEN_MAX - 1);
    return bpf_map_lookup_elem(&written, &idx);
}

/* The writer of the file, if the cache still holds it. */
static __always_inline struct wval *writer_of(u64 file) {
    u64 inode = read_ptr(file, OFF_FILE_F_INODE);
    u64 ino = read_ptr(inode, OFF_INODE_I_INO);
    u32 dev = read_u32(read_ptr(inode, OFF_INODE_I_SB), OFF_SB_S_DEV);
    struct wval *w = writer_slot(ino, dev);
    return w && ino && w->ino == ino && w->dev == dev ? w : 0;
}

static __always_inline void fill_wexec(struct wexec_rec *e, struct wval *w, u32 script) {
    fill_hdr(&e->h, K_WROTE_EXEC);
    e->writer_pid = w->pid;
    e->writer_start = w->start;
    e->write_ktime = w->ktime;
    __builtin_memcpy(e->writer_comm, w->comm, sizeof(e->writer_comm));
    e->script = script;
    e->rflags = 0;
}

SPY_CONFIG(task_pt_regs, 0)   /* kernel 5.15+ on x86_64: bpf_get_current_task_btf() usable */

/* The file an open just installed at `fd`. Where the task's BTF pointer is usable its
 * files->fdt->fd chain is read with plain loads (the verifier's probe-memory access), so
 * one helper call reads the slot; elsewhere fd_file's five reads. */
static __always_inline u64 opened_file(long fd) {
#ifndef SPYDER_BCC
    if (CFG(task_pt_regs)) {
        struct task_struct *t = bpf_get_current_task_btf();
        struct file **slots = t->files->fdt->fd;
        u64 f = 0;
        bpf_probe_read_kernel(&f, sizeof(f), &slots[fd & 0xffffff]);
        return f;
    }
#endif
    return fd_file(bpf_get_current_task(), fd);
}

/* This process exec'd a #! script or an interpreter with a script operand: is this open
 * the interpreter reading it (same last path component as the name given)? Then check the
 * writer of that file. Returns 1 when the open was taken (a record is on its way), 0 when
 * it is left to the watched-read check. */
static __always_inline int script_open(void *ctx, struct swait *w, u32 tgid, long fd) {
    struct fscratch *sc = scratch();
    if (!sc)
        return 0;
    if (w->left)
        w->left--;
    u64 file = opened_file(fd);
    u64 dentry = read_ptr(file, OFF_FILE_F_PATH_DENTRY);
    u32 len = read_u32(dentry, OFF_DENTRY_D_NAME_LEN);
    u32 n = w->n;
    int same = len && len <= 64 && len <= n;
    if (same && n > len && w->path[(n - len - 1) & (PATHB - 1)] != '/')
        same = 0;
    if (same) {
        bpf_probe_read_kernel(sc->name, ((len - 1) & 63) + 1,
                              (void *)read_ptr(dentry, OFF_DENTRY_D_NAME_NAME));
        sc->n = len;
        sc->t0 = n - len;
        sc->done = 1;
        for (int i = 0; i < 64; i++) {
            if ((u32)i >= VOL(sc->n))
                break;
            if (sc->name[i & 63] != w->path[(VOL(sc->t0) + i) & (PATHB - 1)]) {
                sc->done = 0;
                break;
            }
        }
        same = VOL(sc->done);
    }
    if (!same && w->left)
        return 0;
    bpf_map_delete_elem(&script_wait, &tgid);
    struct wval *wr = same ? writer_of(file) : 0;
    if (!wr)
        return 0;
    fill_wexec(&sc->wrec, wr, 1);
    struct fscratch *s2 = begin(OP_OPEN);
    if (!s2)
        return 0;
    s2->fin = FIN_WEXEC;
    set_slot(s2, 0, SLOT_FILE, 0, file);
    run(ctx, K_WROTE_EXEC);
    return 1;
}

/* Remember who wrote a regular file (download-then-run); returns its inode and device. */
static __always_inline void record_writer(u64 file, u64 pt, struct wkey *id) {
    u64 inode = read_ptr(file, OFF_FILE_F_INODE);
    u16 imode = 0;
    bpf_probe_read_kernel(&imode, sizeof(imode), (void *)(inode + OFF_INODE_I_MODE));
    id->ino = read_ptr(inode, OFF_INODE_I_INO);
    id->dev = read_u32(read_ptr(inode, OFF_INODE_I_SB), OFF_SB_S_DEV);
    if ((imode & S_IFMT_) != S_IFREG_)
        return;
    struct wval *w = writer_slot(id->ino, id->dev);
    if (!w)
        return;
    u64 start = read_ptr(bpf_get_current_task(), OFF_TASK_START_BOOTTIME);
    w->ktime = bpf_ktime_get_boot_ns();
    if (w->ino == id->ino && w->dev == id->dev && w->pid == (u32)(pt >> 32) &&
        w->start == start)
        return;  /* the same writer again */
    w->ino = id->ino;
    w->dev = id->dev;
    w->pid = pt >> 32;
    w->start = start;
    bpf_get_current_comm(&w->comm, sizeof(w->comm));
}

/* ---- watched reads (capture.watch_reads) ------------------------------------------------
 * Every successful read-only open pays a name check: the length of the file's name against
 * a bitmask, and only for a wanted length its first 16 bytes against `read_names`; then the
 * same for its directory's name. Only a hit resolves the path (tail-called stages) and looks
 * it up in the watch list for OP_READ. */

static __always_inline int name_wanted(u64 dentry, u32 lens, u32 where) {
    u64 qstr[2] = {};  /* struct qstr: hash, length (little-endian), then the name */
    bpf_probe_read_kernel(qstr, sizeof(qstr), (void *)(dentry + KOFF(dentry, d_name)));
    u32 len = qstr[0] >> 32;
    if (!len || !((lens >> (len < 31 ? len : 31)) & 1))
        return 0;
    struct nkey k = {};
    k.len = len;
    k.where = where;
    bpf_probe_read_kernel(k.w, sizeof(k.w), (void *)qstr[1]);
    u32 first = (where << 13) | ((len < 31 ? len : 31) << 8) | (k.w[0] & 0xff);
    u8 *hit = bpf_map_lookup_elem(&read_first, &first);
    if (!hit || !*hit)
        return 0;
    if (len < 8) {
        k.w[0] &= (1ULL << (8 * len)) - 1;
        k.w[1] = 0;
    } else if (len < 16) {
        k.w[1] &= (1ULL << (8 * (len - 8))) - 1;
    }
    return bpf_map_lookup_elem(&read_names, &k) != 0;
}

static __always_inline int read_open(void *ctx, u64 pt, long fd, u32 flags) {
    u32 lens = setting(3), dlens = setting(4);
    if (!lens && !dlens)
        return 0;
    u64 file = opened_file(fd);
    u64 dentry = read_ptr(file, OFF_FILE_F_PATH_DENTRY);
    if (!dentry)
        return 0;
    if (!(lens && name_wanted(dentry, lens, 0)) &&
        !(dlens && name_wanted(read_ptr(dentry, OFF_DENTRY_D_PARENT), dlens, 1)))
        return 0;
    u64 inode = read_ptr(file, OFF_FILE_F_INODE);
    u64 ino = read_ptr(inode, OFF_INODE_I_INO);
    u32 dev = read_u32(read_ptr(inode, OFF_INODE_I_SB), OFF_SB_S_DEV);
    u64 mnt = read_ptr(file, OFF_FILE_F_PATH_MNT);
    u32 ms = setting(2);
    struct fscratch *sc = scratch();
    if (ms && sc) {
        int seen = seen_verdict(fold_key(sc, pt >> 32, OP_READ, flags, 0, ino, dev, mnt),
                                bpf_ktime_get_boot_ns(), ms);
        if (seen == 1)
            count_event(C_FILE_REPEATS);
        if (seen)
            return 0;
    }
    sc = begin(OP_READ);
    if (!sc)
        return 0;
    struct file_rec *r = &sc->rec;
    r->fd = fd;
    r->flags = flags;
    r->result = fd;
    r->inode = ino;
    r->dev = dev;
    sc->mnt = mnt;
    sc->fin = FIN_OPEN;
    sc->nslots = 1;
    set_slot(sc, 0, SLOT_FILE, 0, file);
    return run(ctx, K_FILE);
}

/* A successful read-only open: a #! script being read by its interpreter, or a watched read. */
static __always_inline int read_only_open(void *ctx, u64 pt, long fd, u32 flags) {
    u32 tgid = pt >> 32;
    struct swait *w = bpf_map_lookup_elem(&script_wait, &tgid);
    if (w && script_open(ctx, w, tgid, fd))
        return 0;
    return read_open(ctx, pt, fd, flags);
}

/* After a successful write-open or any failed open: record the writer, resolve and send. */
static __always_inline int open_done(void *ctx, long ret, struct oargs *a, u64 pt) {
    if (ret >= 0) {
        u64 file = fd_file(bpf_get_current_task(), ret);
        if (!file)
            return 0;
        struct wkey id = {};
        record_writer(file, pt, &id);
        u32 op = (read_u32(file, OFF_FILE_F_MODE) & FMODE_CREATED_BIT) ? OP_CREATE : OP_OPEN;
        u64 mnt = read_ptr(file, OFF_FILE_F_PATH_MNT);
        /* The same process opened this file the same way within the repeat window: the
         * earlier verdict stands (sent: count a repeat; not watched: nothing to do). */
        u32 ms = setting(2);
        struct fscratch *sc = scratch();
        if (ms && sc) {
            int seen = seen_verdict(fold_key(sc, pt >> 32, op, a->flags, 0, id.ino, id.dev, mnt),
                                    bpf_ktime_get_boot_ns(), ms);
            if (seen == 1)
                count_event(C_FILE_REPEATS);
            if (seen)
                return 0;
        }
        sc = begin(op);
        if (!sc)
            return 0;
        struct file_rec *r = &sc->rec;
        if (op == OP_CREATE)
            r->rflags = RF_CREATED;
        else if (a->flags & O_TRUNC_)
            sc->want |= BIT(OP_TRUNCATE);
        r->fd = ret;
        r->flags = a->flags;
        r->mode = a->mode;
        r->result = ret;
        r->inode = id.ino;
        r->dev = id.dev;
        sc->mnt = mnt;
        sc->fin = FIN_OPEN;
        sc->nslots = 2;
        set_slot(sc, 0, SLOT_FILE, 0, file);
        set_slot(sc, 1, SLOT_RAW, 0, a->ptr);
        return run(ctx, K_FILE);
    }
    u32 anywhere = (ret == -13 || ret == -1) && setting(0);
    if (!anywhere && !(a->flags & O_WRITEISH))
        return 0;
    struct fscratch *sc = begin(OP_OPEN_FAILED);
    if (!sc)
        return 0;
    struct file_rec *r = &sc->rec;
    sc->mnt = 0;
    if (anywhere)
        r->rflags = RF_ANY;
    r->flags = a->flags;
    r->mode = a->mode;
    r->result = ret;
    sc->fin = FIN_EMIT;
    set_slot(sc, 0, SLOT_USER, a->dfd, a->ptr);
    return run(ctx, K_FILE);
}

#define A_OPENAT  1
#define A_OPENAT2 2
#define A_OPEN    3
#define A_CREAT   4

/* With CFG(task_pt_regs) (x86_64, kernel 5.15+: bpf_task_pt_regs), the open family's
 * arguments are read at sys_exit from the task's saved user registers (x86_64 syscall ABI:
 * di, si, dx, r10), so sys_enter needs no hook and no per-thread map: a read-only open
 * that succeeds costs one register read and one hash miss. Elsewhere they are saved at
 * sys_enter in a per-thread map (the sys_enter_open* hooks are attached only then).
 * (SPY_CONFIG(task_pt_regs) is declared above, with the watched reads that use it too.) */

static __always_inline u64 sys_arg(u64 regs, u32 i) {
    if (!KFIELD_EXISTS(pt_regs, r10))
        return 0;
    u64 off = i == 0 ? KOFF(pt_regs, di) : i == 1 ? KOFF(pt_regs, si) :
              i == 2 ? KOFF(pt_regs, dx) : KOFF(pt_regs, r10);
    return read_ptr(regs, off);
}

static __always_inline u32 how_flags(u64 how) {
    u64 f = 0;
    bpf_probe_read_user(&f, sizeof(f), (void *)how);
    return (u32)f;
}

static __always_inline int open_exit_regs(void *ctx, long ret, u32 call) {
    u64 pt = bpf_get_current_pid_tgid();
    if (!ready() || is_self(pt >> 32))
        return 0;
    u64 regs = (u64)bpf_task_pt_regs(bpf_get_current_task_btf());
    struct oargs a = {};
    if (call == A_OPENAT) {
        a.flags = sys_arg(regs, 2);
    } else if (call == A_OPENAT2) {
        a.flags = how_flags(sys_arg(regs, 2));
    } else if (call == A_OPEN) {
        a.flags = sys_arg(regs, 1);
    } else {
        a.flags = 1 | O_CREAT_ | O_TRUNC_;
    }
    if (ret >= 0 && !(a.flags & O_WRITEISH))
        return read_only_open(ctx, pt, ret, a.flags);
    if (ret < 0 && !(a.flags & O_WRITEISH) && !((ret == -13 || ret == -1) && setting(0)))
        return 0;
    if (call == A_OPENAT || call == A_OPENAT2) {
        a.dfd = sys_arg(regs, 0);
        a.ptr = sys_arg(regs, 1);
        if (call == A_OPENAT) {
            a.mode = sys_arg(regs, 3);
        } else {
            u64 how[2] = {};
            bpf_probe_read_user(how, sizeof(how), (void *)sys_arg(regs, 2));
            a.mode = how[1];
        }
    } else {
        a.dfd = AT_FDCWD_;
        a.ptr = sys_arg(regs, 0);
        a.mode = sys_arg(regs, call == A_OPEN ? 2 : 1);
    }
    return open_done(ctx, ret, &a, pt);
}

/* No bpf_task_pt_regs (kernel < 5.15) or not x86_64: arguments saved at sys_enter in a
 * per-thread map (read-only opens only when failed opens are recorded). */

BPF_HASH(open_args, u32, struct oargs, 16384);

static __always_inline int open_enter(s32 dfd, const char *p, u32 flags, u32 mode) {
    u64 pt = bpf_get_current_pid_tgid();
    if (!(flags & O_WRITEISH) && !setting(0))
        return 0;
    if (is_self(pt >> 32))
        return 0;
    struct oargs a = {.ptr = (u64)p, .dfd = dfd, .flags = flags, .mode = mode, .pad = 0};
    u32 tid = (u32)pt;
    if (bpf_map_update_elem(&open_args, &tid, &a, BPF_ANY))
        count_loss(K_FILE);
    return 0;
}

static __always_inline int open_exit_saved(void *ctx, long ret, u32 call) {
    u64 pt = bpf_get_current_pid_tgid();
    u32 tid = (u32)pt;
    struct oargs *p = bpf_map_lookup_elem(&open_args, &tid);
    if (!p)
        return ret >= 0 && ready() && !is_self(pt >> 32) ? read_only_open(ctx, pt, ret, 0) : 0;
    struct oargs a = *p;
    bpf_map_delete_elem(&open_args, &tid);
    if (!ready())
        return 0;
    if (ret >= 0 && !(a.flags & O_WRITEISH))
        return read_only_open(ctx, pt, ret, a.flags);
    return open_done(ctx, ret, &a, pt);
}

SYSCALL_PROBE(sys_enter_openat) {
    return open_enter(args->dfd, args->filename, args->flags, args->mode);
}
SYSCALL_PROBE(sys_enter_openat2) {
    u64 how[2] = {};
    bpf_probe_read_user(how, sizeof(how), args->how);
    return open_enter(args->dfd, args->filename, (u32)how[0], (u32)how[1]);
}
SYSCALL_PROBE(sys_enter_open) {
    return open_enter(AT_FDCWD_, args->filename, args->flags, args->mode);
}
SYSCALL_PROBE(sys_enter_creat) {
    return open_enter(AT_FDCWD_, args->pathname, 1 | O_CREAT_ | O_TRUNC_, args->mode);
}

#define OPEN_HOOKS(call, sc)                                                        \
    SYSCALL_PROBE(sys_exit_##sc) {                                                  \
        if (CFG(task_pt_regs))                                                      \
            return open_exit_regs(args, args->ret, call);                           \
        return open_exit_saved(args, args->ret, call);                              \
    }

OPEN_HOOKS(A_OPENAT, openat)
OPEN_HOOKS(A_OPENAT2, openat2)
OPEN_HOOKS(A_OPEN, open)
OPEN_HOOKS(A_CREAT, creat)

static __always_inline u64 letter_bit(char c) {
    if (c >= 'a' && c <= 'z')
        return 1ULL << (c - 'a');
    if (c >= 'A' && c <= 'Z')
        return 1ULL << (26 + c - 'A');
    return 0;
}

/* What one word of argv means for the script operand: W_SCRIPT (this word is it),
 * W_NEXT (the next word is), W_SKIP (the next word is an option's value), W_NONE (no
 * script: inline code or stdin), W_ON (an option; keep looking). getopt's rules: a group
 * of letters "-xvW" ends at the first letter that takes a value. */
#define W_ON     0
#define W_SCRIPT 1
#define W_NEXT   2
#define W_SKIP   3
#define W_NONE   4
static __always_inline int word_kind(const char *w, struct interp_opts *o) {
    char c0 = w[0];
    if (c0 != '-' && !(c0 == '+' && (o->flags & IF_PLUS)))
        return (o->flags & IF_NOPLAIN) ? W_NONE : W_SCRIPT;
    if (!w[1])
        return W_NONE;  /* "-": the script comes from stdin */
    if (w[1] == '-')
        return w[2] ? W_ON : W_NEXT;  /* a long option (taken as valueless), or "--" */
    for (int j = 1; j < 16; j++) {
        char c = w[j];
        if (!c)
            break;
        u64 bit = letter_bit(c);
        if (o->inline_code & bit)
            return W_NONE;
        if (o->script_opt & bit)
            return w[j + 1] ? W_NONE : W_NEXT;  /* -fFILE glued: not followed */
        if (o->valued & bit)
            return w[j + 1] ? W_ON : W_SKIP;
    }
    return W_ON;
}

/* An interpreter run by name (bash x.sh, python3 -u /dev/shm/x.py): find the script
 * operand in the new image's argv, as spyderd/capture/execinfo.py does in user space,
 * and wait for the interpreter to open it (script_open). Only the comms in
 * `interpreters` pay for this. */
static __always_inline int interp_wait(struct swait *sw, u64 task, u32 tgid) {
    struct comm_key k = {};
    bpf_get_current_comm(&k.comm, sizeof(k.comm));
    struct interp_opts *o = bpf_map_lookup_elem(&interpreters, &k);
    if (!o)
        return 0;
    u64 mm = read_ptr(task, OFF_TASK_MM);
    u64 p = read_ptr(mm, OFF_MM_ARG_START), end = read_ptr(mm, OFF_MM_ARG_END);
    int n = bpf_probe_read_user_str(sw->path, PATHB, (void *)p);  /* argv[0] */
    if (n <= 0)
        return 0;
    p += n;
    int kind = W_ON;
    for (int i = 0; i < INTERP_ARGS; i++) {
        if (p >= end)
            return 0;
        n = bpf_probe_read_user_str(sw->path, PATHB, (void *)p);
        if (n <= 0)
            return 0;
        p += n;
        if (kind == W_SKIP) {
            kind = W_ON;
            continue;
        }
        if (kind != W_NEXT)
            kind = n > 1 ? word_kind(sw->path, o) : W_SCRIPT;
        else
            kind = W_SCRIPT;
        if (kind == W_NONE)
            return 0;
        if (kind == W_SCRIPT) {
            if (n <= 1)
                return 0;  /* an empty word */
            sw->n = n - 1;
            sw->left = INTERP_WAIT;
            bpf_map_update_elem(&script_wait, &tgid, sw, BPF_ANY);
            return 0;
        }
    }
    return 0;
}

/* ---- exec of a written file: a second program on the process probe's raw tracepoint.
 * A raw tracepoint program cannot tail-call the
 * (tracepoint-type) stages, so it walks the path itself. --------------------------------- */

RAW_TRACEPOINT_PROBE_AS(sched_process_exec, files_on_exec) {
    u64 bprm = ctx->args[2];
    u64 pt = bpf_get_current_pid_tgid();
    if (!ready() || is_self(pt >> 32))
        return 0;
    struct fscratch *sc = scratch();
    if (!sc)
        return 0;
    u64 task = bpf_get_current_task();
    u64 file = read_ptr(bprm, OFF_BPRM_FILE);
    struct wval *w = writer_of(file);
    if (w) {
        struct wexec_rec *e = &sc->wrec;
        fill_wexec(e, w, 0);
        u64 ino = 0;
        u32 dev = 0;
        e->rflags = file_path(sc, file, &e->path, task, &ino, &dev);
        e->inode = ino;
        e->dev = dev;
        if (bpf_ringbuf_output(&events, e, sizeof(*e), 0))
            count_loss(K_WROTE_EXEC);
    }
    u64 filename = read_ptr(bprm, OFF_BPRM_FILENAME);
    struct swait *sw = (struct swait *)sc->buf;
    u32 tgid = pt >> 32;
    if (filename == read_ptr(bprm, OFF_BPRM_INTERP))
        return interp_wait(sw, task, tgid);
    /* A script: bprm->file is already its interpreter. Wait for the interpreter to open
     * the script by the name it was given, and check that file (script_open). */
    int n = bpf_probe_read_kernel_str(sw->path, PATHB, (void *)filename);
    if (n <= 1)
        return 0;
    sw->n = n - 1;
    sw->left = INTERP_WAIT;
    bpf_map_update_elem(&script_wait, &tgid, sw, BPF_ANY);
    return 0;
}

/* ---- path changes --------------------------------------------------------------------- */

#define EXIT_PROBE(sc) \
    SYSCALL_PROBE(sys_exit_##sc) { return file_exit(args->ret); }

SYSCALL_PROBE(sys_enter_unlinkat) {
    return path_op(args, OP_UNLINK, args->dfd, args->pathname, args->flag, 0, -1, -1, 0);
}
EXIT_PROBE(unlinkat)
SYSCALL_PROBE(sys_enter_unlink) {
    return path_op(args, OP_UNLINK, AT_FDCWD_, args->pathname, 0, 0, -1, -1, 0);
}
EXIT_PROBE(unlink)
SYSCALL_PROBE(sys_enter_rmdir) {
    return path_op(args, OP_UNLINK, AT_FDCWD_, args->pathname, 0x200 /* AT_REMOVEDIR */, 0, -1, -1, 0);
}
EXIT_PROBE(rmdir)

SYSCALL_PROBE(sys_enter_renameat2) {
    return two_path_op(args, OP_RENAME, SLOT_USER, args->olddfd, args->oldname, args->newdfd, args->newname,
                       args->flags);
}
EXIT_PROBE(renameat2)
SYSCALL_PROBE(sys_enter_renameat) {
    return two_path_op(args, OP_RENAME, SLOT_USER, args->olddfd, args->oldname, args->newdfd, args->newname, 0);
}
EXIT_PROBE(renameat)
SYSCALL_PROBE(sys_enter_rename) {
    return two_path_op(args, OP_RENAME, SLOT_USER, AT_FDCWD_, args->oldname, AT_FDCWD_, args->newname, 0);
}
EXIT_PROBE(rename)

SYSCALL_PROBE(sys_enter_fchmodat) {
    return path_op(args, OP_CHMOD, args->dfd, args->filename, 0, args->mode, -1, -1, 0);
}
EXIT_PROBE(fchmodat)
SYSCALL_PROBE(sys_enter_fchmodat2) {
    return path_op(args, OP_CHMOD, args->dfd, args->filename, args->flags, args->mode, -1, -1, 0);
}
EXIT_PROBE(fchmodat2)
SYSCALL_PROBE(sys_enter_chmod) {
    return path_op(args, OP_CHMOD, AT_FDCWD_, args->filename, 0, args->mode, -1, -1, 0);
}
EXIT_PROBE(chmod)
SYSCALL_PROBE(sys_enter_fchmod) {
    return fd_op(args, OP_CHMOD, args->fd, 0, args->mode, -1, -1, 0);
}
EXIT_PROBE(fchmod)

SYSCALL_PROBE(sys_enter_fchownat) {
    return path_op(args, OP_CHOWN, args->dfd, args->filename, args->flag, 0, args->user,
                   args->group, 0);
}
EXIT_PROBE(fchownat)
SYSCALL_PROBE(sys_enter_chown) {
    return path_op(args, OP_CHOWN, AT_FDCWD_, args->filename, 0, 0, args->user, args->group, 0);
}
EXIT_PROBE(chown)
SYSCALL_PROBE(sys_enter_lchown) {
    return path_op(args, OP_CHOWN, AT_FDCWD_, args->filename, 0x100 /* AT_SYMLINK_NOFOLLOW */, 0,
                   args->user, args->group, 0);
}
EXIT_PROBE(lchown)
SYSCALL_PROBE(sys_enter_fchown) {
    return fd_op(args, OP_CHOWN, args->fd, 0, 0, args->user, args->group, 0);
}
EXIT_PROBE(fchown)

SYSCALL_PROBE(sys_enter_setxattr) {
    return path_op(args, OP_SETXATTR, AT_FDCWD_, args->pathname, args->flags, 0, -1, -1, args->name);
}
EXIT_PROBE(setxattr)
SYSCALL_PROBE(sys_enter_lsetxattr) {
    return path_op(args, OP_SETXATTR, AT_FDCWD_, args->pathname, args->flags, 0, -1, -1, args->name);
}
EXIT_PROBE(lsetxattr)
SYSCALL_PROBE(sys_enter_fsetxattr) {
    return fd_op(args, OP_SETXATTR, args->fd, args->flags, 0, -1, -1, args->name);
}
EXIT_PROBE(fsetxattr)
SYSCALL_PROBE(sys_enter_setxattrat) {
    return path_op(args, OP_SETXATTR, args->dfd, args->pathname, args->at_flags, 0, -1, -1,
                   args->name);
}
EXIT_PROBE(setxattrat)
SYSCALL_PROBE(sys_enter_removexattr) {
    return path_op(args, OP_REMOVEXATTR, AT_FDCWD_, args->pathname, 0, 0, -1, -1, args->name);
}
EXIT_PROBE(removexattr)
SYSCALL_PROBE(sys_enter_lremovexattr) {
    return path_op(args, OP_REMOVEXATTR, AT_FDCWD_, args->pathname, 0, 0, -1, -1, args->name);
}
EXIT_PROBE(lremovexattr)
SYSCALL_PROBE(sys_enter_fremovexattr) {
    return fd_op(args, OP_REMOVEXATTR, args->fd, 0, 0, -1, -1, args->name);
}
EXIT_PROBE(fremovexattr)
SYSCALL_PROBE(sys_enter_removexattrat) {
    return path_op(args, OP_REMOVEXATTR, args->dfd, args->pathname, args->at_flags, 0, -1, -1,
                   args->name);
}
EXIT_PROBE(removexattrat)

SYSCALL_PROBE(sys_enter_truncate) {
    return path_op(args, OP_TRUNCATE, AT_FDCWD_, args->path, 0, 0, -1, -1, 0);
}
EXIT_PROBE(truncate)
SYSCALL_PROBE(sys_enter_ftruncate) {
    return fd_op(args, OP_TRUNCATE, args->fd, 0, 0, -1, -1, 0);
}
EXIT_PROBE(ftruncate)

SYSCALL_PROBE(sys_enter_linkat) {
    return two_path_op(args, OP_LINK, SLOT_USER, args->olddfd, args->oldname, args->newdfd, args->newname,
                       args->flags);
}
EXIT_PROBE(linkat)
SYSCALL_PROBE(sys_enter_link) {
    return two_path_op(args, OP_LINK, SLOT_USER, AT_FDCWD_, args->oldname, AT_FDCWD_, args->newname, 0);
}
EXIT_PROBE(link)
SYSCALL_PROBE(sys_enter_symlinkat) {
    return two_path_op(args, OP_SYMLINK, SLOT_RAW, 0, args->oldname, args->newdfd,
                       args->newname, 0);
}
EXIT_PROBE(symlinkat)
SYSCALL_PROBE(sys_enter_symlink) {
    return two_path_op(args, OP_SYMLINK, SLOT_RAW, 0, args->oldname, AT_FDCWD_,
                       args->newname, 0);
}
EXIT_PROBE(symlink)

/* ---- explicit timestamps and inode flags, wherever they are set ------------------------ */

#define UTIME_NOW_  ((1L << 30) - 1)
#define UTIME_OMIT_ ((1L << 30) - 2)

/* times[4] = atime sec, nsec, mtime sec, nsec; 1 if either is set to an explicit value. */
static __always_inline int explicit_times(const u64 *t) {
    s64 a = (s64)t[1], m = (s64)t[3];
    return !((a == UTIME_NOW_ || a == UTIME_OMIT_) && (m == UTIME_NOW_ || m == UTIME_OMIT_));
}

/* struct timeval pairs (utimes, futimesat): microseconds to nanoseconds. */
static __always_inline int read_timevals(u64 *t, const void *u) {
    if (!u || bpf_probe_read_user(t, 32, u))
        return 0;
    t[1] *= 1000;
    t[3] *= 1000;
    return 1;
}

SYSCALL_PROBE(sys_enter_utimensat) {
    u64 t[4] = {};
    if (!args->utimes || bpf_probe_read_user(t, sizeof(t), args->utimes) || !explicit_times(t))
        return 0;
    if (!args->filename)  /* futimens(fd, times) */
        return fd_op_x(args, OP_UTIMES, args->dfd, args->flags, 0, -1, -1, 0, t);
    return path_op_x(args, OP_UTIMES, args->dfd, args->filename, args->flags, 0, -1, -1, 0, t);
}
EXIT_PROBE(utimensat)
SYSCALL_PROBE(sys_enter_futimesat) {
    u64 t[4] = {};
    if (!read_timevals(t, args->utimes))
        return 0;
    return path_op_x(args, OP_UTIMES, args->dfd, args->filename, 0, 0, -1, -1, 0, t);
}
EXIT_PROBE(futimesat)
SYSCALL_PROBE(sys_enter_utimes) {
    u64 t[4] = {};
    if (!read_timevals(t, args->utimes))
        return 0;
    return path_op_x(args, OP_UTIMES, AT_FDCWD_, args->filename, 0, 0, -1, -1, 0, t);
}
EXIT_PROBE(utimes)
SYSCALL_PROBE(sys_enter_utime) {
    u64 u[2] = {};  /* struct utimbuf: actime, modtime (seconds) */
    if (!args->times || bpf_probe_read_user(u, sizeof(u), args->times))
        return 0;
    u64 t[4] = {u[0], 0, u[1], 0};
    return path_op_x(args, OP_UTIMES, AT_FDCWD_, args->filename, 0, 0, -1, -1, 0, t);
}
EXIT_PROBE(utime)

#define FS_IOC_SETFLAGS_   0x40086602
#define FS_IOC32_SETFLAGS_ 0x40046602
#define FS_IMMUTABLE_FL_   0x10
#define FS_APPEND_FL_      0x20
#define S_APPEND_          4   /* inode->i_flags */
#define S_IMMUTABLE_       8

/* chattr +i / +a / -i / -a: the new flags, and the inode's flags before (extra[0]). */
SYSCALL_PROBE(sys_enter_ioctl) {
    u32 cmd = args->cmd;
    if (cmd != FS_IOC_SETFLAGS_ && cmd != FS_IOC32_SETFLAGS_)
        return 0;
    u32 flags = 0;
    if (bpf_probe_read_user(&flags, sizeof(flags), (void *)args->arg))
        return 0;
    u64 file = fd_file(bpf_get_current_task(), args->fd);
    u32 old = read_u32(read_ptr(file, OFF_FILE_F_INODE), OFF_INODE_I_FLAGS);
    if (!(flags & (FS_IMMUTABLE_FL_ | FS_APPEND_FL_)) && !(old & (S_APPEND_ | S_IMMUTABLE_)))
        return 0;
    u64 extra[4] = {old, 0, 0, 0};
    return fd_op_x(args, OP_SETFLAGS, args->fd, flags, 0, -1, -1, 0, extra);
}
EXIT_PROBE(ioctl)
