"""The native thread pool every parallel kernel runs on, written in LLVM IR over pthreads.

Kernels declare and call

    declare void @lucid_parallel_for(ptr %fn, ptr %ctx, i64 %n)   ; fn: void (ptr, i64, i64)

which runs fn(ctx, begin, end) over disjoint contiguous chunks covering [0, n) -- up to
CHUNKS_PER_THREAD chunks per thread (at most n: n counts rows or blocks, never split),
equal to within one unit -- and returns when all are done. The caller thread takes part;
chunks are claimed one at a time from an atomic counter, so a thread the OS preempts (a
shared machine) holds the others up by one small chunk, not by a whole 1/threads share,
and a caller whose workers are still waking up simply runs more of them itself. Which
thread runs which chunk is NOT fixed: a task must not use the chunk as a thread id (tasks
that need per-thread scratch claim a slot with their own atomic counter, as anchors.py's
image task and the gemm's packed-B buffers do). Chunk boundaries depend only on n and
the number of threads taking part, so results are as deterministic as before.
The pool is native so that the graph's entry function never returns to Python between
kernels. `i32 @lucid_available_threads()` tells a kernel how many threads a
parallel_for called now would use (1 while the pool runs a job: a nested call runs
serially), so it can size its work split (the gemm's claims).

Design (why it cannot deadlock):
* Workers are created once, lazily, when a job wants more threads than exist; they are
  detached, block all signals (Ctrl-C goes to Python's main thread) and are never joined:
  process exit kills them wherever they wait, and the engine that holds their code is
  never freed (see llvm.py), so interpreter exit cannot hang or crash.
* One job at a time: a caller claims the pool with a compare-and-swap on a busy flag. A
  call that finds the pool busy -- a nested call from inside a chunk (worker or caller),
  or another thread's concurrent call -- runs its whole range serially in its own thread.
* A job is published by bumping a generation counter to an odd value (open) and closed by
  bumping it to even. A worker registers in `active` and re-checks the generation before
  reading the job; the caller closes the job, then waits for `active` to drain before the
  next job's fields may be written (a seqlock-style handshake, all seq_cst on the counters).
* Idle workers spin (pause) for about SPIN_CYCLES TSC cycles, then sleep on a condition
  variable; a publisher broadcasts only when someone sleeps. With more threads than
  cores they spin 16x shorter and yield the core while they spin.
* After os.fork() the child has no workers: a fork hook resets the pool's state.

Python side: `set_num_threads(n)` / `get_num_threads()`; the default is the environment
variable LUCID_NUM_THREADS (a positive integer) or else os.cpu_count().
"""
import ctypes
import operator
import os

from ..errors import LucidError

MAX_THREADS = 1024
# chunks per thread: enough that a preempted thread delays a call by ~1/(8 * threads) of
# its work, few enough that the claim (one contended atomic add per chunk) stays noise
# next to a chunk of any kernel big enough to go parallel (chunk count capped at n, the
# kernel's rows or blocks, so a chunk is never less than one unit)
CHUNKS_PER_THREAD = 8
SPIN_CYCLES = 1 << 18  # ~80 us at 3 GHz: covers the gap between consecutive kernels

_fns = {}  # native entry points of the loaded runtime, bound by llvm.py
_configured = []  # non-empty once the thread count was set (from the environment or by hand)
_cycle_rate = []  # the time-stamp counter's cycles per second, once measured


def _pause(triple):
    if triple.startswith(("x86_64", "i386", "i686")):
        return "call void @llvm.x86.sse2.pause()", "declare void @llvm.x86.sse2.pause()"
    return "", ""


