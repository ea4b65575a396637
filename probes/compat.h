/* One probe source, two loaders.
 *
 * Every probe source (probes/NAME.bpf.c) is compiled twice from the same text:
 *   - at build time by clang into a CO-RE object (probes/build/<name>.bpf.o) that spyderd
 *     loads with libbpf: kernel struct fields are relocated against the running kernel's
 *     BTF, configuration is written into .rodata before the load;
 *   - at start by bcc, only where the kernel has no BTF or the bcc loader is forced
 *     (capture.loader: bcc): spyderd passes -DSPYDER_BCC, turns the map calls below into
 *     bcc's method calls and the KOFF()/KFIELD_EXISTS() uses into numbers (from BTF where
 *     the kernel has it, from the kernel headers' offsetof otherwise), and the CFG() values
 *     into -D macros.
 *
 * The dialect (see docs/probes.md):
 *   maps        BPF_HASH / BPF_ARRAY / BPF_PERCPU_ARRAY / BPF_LRU_HASH / BPF_LPM_TRIE /
 *               BPF_PROG_ARRAY / BPF_RINGBUF_OUTPUT declarations (bcc's own macros; defined
 *               here for libbpf), used through libbpf's helpers with the map's address:
 *               bpf_map_lookup_elem(&m, k), bpf_map_update_elem(&m, k, v, BPF_ANY),
 *               bpf_map_delete_elem(&m, k), bpf_ringbuf_reserve(&m, size, 0),
 *               bpf_ringbuf_output(&m, data, size, 0), bpf_tail_call(ctx, &m, i).
 *               Write them literally (bcc cannot rewrite map calls inside a macro).
 *   hooks       SYSCALL_PROBE(sys_enter_x) { args->field ... }   (args: probes/syscalls.h)
 *               TRACEPOINT_PROBE(category, event) { args->field ... }  (other tracepoints;
 *                   add the event's vmlinux.h record type below)
 *               RAW_TRACEPOINT_PROBE(event) { ctx->args[i] ... }
 *               RAW_TRACEPOINT_PROBE_AS(event, name): a second program on the same hook
 *               TAIL_PROGRAM(name): a program reached only by bpf_tail_call
 *   kernel      KOFF(struct_name, field.path): byte offset of a field (CO-RE relocated);
 *               KFIELD_EXISTS(struct_name, field.path): 0 or 1 on the running kernel
 *   config      SPY_CONFIG(name, default) at file scope, CFG(name) in code (u64)
 *   records     SPY_RECORD(struct_name) after each record struct sent to user space
 *   loader      #ifdef SPYDER_BCC for the rare place where the two must differ
 */
#ifndef SPYDER_COMPAT_H
#define SPYDER_COMPAT_H

#ifdef SPYDER_BCC
/* ---------------------------------------------------------------- bcc (fallback) */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>

#define BPF_LRU_HASH(name, key, leaf, size) BPF_TABLE("lru_hash", key, leaf, name, size)
#define SYSCALL_PROBE(event) int sc__##event(struct syscalls__##event *args)
/* Program names tell the loader their hook: sc__<event>, raw_tp__<event>[__<name>]. */
#define RAW_TRACEPOINT_PROBE_AS(event, name)                                            \
    int raw_tp__##event##__##name(struct bpf_raw_tracepoint_args *ctx)
#undef RAW_TRACEPOINT_PROBE
#define RAW_TRACEPOINT_PROBE(event) int raw_tp__##event(struct bpf_raw_tracepoint_args *ctx)
#define TAIL_PROGRAM(name) int name(void *ctx)
#define SPY_CONFIG(name, value)
#define CFG(name) ((u64)(CFG_##name))
#define SPY_RECORD(name)
/* KOFF(s, f) and KFIELD_EXISTS(s, f) are replaced by numbers before compiling. */

