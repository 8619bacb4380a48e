// CUDA on the host: what the kernel sources of providers/cuda/kernels need to compile with
// g++ and run on the CPU, for the emulator of tests/cuda_emulator (see its __init__.py).
//
// Model:
//   * A launch runs its blocks one after another.  Each CUDA thread of a block is a fiber
//     (ucontext) on one OS thread; a fiber runs until it finishes or reaches a barrier
//     (__syncthreads, a warp shuffle or vote, __syncwarp), and the scheduler resumes the
//     waiting threads once everyone the barrier names has arrived.  Between barriers the
//     threads run in thread order, or in reverse order, alternating with each phase and
//     starting the other way in every other block, so a missing barrier shows.
//   * One block runs at a time, so __shared__ variables are plain static storage.  Dynamic
//     shared memory (extern __shared__) is rewritten by the builder to a pointer to one
//     static buffer, filled with 0xff bytes (NaN, -1) before each block.
//   * Strict where CUDA leaves things undefined: a __syncthreads some threads of the block
//     never reach (they exited or wait elsewhere), a warp operation whose mask names an
//     exited lane or whose lanes disagree, a shuffle reading a lane outside the mask, and
//     launch configurations the hardware refuses all fail the launch with a message that
//     names the block and thread.  A memory fault (a guard page of the emulator's device
//     arrays, a null pointer), an integer division by zero or a trapped UBSan check
//     inside a kernel fails the launch the same way instead of killing the process.
//   * Flush-to-zero: CuPy compiles every kernel with -ftz=true, so on the GPU float32
//     subnormal inputs of arithmetic read as zero and subnormal results are written as zero.
//     With ORTGPU_EMU_FTZ defined (the builder defines it unless the options say
//     -ftz=false) a launch sets the SSE control bits FTZ and DAZ, which do the same on the
//     host.  The host switch also covers float64, which the GPU does not flush: a float64
//     subnormal reads as zero here only.  Plain copies (no arithmetic) keep subnormals on
//     both.
//   * Not modelled: the GPU memory model and real warp scheduling (warps do not run in
//     lockstep here), FMA contraction, the accuracy of CUDA's math library (glibc's is
//     used), register and shared-memory limits, performance.
#pragma once

#include <math.h>

#include <cmath>
#include <signal.h>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <ucontext.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
#include <unistd.h>

#define ORTGPU_HOST_EMULATION 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static
#define __constant__ static
#define __align__(n) __attribute__((aligned(n)))
// __restrict__ is a g++ keyword; #pragma unroll is ignored by g++.

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

static uint3 threadIdx;
static uint3 blockIdx;
static dim3 blockDim;
static dim3 gridDim;
static constexpr int warpSize = 32;