def runtime_ir(triple):
    """LLVM IR text of the runtime module (the engine compiles and loads it first)."""
    pause, pause_decl = _pause(triple)
    return f"""; lucid native runtime: persistent thread pool
{pause_decl}
declare i64 @llvm.readcyclecounter()
declare i32 @pthread_create(ptr, ptr, ptr, ptr)
declare i32 @pthread_detach(i64)
declare i32 @pthread_sigmask(i32, ptr, ptr)
declare i32 @sigfillset(ptr)
declare i32 @pthread_mutex_init(ptr, ptr)
declare i32 @pthread_mutex_lock(ptr)
declare i32 @pthread_mutex_unlock(ptr)
declare i32 @pthread_cond_init(ptr, ptr)
declare i32 @pthread_cond_wait(ptr, ptr)
declare i32 @pthread_cond_broadcast(ptr)
declare i32 @sched_yield()

; room for any libc's pthread types; initialised by @lucid_runtime_init
@mutex = internal global [256 x i8] zeroinitializer, align 64
@cond = internal global [256 x i8] zeroinitializer, align 64
; settings and pool size
@nthreads = internal global i32 1, align 64
@nworkers = internal global i32 0, align 4
@ncpus = internal global i32 1, align 4
; hot counters, one cache line each
@busy = internal global i32 0, align 64
@gen = internal global i64 0, align 64
@active = internal global i64 0, align 64
@sleeping = internal global i32 0, align 64
@next = internal global i64 0, align 64
@done = internal global i64 0, align 64
; the current job, written only while no worker is registered in it
@job_fn = internal global ptr null, align 64
@job_ctx = internal global ptr null, align 8
@job_n = internal global i64 0, align 8
@job_chunks = internal global i64 0, align 8
@job_threads = internal global i64 0, align 8

define void @lucid_runtime_init(i32 %ncpus) {{
  store atomic i32 %ncpus, ptr @ncpus monotonic, align 4
  %1 = call i32 @pthread_mutex_init(ptr @mutex, ptr null)
  %2 = call i32 @pthread_cond_init(ptr @cond, ptr null)
  ret void
}}

; the state a forked child inherits describes threads it does not have
define void @lucid_runtime_after_fork() {{
  store atomic i32 0, ptr @nworkers monotonic, align 4
  store atomic i32 0, ptr @busy monotonic, align 4
  store atomic i64 0, ptr @active monotonic, align 8
  store atomic i32 0, ptr @sleeping monotonic, align 4
  %g = load atomic i64, ptr @gen monotonic, align 8
  %g1 = add i64 %g, 1
  %even = and i64 %g1, -2
  store atomic i64 %even, ptr @gen seq_cst, align 8
  %cpus = load atomic i32, ptr @ncpus monotonic, align 4
  call void @lucid_runtime_init(i32 %cpus)
  ret void
}}

define void @lucid_set_num_threads(i32 %n) {{
  %small = icmp slt i32 %n, 1
  %v = select i1 %small, i32 1, i32 %n
  store atomic i32 %v, ptr @nthreads monotonic, align 4
  ret void
}}

; the time-stamp counter: lucid.codegen.profile converts profiled programs' cycles with it
define i64 @lucid_cycles() {{
  %c = call i64 @llvm.readcyclecounter()
  ret i64 %c
}}

define i32 @lucid_get_num_threads() {{
  %v = load atomic i32, ptr @nthreads monotonic, align 4
  ret i32 %v
}}

; the threads a parallel_for called now would use: 1 while the pool runs a job (a call
; from inside a chunk, or another thread's job, runs serially), else the pool's size
define i32 @lucid_available_threads() {{
  %b = load atomic i32, ptr @busy monotonic, align 4
  %free = icmp eq i32 %b, 0
  %n = load atomic i32, ptr @nthreads monotonic, align 4
  %v = select i1 %free, i32 %n, i32 1
  ret i32 %v
}}

; one step of a busy wait: pause, and give the core away every 64th step
define internal void @relax(i64 %step) {{
entry:
  {pause}
  %m = and i64 %step, 63
  %y = icmp eq i64 %m, 63
  br i1 %y, label %yield, label %out
yield:
  %r = call i32 @sched_yield()
  br label %out
out:
  ret void
}}

; claim chunks of the current job until none is left; chunk k of c over n elements is
; [k*q + min(k, r), that + q + (k < r)) with q = n / c, r = n % c
define internal void @run_chunks(ptr %fn, ptr %ctx, i64 %n, i64 %c) {{
entry:
  %q = udiv i64 %n, %c
  %r = urem i64 %n, %c
  br label %claim
claim:
  %k = atomicrmw add ptr @next, i64 1 monotonic
  %more = icmp ult i64 %k, %c
  br i1 %more, label %body, label %out
body:
  %kq = mul i64 %k, %q
  %lt = icmp ult i64 %k, %r
  %mn = select i1 %lt, i64 %k, i64 %r
  %b = add i64 %kq, %mn
  %extra = zext i1 %lt to i64
  %len = add i64 %q, %extra
  %e = add i64 %b, %len
  call void %fn(ptr %ctx, i64 %b, i64 %e)
  %d = atomicrmw add ptr @done, i64 1 release
  br label %claim
out:
  ret void
}}

; wait until a job newer than %seen is open; returns its generation. Spin first (a
; shorter while, yielding the core, when there are more threads than cores), then sleep.
define internal i64 @wait_job(i64 %seen) {{
entry:
  %t0 = call i64 @llvm.readcyclecounter()
  %nt = load atomic i32, ptr @nthreads monotonic, align 4
  %cpus = load atomic i32, ptr @ncpus monotonic, align 4
  %over = icmp sgt i32 %nt, %cpus
  %budget = select i1 %over, i64 {SPIN_CYCLES // 16}, i64 {SPIN_CYCLES}
  br label %spin
spin:
  %i = phi i64 [ 0, %entry ], [ %i1, %spin_step ], [ %i1, %maybe_yield ], [ %i1, %yield ]
  %g = load atomic i64, ptr @gen acquire, align 8
  %odd = trunc i64 %g to i1
  %new = icmp ne i64 %g, %seen
  %ready = and i1 %odd, %new
  br i1 %ready, label %got, label %spin_step
spin_step:
  %i1 = add i64 %i, 1
  {pause}
  %m = and i64 %i1, 255
  %check = icmp eq i64 %m, 0
  br i1 %check, label %clock, label %spin
clock:
  %t = call i64 @llvm.readcyclecounter()
  %el = sub i64 %t, %t0
  %long = icmp ugt i64 %el, %budget
  %many = icmp ugt i64 %i1, {SPIN_CYCLES // 4}
  %stop = or i1 %long, %many
  br i1 %stop, label %sleep, label %maybe_yield
maybe_yield:
  br i1 %over, label %yield, label %spin
yield:
  %y = call i32 @sched_yield()
  br label %spin
sleep:
  %l = call i32 @pthread_mutex_lock(ptr @mutex)
  %s0 = atomicrmw add ptr @sleeping, i32 1 seq_cst
  br label %recheck
recheck:
  %g2 = load atomic i64, ptr @gen seq_cst, align 8
  %odd2 = trunc i64 %g2 to i1
  %new2 = icmp ne i64 %g2, %seen
  %ready2 = and i1 %odd2, %new2
  br i1 %ready2, label %woke, label %block
block:
  %w = call i32 @pthread_cond_wait(ptr @cond, ptr @mutex)
  br label %recheck
woke:
  %s1 = atomicrmw sub ptr @sleeping, i32 1 seq_cst
  %u = call i32 @pthread_mutex_unlock(ptr @mutex)
  ret i64 %g2
got:
  ret i64 %g
}}

; a worker's whole life; %arg is its index 1, 2, ... (the caller is thread 0)
define internal ptr @worker(ptr %arg) {{
entry:
  %idx = ptrtoint ptr %arg to i64
  br label %wait
wait:
  %seen = phi i64 [ 0, %entry ], [ %g, %leave ]
  %g = call i64 @wait_job(i64 %seen)
  %a0 = atomicrmw add ptr @active, i64 1 seq_cst
  %cur = load atomic i64, ptr @gen seq_cst, align 8
  %valid = icmp eq i64 %cur, %g
  br i1 %valid, label %check, label %leave
check:
  %t = load atomic i64, ptr @job_threads monotonic, align 8
  %mine = icmp ult i64 %idx, %t
  br i1 %mine, label %work, label %leave
work:
  %fn = load atomic ptr, ptr @job_fn monotonic, align 8
  %ctx = load atomic ptr, ptr @job_ctx monotonic, align 8
  %n = load atomic i64, ptr @job_n monotonic, align 8
  %c = load atomic i64, ptr @job_chunks monotonic, align 8
  call void @run_chunks(ptr %fn, ptr %ctx, i64 %n, i64 %c)
  br label %leave
leave:
  %a1 = atomicrmw sub ptr @active, i64 1 seq_cst
  br label %wait
}}

; create workers until there are %want (fewer if the system refuses); new threads
; inherit a fully blocked signal mask
define internal void @spawn(i32 %want) {{
entry:
  %tid = alloca i64, align 8
  %all = alloca [128 x i8], align 8
  %old = alloca [128 x i8], align 8
  %f = call i32 @sigfillset(ptr %all)
  %s = call i32 @pthread_sigmask(i32 2, ptr %all, ptr %old)
  %have = load atomic i32, ptr @nworkers monotonic, align 4
  br label %loop
loop:
  %i = phi i32 [ %have, %entry ], [ %i1, %created ]
  %more = icmp slt i32 %i, %want
  br i1 %more, label %create, label %out
create:
  %i1 = add i32 %i, 1
  %i1x = zext i32 %i1 to i64
  %arg = inttoptr i64 %i1x to ptr
  %rc = call i32 @pthread_create(ptr %tid, ptr null, ptr @worker, ptr %arg)
  %ok = icmp eq i32 %rc, 0
  br i1 %ok, label %created, label %out
created:
  %t = load i64, ptr %tid, align 8
  %dt = call i32 @pthread_detach(i64 %t)
  store atomic i32 %i1, ptr @nworkers monotonic, align 4
  br label %loop
out:
  %r = call i32 @pthread_sigmask(i32 2, ptr %old, ptr null)
  ret void
}}

define void @lucid_parallel_for(ptr %fn, ptr %ctx, i64 %n) {{
entry:
  %pos = icmp sgt i64 %n, 0
  br i1 %pos, label %check, label %out
check:
  %nt = load atomic i32, ptr @nthreads monotonic, align 4
  %multi = icmp sgt i32 %nt, 1
  %big = icmp sgt i64 %n, 1
  %par = and i1 %multi, %big
  br i1 %par, label %claim, label %serial
claim:
  %cx = cmpxchg ptr @busy, i32 0, i32 1 acquire monotonic
  %won = extractvalue {{ i32, i1 }} %cx, 1
  br i1 %won, label %ensure, label %serial
ensure:
  %want = sub i32 %nt, 1
  %nw = load atomic i32, ptr @nworkers monotonic, align 4
  %need = icmp slt i32 %nw, %want
  br i1 %need, label %grow, label %setup
grow:
  call void @spawn(i32 %want)
  br label %setup
setup:
  %nw2 = load atomic i32, ptr @nworkers monotonic, align 4
  %avail = add i32 %nw2, 1
  %fewer = icmp slt i32 %avail, %nt
  %t32 = select i1 %fewer, i32 %avail, i32 %nt
  %t = zext i32 %t32 to i64
  %tc = mul i64 %t, {CHUNKS_PER_THREAD}
  %nlt = icmp ult i64 %n, %tc
  %c = select i1 %nlt, i64 %n, i64 %tc
  %alone = icmp ule i64 %t, 1
  %one = icmp ule i64 %c, 1
  %solo = or i1 %alone, %one
  br i1 %solo, label %unclaim, label %publish
unclaim:
  store atomic i32 0, ptr @busy release, align 4
  br label %serial
publish:
  store atomic ptr %fn, ptr @job_fn monotonic, align 8
  store atomic ptr %ctx, ptr @job_ctx monotonic, align 8
  store atomic i64 %n, ptr @job_n monotonic, align 8
  store atomic i64 %c, ptr @job_chunks monotonic, align 8
  store atomic i64 %t, ptr @job_threads monotonic, align 8
  store atomic i64 0, ptr @next monotonic, align 8
  store atomic i64 0, ptr @done monotonic, align 8
  %open = atomicrmw add ptr @gen, i64 1 seq_cst
  %sl = load atomic i32, ptr @sleeping seq_cst, align 4
  %anyone = icmp sgt i32 %sl, 0
  br i1 %anyone, label %wake, label %run
wake:
  %l = call i32 @pthread_mutex_lock(ptr @mutex)
  %bc = call i32 @pthread_cond_broadcast(ptr @cond)
  %u = call i32 @pthread_mutex_unlock(ptr @mutex)
  br label %run
run:
  call void @run_chunks(ptr %fn, ptr %ctx, i64 %n, i64 %c)
  br label %wait_done
wait_done:
  %i = phi i64 [ 0, %run ], [ %i1, %wait_done_step ]
  %d = load atomic i64, ptr @done acquire, align 8
  %finished = icmp eq i64 %d, %c
  br i1 %finished, label %close, label %wait_done_step
wait_done_step:
  %i1 = add i64 %i, 1
  call void @relax(i64 %i1)
  br label %wait_done
close:
  %closed = atomicrmw add ptr @gen, i64 1 seq_cst
  br label %drain
drain:
  %j = phi i64 [ 0, %close ], [ %j1, %drain_step ]
  %a = load atomic i64, ptr @active seq_cst, align 8
  %idle = icmp eq i64 %a, 0
  br i1 %idle, label %release, label %drain_step
drain_step:
  %j1 = add i64 %j, 1
  call void @relax(i64 %j1)
  br label %drain
release:
  store atomic i32 0, ptr @busy release, align 4
  br label %out
serial:
  call void %fn(ptr %ctx, i64 0, i64 %n)
  br label %out
out:
  ret void
}}
"""