#else
/* ---------------------------------------------------------------- libbpf (CO-RE) */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#ifndef RINGBUF_PAGES
#define RINGBUF_PAGES 64 /* the loader sets the real size (capture.ring_buffer_pages) */
#endif

#define __SPY_MAP(_type, _name, _key, _leaf, _size, _flags)                             \
    struct {                                                                            \
        __uint(type, _type);                                                            \
        __type(key, _key);                                                              \
        __type(value, _leaf);                                                           \
        __uint(max_entries, _size);                                                     \
        __uint(map_flags, _flags);                                                      \
    } _name SEC(".maps")

#define BPF_HASH(name, key, leaf, size) __SPY_MAP(BPF_MAP_TYPE_HASH, name, key, leaf, size, 0)
#define BPF_LRU_HASH(name, key, leaf, size)                                             \
    __SPY_MAP(BPF_MAP_TYPE_LRU_HASH, name, key, leaf, size, 0)
#define BPF_ARRAY(name, leaf, size) __SPY_MAP(BPF_MAP_TYPE_ARRAY, name, u32, leaf, size, 0)
#define BPF_PERCPU_ARRAY(name, leaf, size)                                              \
    __SPY_MAP(BPF_MAP_TYPE_PERCPU_ARRAY, name, u32, leaf, size, 0)
#define BPF_LPM_TRIE(name, key, leaf, size)                                             \
    __SPY_MAP(BPF_MAP_TYPE_LPM_TRIE, name, key, leaf, size, BPF_F_NO_PREALLOC)
#define BPF_PROG_ARRAY(name, size)                                                      \
    struct {                                                                            \
        __uint(type, BPF_MAP_TYPE_PROG_ARRAY);                                          \
        __uint(key_size, sizeof(u32));                                                  \
        __uint(value_size, sizeof(u32));                                                \
        __uint(max_entries, size);                                                      \
    } name SEC(".maps")
#define BPF_RINGBUF_OUTPUT(name, pages)                                                 \
    struct {                                                                            \
        __uint(type, BPF_MAP_TYPE_RINGBUF);                                             \
        __uint(max_entries, (pages) * 4096);                                            \
    } name SEC(".maps")

#define SYSCALL_PROBE(event)                                                            \
    SEC("tracepoint/syscalls/" #event) int sc__##event(struct syscalls__##event *args)
#define TRACEPOINT_PROBE(category, event)                                               \
    SEC("tracepoint/" #category "/" #event)                                             \
    int tracepoint__##category##__##event(struct tp__##category##__##event *args)
#define RAW_TRACEPOINT_PROBE(event)                                                     \
    SEC("raw_tp/" #event) int raw_tp__##event(struct bpf_raw_tracepoint_args *ctx)
#define RAW_TRACEPOINT_PROBE_AS(event, name)                                            \
    SEC("raw_tp/" #event) int name(struct bpf_raw_tracepoint_args *ctx)
#define TAIL_PROGRAM(name) SEC("tracepoint") int name(void *ctx)

/* Record types of the non-syscall tracepoints the probes use (vmlinux.h, CO-RE). */
#define tp__sched__sched_process_exit trace_event_raw_sched_process_template
#define tp__sock__inet_sock_set_state trace_event_raw_inet_sock_set_state

#define KOFF(type, field) ((u64)bpf_core_field_offset(struct type, field))
#define KFIELD_EXISTS(type, field) bpf_core_field_exists(struct type, field)
#define SPY_CONFIG(name, value) const volatile u64 cfg_##name = (value);
#define CFG(name) (cfg_##name)
/* Keeps a record struct in the object's BTF (a record only reserved in the ring buffer
 * would not be there), where tests/capture/test_event_kinds.py compares it with the
 * decoder's layout. Costs 8 bytes of .rodata. */
#define SPY_RECORD(name) const volatile struct name *__record_##name = 0;

char LICENSE[] SEC("license") = "GPL";
#endif

#include "syscalls.h"

#endif