namespace ortgpu_emu {

constexpr unsigned kMaxThreads = 1024;
constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kDynamicSharedBytes = 48 * 1024;   // the default limit without opt-in

enum class State : unsigned char { Ready, BlockWait, WarpWait, Done };
enum class WarpOp : unsigned char { Sync, Shuffle, Vote };

struct Thread {
    ucontext_t ctx;
    State state;
    WarpOp op;
    unsigned mask;
    int src;           // lane a shuffle reads
    uint64_t value;    // what this lane publishes (shuffle value or vote predicate)
    uint64_t result;   // what it gets back
    int pred;          // __syncthreads_count/and/or predicate
};

// Everything about the running launch.  One launch at a time per loaded unit.
struct Launch {
    std::vector<Thread> threads;
    std::vector<char*> stacks;
    unsigned nthreads = 0;
    unsigned current = 0;
    bool in_fiber = false;
    bool in_launch = false;
    bool failed = false;
    int fault_signal = 0;
    void* fault_addr = nullptr;
    char message[2048] = {0};
    ucontext_t scheduler;
    void (*body)(const void*) = nullptr;
    const void* closure = nullptr;
    uint64_t block_result = 0;
};
static Launch g;

alignas(256) static unsigned char dynamic_shared_memory[kDynamicSharedBytes];
inline void* dynamic_shared() { return dynamic_shared_memory; }

inline Thread& self() { return g.threads[g.current]; }
inline uint3 thread_index(unsigned t) {
    return uint3{t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
}

inline void describe_thread(char* out, size_t n, unsigned t) {
    const uint3 ti = thread_index(t);
    snprintf(out, n, "block (%u, %u, %u) thread (%u, %u, %u)", blockIdx.x, blockIdx.y, blockIdx.z,
             ti.x, ti.y, ti.z);
}

// Record a failure of the launch (the first one wins).
inline void record(const char* fmt, ...) {
    if (g.failed) return;
    g.failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.message, sizeof(g.message), fmt, ap);
    va_end(ap);
}

// Fail from inside a kernel: the calling thread never resumes and the launch stops.
[[noreturn]] inline void fail(const char* what) {
    char where[128];
    describe_thread(where, sizeof(where), g.current);
    record("%s (%s)", what, where);
    swapcontext(&self().ctx, &g.scheduler);
    __builtin_unreachable();
}

inline void wait(State s) {
    self().state = s;
    swapcontext(&self().ctx, &g.scheduler);
}

// ------------------------------------------------------------------ faults inside kernels

static struct sigaction g_old_actions[4];
static stack_t g_old_altstack;
static const int kSignals[4] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
alignas(16) static char g_altstack[64 * 1024];

inline void on_fault(int sig, siginfo_t* info, void*) {
    if (!g.in_launch || !g.in_fiber) {   // not the kernel's fault: let the previous handler act
        for (int i = 0; i < 4; ++i) {
            if (kSignals[i] == sig) sigaction(sig, &g_old_actions[i], nullptr);
        }
        return;   // the instruction faults again, now under the old handler
    }
    const char* what = sig == SIGFPE ? "integer division by zero or overflow"
                       : sig == SIGILL ? "a trapped check of undefined behaviour (UBSan: integer division by zero, out-of-bounds "
                                         "index, overflow, misaligned or null pointer, bad shift)"
                                       : "invalid memory access";
    char where[128];
    describe_thread(where, sizeof(where), g.current);
    if (sig == SIGSEGV || sig == SIGBUS) {
        record("%s at address %p (%s)", what, info->si_addr, where);
    } else {
        record("%s (%s)", what, where);
    }
    g.fault_signal = sig;
    g.fault_addr = info->si_addr;
    setcontext(&g.scheduler);   // abandon the fiber; its stack is reused by the next block
}

inline void install_fault_handlers() {
    stack_t ss{};
    ss.ss_sp = g_altstack;
    ss.ss_size = sizeof(g_altstack);
    sigaltstack(&ss, &g_old_altstack);
    struct sigaction sa{};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 4; ++i) sigaction(kSignals[i], &sa, &g_old_actions[i]);
}

inline void restore_fault_handlers() {
    for (int i = 0; i < 4; ++i) sigaction(kSignals[i], &g_old_actions[i], nullptr);
    sigaltstack(&g_old_altstack, nullptr);
}

// ------------------------------------------------------------------ the scheduler

inline bool allocate_stacks(unsigned n) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    while (g.stacks.size() < n) {
        void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return false;
        mprotect(p, page, PROT_NONE);   // stacks grow down: the guard page is the lowest
        g.stacks.push_back(static_cast<char*>(p) + page);
    }
    return true;
}

inline void fiber_main() {
    g.body(g.closure);
    self().state = State::Done;
    // returning resumes uc_link, the scheduler
}

inline void resume(unsigned t) {
    g.current = t;
    threadIdx = thread_index(t);
    g.in_fiber = true;
    swapcontext(&g.scheduler, &g.threads[t].ctx);
    g.in_fiber = false;
}