def _bind(module):
    """Called by llvm.py once the runtime module is in the engine."""
    _fns["set"] = module.cfunc("lucid_set_num_threads", None, ctypes.c_int32)
    _fns["get"] = module.cfunc("lucid_get_num_threads", ctypes.c_int32)
    _fns["cycles"] = module.cfunc("lucid_cycles", ctypes.c_int64)
    module.cfunc("lucid_runtime_init", None, ctypes.c_int32)(max(1, os.cpu_count() or 1))
    after_fork = module.cfunc("lucid_runtime_after_fork", None)
    _fns["after_fork"] = after_fork
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=after_fork)


def _runtime():
    """The runtime's entry points (loading the engine and runtime on first use)."""
    from .llvm import _engine

    _engine()
    return _fns


def _check_count(n, what):
    try:
        count = None if isinstance(n, bool) else operator.index(n)
    except TypeError:
        count = None
    if count is None or not 1 <= count <= MAX_THREADS:
        raise LucidError(f"{what} must be an integer in [1, {MAX_THREADS}], got {n!r}")
    return count


def default_num_threads():
    """LUCID_NUM_THREADS if set (validated), else os.cpu_count()."""
    env = os.environ.get("LUCID_NUM_THREADS")
    if env is None or env.strip() == "":
        return max(1, min(os.cpu_count() or 1, MAX_THREADS))
    try:
        n = int(env.strip())
    except ValueError:
        n = env
    return _check_count(n, "the environment variable LUCID_NUM_THREADS")