// Release the warps whose named lanes have all arrived at the same warp operation.
// Returns whether any warp was released; records a failure for impossible waits.
inline bool release_warps() {
    bool released = false;
    const unsigned n = g.nthreads;
    for (unsigned base = 0; base < n && !g.failed; base += 32) {
        const unsigned lanes = n - base < 32 ? n - base : 32;
        for (unsigned l = 0; l < lanes; ++l) {
            Thread& t = g.threads[base + l];
            if (t.state != State::WarpWait) continue;
            bool ready = true;
            for (unsigned m = 0; m < lanes; ++m) {
                if (!(t.mask >> m & 1u)) continue;
                const Thread& o = g.threads[base + m];
                if (o.state == State::Done) {
                    char where[128];
                    describe_thread(where, sizeof(where), base + l);
                    record("a warp operation with mask 0x%08x names lane %u, which has exited (%s)",
                           t.mask, m, where);
                    return false;
                }
                if (o.state != State::WarpWait) {
                    ready = false;
                    break;
                }
                if (o.mask != t.mask || o.op != t.op) {
                    char where[128];
                    describe_thread(where, sizeof(where), base + l);
                    record("lanes %u and %u of a warp wait at different warp operations "
                           "(masks 0x%08x and 0x%08x) (%s)", l, m, t.mask, o.mask, where);
                    return false;
                }
            }
            if (!ready) continue;
            uint64_t ballot = 0;
            for (unsigned m = 0; m < lanes; ++m) {
                if ((t.mask >> m & 1u) && g.threads[base + m].value) ballot |= 1ull << m;
            }
            const unsigned mask = t.mask;
            for (unsigned m = 0; m < lanes; ++m) {
                if (!(mask >> m & 1u)) continue;
                Thread& o = g.threads[base + m];
                if (o.op == WarpOp::Shuffle) {
                    const int s = o.src;
                    if (s < 0 || s >= static_cast<int>(lanes) || !(mask >> s & 1u)) {
                        char where[128];
                        describe_thread(where, sizeof(where), base + m);
                        if (s >= static_cast<int>(lanes)) {
                            record("a shuffle reads lane %d of a warp that has only %u threads (the block "
                                   "is not whole warps) (%s)", s, lanes, where);
                        } else {
                            record("a shuffle reads lane %d, which is not in its mask 0x%08x (%s)", s, mask, where);
                        }
                        return false;
                    }
                    o.result = g.threads[base + s].value;
                } else {
                    o.result = ballot;
                }
                o.state = State::Ready;
            }
            released = true;
        }
    }
    return released;
}

// Release a block barrier everyone has reached; else record why the block is stuck.
inline bool release_block() {
    const unsigned n = g.nthreads;
    unsigned waiting = 0, done = 0;
    uint64_t count = 0;
    for (unsigned t = 0; t < n; ++t) {
        const Thread& th = g.threads[t];
        if (th.state == State::BlockWait) {
            ++waiting;
            count += th.pred != 0;
        } else if (th.state == State::Done) {
            ++done;
        }
    }
    if (done == n) return false;
    if (waiting == n) {
        g.block_result = count;
        for (unsigned t = 0; t < n; ++t) g.threads[t].state = State::Ready;
        return true;
    }
    // stuck: name one thread at each kind of wait
    char a[128] = "", b[128] = "";
    for (unsigned t = 0; t < n; ++t) {
        const State s = g.threads[t].state;
        if (!a[0] && s == State::BlockWait) describe_thread(a, sizeof(a), t);
        if (!b[0] && s != State::BlockWait) describe_thread(b, sizeof(b), t);
    }
    if (waiting && done) {
        record("__syncthreads is waited on by %u threads (e.g. %s) but %u threads of the block have exited "
               "(e.g. %s): a barrier every thread must reach", waiting, a, done, b);
    } else if (waiting) {
        record("__syncthreads is waited on by %u threads (e.g. %s) while others wait at a warp operation "
               "that cannot complete (e.g. %s)", waiting, a, b);
    } else {
        record("warp operations cannot complete: their masks name lanes that wait elsewhere (e.g. %s)", b);
    }
    return false;
}

inline void run_block() {
    const unsigned n = g.nthreads;
    std::memset(dynamic_shared_memory, 0xff, sizeof(dynamic_shared_memory));
    for (unsigned t = 0; t < n; ++t) {
        Thread& th = g.threads[t];
        getcontext(&th.ctx);
        th.ctx.uc_stack.ss_sp = g.stacks[t];
        th.ctx.uc_stack.ss_size = kStackBytes;
        th.ctx.uc_link = &g.scheduler;
        makecontext(&th.ctx, fiber_main, 0);
        th.state = State::Ready;
    }
    // forward in even phases of even blocks and odd phases of odd blocks, else backward:
    // a missing barrier lets a thread read what a neighbour has not written yet in some block
    const unsigned parity = (blockIdx.x + blockIdx.y + blockIdx.z) & 1u;
    for (unsigned phase = parity;; ++phase) {
        for (unsigned k = 0; k < n; ++k) {
            const unsigned t = phase % 2 == 0 ? k : n - 1 - k;
            if (g.threads[t].state == State::Ready) resume(t);
            if (g.failed) return;
        }
        if (release_warps()) continue;
        if (g.failed || !release_block()) return;
    }
}

inline int check_config(const unsigned* grid, const unsigned* block, size_t shared) {
    const unsigned long long threads = 1ull * block[0] * block[1] * block[2];
    if (block[0] > 1024 || block[1] > 1024 || block[2] > 64 || threads > kMaxThreads) {
        record("invalid block (%u, %u, %u): at most (1024, 1024, 64) and 1024 threads in all",
               block[0], block[1], block[2]);
        return 1;
    }
    if (grid[0] > 2147483647u || grid[1] > 65535u || grid[2] > 65535u) {
        record("invalid grid (%u, %u, %u): at most (2^31 - 1, 65535, 65535)", grid[0], grid[1], grid[2]);
        return 1;
    }
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || threads == 0) {
        record("invalid launch: an empty grid (%u, %u, %u) or block (%u, %u, %u)", grid[0], grid[1], grid[2],
               block[0], block[1], block[2]);
        return 1;
    }
    if (shared > kDynamicSharedBytes) {
        record("%zu bytes of dynamic shared memory asked, more than the %zu a kernel gets without opt-in",
               shared, kDynamicSharedBytes);
        return 1;
    }
    return 0;
}

// What the Python side passes to an entry point: grid, block, dynamic shared memory, the
// kernel's arguments as cuLaunchKernel takes them (one pointer to each value), and room
// for an error.
struct LaunchArgs {
    unsigned grid[3];
    unsigned block[3];
    size_t shared_mem;
    void* const* args;
    int nargs;
    char* error;
    size_t error_len;
    void* fault_addr;
    int fault_signal;
};

// Run body(closure) as every thread of every block; 0 on success, else 1 with a message.
// The SSE control bits of -ftz=true for one launch: FTZ (results) and DAZ (inputs), put
// back when the launch ends.
struct FlushToZero {
#if defined(ORTGPU_EMU_FTZ) && defined(__SSE__)
    unsigned saved = _mm_getcsr();
    FlushToZero() { _mm_setcsr(saved | 0x8040u); }
    ~FlushToZero() { _mm_setcsr(saved); }
#endif
};

inline int run(LaunchArgs& la, void (*body)(const void*), const void* closure) {
    g.failed = false;
    g.message[0] = 0;
    g.fault_signal = 0;
    g.fault_addr = nullptr;
    if (check_config(la.grid, la.block, la.shared_mem) == 0) {
        const unsigned n = la.block[0] * la.block[1] * la.block[2];
        if (g.threads.size() < n) g.threads.resize(n);
        if (!allocate_stacks(n)) record("cannot allocate fiber stacks");
        g.nthreads = n;
        g.body = body;
        g.closure = closure;
        gridDim = dim3(la.grid[0], la.grid[1], la.grid[2]);
        blockDim = dim3(la.block[0], la.block[1], la.block[2]);
        g.in_launch = true;
        const FlushToZero ftz;   // fibers made from here on inherit the control bits
        install_fault_handlers();
        for (unsigned z = 0; z < la.grid[2] && !g.failed; ++z) {
            for (unsigned y = 0; y < la.grid[1] && !g.failed; ++y) {
                for (unsigned x = 0; x < la.grid[0] && !g.failed; ++x) {
                    blockIdx = uint3{x, y, z};
                    run_block();
                }
            }
        }
        restore_fault_handlers();
        g.in_launch = false;
    }
    if (g.failed && la.error && la.error_len) snprintf(la.error, la.error_len, "%s", g.message);
    la.fault_addr = g.fault_addr;
    la.fault_signal = g.fault_signal;
    return g.failed ? 1 : 0;
}

// ------------------------------------------------------------------ kernel entry points

template <typename P>
inline P read_arg(const void* p) {
    static_assert(std::is_trivially_copyable_v<P>, "kernel parameters are copied byte for byte");
    P v;
    std::memcpy(static_cast<void*>(&v), p, sizeof(P));
    return v;
}

template <typename... P>
struct Call {
    void (*kernel)(P...);
    void* const* args;

    template <size_t... I>
    void invoke(std::index_sequence<I...>) const {
        kernel(read_arg<P>(args[I])...);
    }
    static void body(const void* self) {
        static_cast<const Call*>(self)->invoke(std::index_sequence_for<P...>{});
    }
};

template <typename... P>
inline int launch(void (*kernel)(P...), LaunchArgs* la) {
    if (la->nargs != static_cast<int>(sizeof...(P))) {
        snprintf(la->error, la->error_len, "the kernel takes %zu arguments, %d given", sizeof...(P), la->nargs);
        return 1;
    }
    const Call<P...> call{kernel, la->args};
    return run(*la, &Call<P...>::body, &call);
}