def apply_default_num_threads():
    """Size the pool from the environment unless set_num_threads already chose (llvm.py
    calls this at start-up; a bad LUCID_NUM_THREADS raises LucidError until fixed)."""
    if not _configured:
        _fns["set"](default_num_threads())
        _configured.append(True)


def set_num_threads(n):
    """Use `n` threads (the caller included) for parallel kernels from now on.

    Workers are created when a parallel loop first needs them; lowering the count leaves
    the extra workers idle. Overrides LUCID_NUM_THREADS."""
    n = _check_count(n, "set_num_threads(n): n")
    _configured.append(True)
    _runtime()["set"](n)


def cycles_per_second():
    """The rate of the time-stamp counter that profiled programs count in (measured once
    against time.perf_counter over 50 ms: the counter runs at a constant rate on CPUs
    with an invariant TSC, whatever the core's clock does)."""
    if not _cycle_rate:
        import time

        cycles = _runtime()["cycles"]
        c0, t0 = cycles(), time.perf_counter()
        time.sleep(0.05)
        c1, t1 = cycles(), time.perf_counter()
        _cycle_rate.append((c1 - c0) / (t1 - t0))
    return _cycle_rate[0]


def get_num_threads():
    """The number of threads (the caller included) parallel kernels use."""
    return int(_runtime()["get"]())