// One kernel parameter as the Python side checks it against the argument it packs.
struct ParamInfo {
    int is_pointer;
    int size;    // of the value, or of the pointee for a pointer (0 for void)
    char kind;   // f float, h float16 (half_t), b bool, i signed, u unsigned, V anything else
};

template <typename T>
struct Kind {
    static constexpr char value = std::is_same_v<T, bool> ? 'b'
                                  : std::is_floating_point_v<T> ? 'f'
                                  : std::is_integral_v<T> ? (std::is_signed_v<T> ? 'i' : 'u')
                                                          : 'V';
};

template <typename P>
inline ParamInfo param_info() {
    if constexpr (std::is_pointer_v<P>) {
        typedef std::remove_cv_t<std::remove_pointer_t<P>> T;
        if constexpr (std::is_void_v<T>) {
            return ParamInfo{1, 0, 'V'};
        } else {
            return ParamInfo{1, static_cast<int>(sizeof(T)), Kind<T>::value};
        }
    } else {
        return ParamInfo{0, static_cast<int>(sizeof(P)), Kind<P>::value};
    }
}

template <typename... P>
inline int describe(void (*)(P...), ParamInfo* out, int capacity) {
    const ParamInfo infos[] = {param_info<P>()..., ParamInfo{0, 0, 0}};
    const int n = static_cast<int>(sizeof...(P));
    for (int i = 0; i < n && i < capacity; ++i) out[i] = infos[i];
    return n;
}

// ------------------------------------------------------------------ warp exchange

inline unsigned lane_id() { return g.current & 31u; }

inline uint64_t warp_wait(unsigned mask, WarpOp op, uint64_t value, int src) {
    if (!(mask >> lane_id() & 1u)) fail("a warp operation's mask does not name the calling lane");
    Thread& t = self();
    t.mask = mask;
    t.op = op;
    t.value = value;
    t.src = src;
    wait(State::WarpWait);
    return self().result;
}

template <typename T>
inline T shuffle_from(unsigned mask, T var, int src) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffles move up to 8 bytes");
    uint64_t bits = 0;
    std::memcpy(&bits, &var, sizeof(T));
    bits = warp_wait(mask, WarpOp::Shuffle, bits, src);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}

inline int segment_base(int width) {
    if (width <= 0 || width > 32 || (width & (width - 1))) fail("shuffle width must be a power of 2 up to 32");
    return static_cast<int>(lane_id()) & ~(width - 1);
}

}  // namespace ortgpu_emu

// ------------------------------------------------------------------ CUDA intrinsics

inline void __syncthreads() {
    ortgpu_emu::self().pred = 0;
    ortgpu_emu::wait(ortgpu_emu::State::BlockWait);
}
inline int __syncthreads_count(int pred) {
    ortgpu_emu::self().pred = pred;
    ortgpu_emu::wait(ortgpu_emu::State::BlockWait);
    return static_cast<int>(ortgpu_emu::g.block_result);
}
inline int __syncthreads_and(int pred) { return __syncthreads_count(pred) == static_cast<int>(ortgpu_emu::g.nthreads); }
inline int __syncthreads_or(int pred) { return __syncthreads_count(pred) != 0; }

inline void __syncwarp(unsigned mask = 0xffffffffu) {
    ortgpu_emu::warp_wait(mask, ortgpu_emu::WarpOp::Sync, 0, -1);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
    return static_cast<unsigned>(ortgpu_emu::warp_wait(mask, ortgpu_emu::WarpOp::Vote, pred != 0, -1));
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }
inline unsigned __activemask() {
    unsigned m = 0;
    const unsigned base = ortgpu_emu::g.current & ~31u;
    for (unsigned l = 0; l < 32 && base + l < ortgpu_emu::g.nthreads; ++l) {
        if (ortgpu_emu::g.threads[base + l].state != ortgpu_emu::State::Done) m |= 1u << l;
    }
    return m;
}

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32) {
    const int base = ortgpu_emu::segment_base(width);
    return ortgpu_emu::shuffle_from(mask, var, base + (srcLane & (width - 1)));
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    const int base = ortgpu_emu::segment_base(width);
    const int lane = static_cast<int>(ortgpu_emu::lane_id());
    const int src = lane - static_cast<int>(delta);
    return ortgpu_emu::shuffle_from(mask, var, src < base ? lane : src);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    const int base = ortgpu_emu::segment_base(width);
    const int lane = static_cast<int>(ortgpu_emu::lane_id());
    const int src = lane + static_cast<int>(delta);
    return ortgpu_emu::shuffle_from(mask, var, src >= base + width ? lane : src);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32) {
    const int base = ortgpu_emu::segment_base(width);
    const int lane = static_cast<int>(ortgpu_emu::lane_id());
    const int src = lane ^ laneMask;
    return ortgpu_emu::shuffle_from(mask, var, src >= base + width ? lane : src);
}

inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __trap() { ortgpu_emu::fail("__trap() called"); }

// Reinterpretations and conversions.
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float v) { int i; std::memcpy(&i, &v, 4); return i; }
inline unsigned __float_as_uint(float v) { unsigned i; std::memcpy(&i, &v, 4); return i; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double v) { long long i; std::memcpy(&i, &v, 8); return i; }
inline int __float2int_rn(float x) { return static_cast<int>(nearbyintf(x)); }
inline int __float2int_rz(float x) { return static_cast<int>(x); }
inline long long __float2ll_rn(float x) { return static_cast<long long>(nearbyintf(x)); }
inline int __double2int_rn(double x) { return static_cast<int>(nearbyint(x)); }
inline long long __double2ll_rn(double x) { return static_cast<long long>(nearbyint(x)); }

// Integer intrinsics.
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((1ull * a * b) >> 32); }
inline int __mulhi(int a, int b) { return static_cast<int>((1ll * a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline long long __mul64hi(long long a, long long b) {
    return static_cast<long long>((static_cast<__int128>(a) * b) >> 64);
}

// Float intrinsics (the fast forms compute exactly here).
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }

// CUDA's overloaded min and max: fmin/fmax for floating point, comparison for integers.
template <typename A, typename B>
inline auto min(A a, B b) -> std::common_type_t<A, B> {
    typedef std::common_type_t<A, B> R;
    if constexpr (std::is_floating_point_v<R>) {
        return std::fmin(static_cast<R>(a), static_cast<R>(b));
    } else {
        return static_cast<R>(b) < static_cast<R>(a) ? static_cast<R>(b) : static_cast<R>(a);
    }
}
template <typename A, typename B>
inline auto max(A a, B b) -> std::common_type_t<A, B> {
    typedef std::common_type_t<A, B> R;
    if constexpr (std::is_floating_point_v<R>) {
        return std::fmax(static_cast<R>(a), static_cast<R>(b));
    } else {
        return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(b) : static_cast<R>(a);
    }
}

template <typename T>
inline T __ldg(const T* p) { return *p; }

// Atomics: fibers never interleave inside one, so a plain read-modify-write is atomic.
template <typename T, typename V>
inline T atomicAdd(T* a, V v) {
    const T old = *a;
    if constexpr (std::is_integral_v<T>) {
        typedef std::make_unsigned_t<T> U;
        *a = static_cast<T>(static_cast<U>(old) + static_cast<U>(static_cast<T>(v)));
    } else {
        *a = old + static_cast<T>(v);
    }
    return old;
}
template <typename T, typename V>
inline T atomicSub(T* a, V v) {
    const T old = *a;
    typedef std::make_unsigned_t<T> U;
    *a = static_cast<T>(static_cast<U>(old) - static_cast<U>(static_cast<T>(v)));
    return old;
}
template <typename T, typename V>
inline T atomicExch(T* a, V v) { const T old = *a; *a = static_cast<T>(v); return old; }
template <typename T, typename V>
inline T atomicMax(T* a, V v) { const T old = *a; if (old < static_cast<T>(v)) *a = static_cast<T>(v); return old; }
template <typename T, typename V>
inline T atomicMin(T* a, V v) { const T old = *a; if (static_cast<T>(v) < old) *a = static_cast<T>(v); return old; }
template <typename T, typename V>
inline T atomicAnd(T* a, V v) { const T old = *a; *a = old & static_cast<T>(v); return old; }
template <typename T, typename V>
inline T atomicOr(T* a, V v) { const T old = *a; *a = old | static_cast<T>(v); return old; }
template <typename T, typename V>
inline T atomicXor(T* a, V v) { const T old = *a; *a = old ^ static_cast<T>(v); return old; }
template <typename T, typename C, typename V>
inline T atomicCAS(T* a, C compare, V v) {
    const T old = *a;
    if (old == static_cast<T>(compare)) *a = static_cast<T>(v);
    return old;
}

#define ORTGPU_EMU_EXPORT extern "C" __attribute__((visibility("default")))
