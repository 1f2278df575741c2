"""The JIT engine (lucid/codegen/llvm.py) and the native thread pool (runtime.py).

Anything that could hang (the pool under stress, nesting, interpreter exit, fork) runs in
a subprocess with a timeout, so a deadlock fails the test instead of freezing the suite.
"""
import ctypes
import os
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import llvmlite.binding as llvm

from lucid.codegen import (asm, get_num_threads, jit, llvm_target, load_object, object_code,
                           set_num_threads)
from lucid.errors import CompileError, LucidError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# fill(out: i64*, cnt: i32*, calls: i64*, n): out[i] = 3i + 1 and cnt[i] += 1 for every i
# in [0, n), through lucid_parallel_for; `calls` counts the chunks that ran.
FILL_IR = r"""
declare void @lucid_parallel_for(ptr, ptr, i64)

define internal void @chunk(ptr %ctx, i64 %b, i64 %e) {
entry:
  %outp = getelementptr { ptr, ptr, ptr }, ptr %ctx, i32 0, i32 0
  %out = load ptr, ptr %outp
  %cntp = getelementptr { ptr, ptr, ptr }, ptr %ctx, i32 0, i32 1
  %cnt = load ptr, ptr %cntp
  %callsp = getelementptr { ptr, ptr, ptr }, ptr %ctx, i32 0, i32 2
  %calls = load ptr, ptr %callsp
  %old = atomicrmw add ptr %calls, i64 1 seq_cst
  %empty = icmp sge i64 %b, %e
  br i1 %empty, label %exit, label %loop
loop:
  %i = phi i64 [ %b, %entry ], [ %i1, %loop ]
  %f = mul i64 %i, 3
  %f1 = add i64 %f, 1
  %op = getelementptr i64, ptr %out, i64 %i
  store i64 %f1, ptr %op
  %cp = getelementptr i32, ptr %cnt, i64 %i
  %c = load i32, ptr %cp
  %c1 = add i32 %c, 1
  store i32 %c1, ptr %cp
  %i1 = add i64 %i, 1
  %fin = icmp eq i64 %i1, %e
  br i1 %fin, label %exit, label %loop
exit:
  ret void
}

define void @fill(ptr %out, ptr %cnt, ptr %calls, i64 %n) {
  %ctx = alloca { ptr, ptr, ptr }
  %p0 = getelementptr { ptr, ptr, ptr }, ptr %ctx, i32 0, i32 0
  store ptr %out, ptr %p0
  %p1 = getelementptr { ptr, ptr, ptr }, ptr %ctx, i32 0, i32 1
  store ptr %cnt, ptr %p1
  %p2 = getelementptr { ptr, ptr, ptr }, ptr %ctx, i32 0, i32 2
  store ptr %calls, ptr %p2
  call void @lucid_parallel_for(ptr @chunk, ptr %ctx, i64 %n)
  ret void
}
"""

# nested(out: i32*, rows, m): a parallel loop over rows whose chunks run a parallel loop
# over the row's m columns, each adding 1 to out[r*m + j]
NESTED_IR = r"""
declare void @lucid_parallel_for(ptr, ptr, i64)

define internal void @inner(ptr %ctx, i64 %b, i64 %e) {
entry:
  %row = load ptr, ptr %ctx
  %empty = icmp sge i64 %b, %e
  br i1 %empty, label %exit, label %loop
loop:
  %j = phi i64 [ %b, %entry ], [ %j1, %loop ]
  %p = getelementptr i32, ptr %row, i64 %j
  %v = load i32, ptr %p
  %v1 = add i32 %v, 1
  store i32 %v1, ptr %p
  %j1 = add i64 %j, 1
  %fin = icmp eq i64 %j1, %e
  br i1 %fin, label %exit, label %loop
exit:
  ret void
}

define internal void @outer(ptr %ctx, i64 %b, i64 %e) {
entry:
  %ictx = alloca ptr
  %out = load ptr, ptr %ctx
  %mp = getelementptr { ptr, i64 }, ptr %ctx, i32 0, i32 1
  %m = load i64, ptr %mp
  %empty = icmp sge i64 %b, %e
  br i1 %empty, label %exit, label %loop
loop:
  %r = phi i64 [ %b, %entry ], [ %r1, %loop ]
  %off = mul i64 %r, %m
  %row = getelementptr i32, ptr %out, i64 %off
  store ptr %row, ptr %ictx
  call void @lucid_parallel_for(ptr @inner, ptr %ictx, i64 %m)
  %r1 = add i64 %r, 1
  %fin = icmp eq i64 %r1, %e
  br i1 %fin, label %exit, label %loop
exit:
  ret void
}

define void @nested(ptr %out, i64 %rows, i64 %m) {
  %ctx = alloca { ptr, i64 }
  store ptr %out, ptr %ctx
  %mp = getelementptr { ptr, i64 }, ptr %ctx, i32 0, i32 1
  store i64 %m, ptr %mp
  call void @lucid_parallel_for(ptr @outer, ptr %ctx, i64 %rows)
  ret void
}
"""

# heavy(out: float*, n, iters): out[i] = iters steps of x <- 0.999 x + 0.5 from x = i;
# a dependent FMA chain per element: compute-bound, for the 1 vs 2 threads check
HEAVY_IR = r"""
declare void @lucid_parallel_for(ptr, ptr, i64)
declare float @llvm.fmuladd.f32(float, float, float)

define internal void @heavy_chunk(ptr %ctx, i64 %b, i64 %e) {
entry:
  %out = load ptr, ptr %ctx
  %itp = getelementptr { ptr, i64 }, ptr %ctx, i32 0, i32 1
  %iters = load i64, ptr %itp
  %empty = icmp sge i64 %b, %e
  br i1 %empty, label %exit, label %outer
outer:
  %i = phi i64 [ %b, %entry ], [ %i1, %store ]
  %x0 = sitofp i64 %i to float
  br label %inner
inner:
  %k = phi i64 [ 0, %outer ], [ %k1, %inner ]
  %x = phi float [ %x0, %outer ], [ %x1, %inner ]
  %x1 = call float @llvm.fmuladd.f32(float %x, float 0x3FEFF7CEE0000000, float 0.5)
  %k1 = add i64 %k, 1
  %more = icmp slt i64 %k1, %iters
  br i1 %more, label %inner, label %store
store:
  %p = getelementptr float, ptr %out, i64 %i
  store float %x1, ptr %p
  %i1 = add i64 %i, 1
  %fin = icmp eq i64 %i1, %e
  br i1 %fin, label %exit, label %outer
exit:
  ret void
}

define void @heavy(ptr %out, i64 %n, i64 %iters) {
  %ctx = alloca { ptr, i64 }
  store ptr %out, ptr %ctx
  %itp = getelementptr { ptr, i64 }, ptr %ctx, i32 0, i32 1
  store i64 %iters, ptr %itp
  call void @lucid_parallel_for(ptr @heavy_chunk, ptr %ctx, i64 %n)
  ret void
}
"""

# record(ranges: i64*, calls: i64*, n, cap): every chunk appends (begin, end, pthread_self)
# to ranges (while fewer than cap were recorded) through lucid_parallel_for
RECORD_IR = r"""
declare void @lucid_parallel_for(ptr, ptr, i64)
declare i64 @pthread_self()

define internal void @rec(ptr %ctx, i64 %b, i64 %e) {
entry:
  %ranges = load ptr, ptr %ctx
  %callsp = getelementptr { ptr, ptr, i64 }, ptr %ctx, i32 0, i32 1
  %calls = load ptr, ptr %callsp
  %capp = getelementptr { ptr, ptr, i64 }, ptr %ctx, i32 0, i32 2
  %cap = load i64, ptr %capp
  %k = atomicrmw add ptr %calls, i64 1 seq_cst
  %room = icmp ult i64 %k, %cap
  br i1 %room, label %put, label %exit
put:
  %tid = call i64 @pthread_self()
  %i0 = mul i64 %k, 3
  %p0 = getelementptr i64, ptr %ranges, i64 %i0
  store i64 %b, ptr %p0
  %p1 = getelementptr i64, ptr %p0, i64 1
  store i64 %e, ptr %p1
  %p2 = getelementptr i64, ptr %p0, i64 2
  store i64 %tid, ptr %p2
  br label %exit
exit:
  ret void
}

define void @record(ptr %ranges, ptr %calls, i64 %n, i64 %cap) {
  %ctx = alloca { ptr, ptr, i64 }
  store ptr %ranges, ptr %ctx
  %p1 = getelementptr { ptr, ptr, i64 }, ptr %ctx, i32 0, i32 1
  store ptr %calls, ptr %p1
  %p2 = getelementptr { ptr, ptr, i64 }, ptr %ctx, i32 0, i32 2
  store i64 %cap, ptr %p2
  call void @lucid_parallel_for(ptr @rec, ptr %ctx, i64 %n)
  ret void
}
"""


def expected_chunks(threads, n):
    """How many chunks one uncontended lucid_parallel_for(fn, ctx, n) runs: none for an
    empty range, one (the caller's whole range) with one thread or one unit, else up to
    CHUNKS_PER_THREAD per thread but never more than the n units."""
    from lucid.codegen.runtime import CHUNKS_PER_THREAD

    if n <= 0:
        return 0
    if threads == 1 or n == 1:
        return 1
    return min(n, threads * CHUNKS_PER_THREAD)


SAXPY_IR = r"""
declare float @llvm.fmuladd.f32(float, float, float)

define void @saxpy(float %a, float* noalias %x, float* noalias %y, i64 %n) {
entry:
  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %exit, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %loop ]
  %xp = getelementptr float, float* %x, i64 %i
  %xv = load float, float* %xp
  %yp = getelementptr float, float* %y, i64 %i
  %yv = load float, float* %yp
  %r = call float @llvm.fmuladd.f32(float %a, float %xv, float %yv)
  store float %r, float* %yp
  %i1 = add i64 %i, 1
  %fin = icmp eq i64 %i1, %n
  br i1 %fin, label %exit, label %loop
exit:
  ret void
}
"""

_P = ctypes.c_void_p
_I64 = ctypes.c_int64


def run_py(code, timeout=60, env=None):
    """Run a Python snippet in a fresh interpreter (lucid importable); its stdout."""
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.pop("LUCID_NUM_THREADS", None)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture
def restore_threads():
    before = get_num_threads()
    yield
    set_num_threads(before)


# ---------------------------------------------------------------------------- the JIT

def test_jit_trivial_function_through_ctypes():
    triple, layout = llvm_target()
    text = (f'target triple = "{triple}"\ntarget datalayout = "{layout}"\n'
            "define i64 @triple_plus(i64 %x) {\n  %y = mul i64 %x, 3\n  %z = add i64 %y, 1\n"
            "  ret i64 %z\n}\n")
    mod = jit(text, "trivial")
    f = mod.cfunc("triple_plus", _I64, _I64)
    assert [f(v) for v in (0, 5, -7)] == [1, 16, -20]
    assert mod.symbols == ("triple_plus",)
    assert jit(text, "again") is mod  # identical text is compiled once


def test_typed_pointer_spelling_is_accepted():
    text = ("define void @store_sum(i64* %p, i8* %q) {\n  %c = bitcast i8* %q to i64*\n"
            "  %a = load i64, i64* %p\n  %b = load i64, i64* %c\n  %s = add i64 %a, %b\n"
            "  store i64 %s, i64* %p\n  ret void\n}\n")
    a, b = ctypes.c_int64(40), ctypes.c_int64(2)
    jit(text, "typed").cfunc("store_sum", None, _P, _P)(ctypes.addressof(a), ctypes.addressof(b))
    assert a.value == 42


def test_exported_name_clash_is_renamed_but_found_by_its_written_name():
    one = jit("define i32 @clash_fn() {\n  ret i32 1\n}\n", "one")
    two = jit("define i32 @clash_fn() {\n  ret i32 2\n}\n", "two")
    assert one.cfunc("clash_fn", ctypes.c_int32)() == 1
    assert two.cfunc("clash_fn", ctypes.c_int32)() == 2


def test_missing_symbol_and_unresolved_external_are_compile_errors():
    mod = jit("define i32 @only_this() {\n  ret i32 0\n}\n", "only")
    with pytest.raises(CompileError, match="no exported symbol 'nope'.*only_this"):
        mod.address("nope")
    # MCJIT would abort the process on this; lucid refuses it first
    with pytest.raises(CompileError, match="unresolved external symbol.*no_such_function_xyz"):
        jit("declare i32 @no_such_function_xyz()\ndefine i32 @calls_missing() {\n"
            "  %v = call i32 @no_such_function_xyz()\n  ret i32 %v\n}\n", "missing")


def test_syntax_error_shows_the_offending_line():
    text = "define i32 @f(i32 %a) {\n  %b = add i32 %a, 1\n  %c = mul i32 %b, %zz\n  ret i32 %c\n}\n"
    with pytest.raises(CompileError) as info:
        jit(text, "broken")
    msg = str(info.value)
    assert "'broken'" in msg and "line 3" in msg and "%zz" in msg
    assert "%c = mul i32 %b, %zz" in msg


def test_verifier_error_shows_the_offending_line():
    text = ("define i32 @g(i32 %a) {\nentry:\n  br label %x\nx:\n  %c = add i32 %d, 1\n"
            "  br label %y\ny:\n  %d = add i32 %a, 1\n  ret i32 %c\n}\n")
    with pytest.raises(CompileError) as info:
        jit(text, "undominated")
    msg = str(info.value)
    assert "does not dominate" in msg and "at lines 5, 8" in msg
    assert ">    5 |   %c = add i32 %d, 1" in msg and ">    8 |   %d = add i32 %a, 1" in msg
    with pytest.raises(CompileError, match="expected LLVM IR text"):
        jit(b"bytes", "notext")


def test_saxpy_is_vectorised_with_ymm_fma_and_correct():
    features = llvm.get_host_cpu_features()
    if not (features.get("avx2") and features.get("fma")):
        pytest.skip("host has no AVX2+FMA")
    text = asm(SAXPY_IR)
    fma = [line for line in text.splitlines() if re.search(r"\bvfmadd\w*\b.*%ymm", line)]
    assert fma, text
    saxpy = jit(SAXPY_IR, "saxpy").cfunc("saxpy", None, ctypes.c_float, _P, _P, _I64)
    x = np.linspace(-3, 3, 1003, dtype=np.float32)
    y = np.cos(x).astype(np.float32)
    expect = np.float32(1.5) * x + y
    saxpy(1.5, x.ctypes.data, y.ctypes.data, len(x))
    np.testing.assert_allclose(y, expect, rtol=1e-6, atol=1e-6)


def test_object_code_round_trip_in_a_fresh_process(tmp_path):
    path = tmp_path / "fill.o"
    path.write_bytes(object_code(FILL_IR, "fill"))
    out = run_py(f"""
        import ctypes, numpy as np
        import llvmlite.binding as llvm
        from lucid.codegen import llvm as L, load_object, set_num_threads
        L._engine()                          # engine + runtime module first
        def refuse(*a, **k):
            raise AssertionError("LLVM IR was parsed or optimised")
        llvm.parse_assembly = refuse
        L.optimize = refuse
        set_num_threads(3)
        data = open({str(path)!r}, "rb").read()
        mod = load_object(data, "fill")
        assert load_object(data, "fill again") is mod
        fill = mod.cfunc("fill", None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                         ctypes.c_int64)
        n = 1001
        out, cnt, calls = np.zeros(n, np.int64), np.zeros(n, np.int32), np.zeros(1, np.int64)
        fill(out.ctypes.data, cnt.ctypes.data, calls.ctypes.data, n)
        assert (out == 3 * np.arange(n) + 1).all() and (cnt == 1).all(), (out, cnt)
        print("ok", calls[0])
    """)
    assert out.split() == ["ok", str(expected_chunks(3, 1001))]
    with pytest.raises(CompileError, match="not a little-endian ELF64"):
        load_object(b"definitely not an object", "junk")


# ---------------------------------------------------------------------------- the pool

def test_num_threads_round_trip_and_bad_values(restore_threads):
    for n in (1, 3, 8, np.int64(5), 2):
        set_num_threads(n)
        assert get_num_threads() == n
    for bad in (0, -1, 1.5, True, "2", None, 10**6):
        with pytest.raises(LucidError, match="set_num_threads"):
            set_num_threads(bad)
    assert get_num_threads() == 2


def test_num_threads_from_environment():
    assert run_py("from lucid.codegen import get_num_threads; print(get_num_threads())",
                  env={"LUCID_NUM_THREADS": "3"}).strip() == "3"
    assert run_py("import os; from lucid.codegen import get_num_threads;"
                  "print(get_num_threads() == os.cpu_count())").strip() == "True"
    out = run_py("""
        from lucid.codegen import get_num_threads, jit, set_num_threads
        from lucid.errors import LucidError
        for call in (get_num_threads, lambda: jit("define void @f() {\\n  ret void\\n}", "f")):
            try:
                call()
            except LucidError as e:
                print("refused:", e)
        set_num_threads(2)          # an explicit choice overrides the bad variable
        print(get_num_threads())
    """, env={"LUCID_NUM_THREADS": "lots"})
    lines = out.strip().splitlines()
    assert len(lines) == 3 and all("LUCID_NUM_THREADS" in l and "'lots'" in l for l in lines[:2])
    assert lines[2] == "2"


def test_parallel_for_covers_every_index_once_under_stress():
    """n in {0, 1, 3, 1000, 1e6} x threads {1, 2, 3, 8} x 200 calls, checked each call
    (the 1e6 arrays are checked on every 10th call and by their totals), and the number
    of chunks each call ran."""
    want = {(t, n): expected_chunks(t, n) for t in (1, 2, 3, 8) for n in (0, 1, 3, 1000, 10**6)}
    out = run_py(f"""
        import ctypes, numpy as np
        from lucid.codegen import jit, set_num_threads
        chunks = {want!r}
        fill = jit({FILL_IR!r}, "fill").cfunc("fill", None, ctypes.c_void_p, ctypes.c_void_p,
                                              ctypes.c_void_p, ctypes.c_int64)
        for threads in (1, 2, 3, 8):
            set_num_threads(threads)
            for n in (0, 1, 3, 1000, 10**6):
                out = np.zeros(max(n, 1), np.int64)
                cnt = np.zeros(max(n, 1), np.int32)
                calls = np.zeros(1, np.int64)
                want = 3 * np.arange(n) + 1
                for rep in range(1, 201):
                    fill(out.ctypes.data, cnt.ctypes.data, calls.ctypes.data, n)
                    if n < 10**6 or rep % 10 == 0:
                        assert (cnt[:n] == rep).all(), (threads, n, rep)
                        assert (out[:n] == want).all(), (threads, n, rep)
                assert calls[0] == 200 * chunks[threads, n], (threads, n, calls[0])
        print("ok")
    """, timeout=120)
    assert out.strip() == "ok"


def test_parallel_for_chunks_are_disjoint_bounded_and_shared_with_the_caller():
    """The contract kernels rely on: the chunks of one call tile [0, n) exactly (disjoint,
    contiguous, none empty, equal to within one unit), there are at most
    CHUNKS_PER_THREAD per thread and never more than n, and the caller runs chunks too
    (all of them with one thread). Which thread runs which chunk is not fixed.
    (test_parallel_for_covers_every_index_once_under_stress checks the exact count.)"""
    sizes = (1, 2, 5, 16, 17, 100, 1000, 100003)
    want = {(t, n): expected_chunks(t, n) for t in (1, 2, 3, 8) for n in sizes}
    out = run_py(f"""
        import ctypes, numpy as np
        from lucid.codegen import jit, set_num_threads
        from lucid.codegen.runtime import CHUNKS_PER_THREAD
        record = jit({RECORD_IR!r}, "record").cfunc("record", None, ctypes.c_void_p,
                                                    ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
        libc = ctypes.CDLL(None)
        libc.pthread_self.restype = ctypes.c_uint64
        me = libc.pthread_self()
        chunks, cap = {want!r}, 4096
        for threads in (1, 2, 3, 8):
            set_num_threads(threads)
            mine = 0
            for n in {sizes!r}:
                for rep in range(30):
                    ranges = np.zeros((cap, 3), np.uint64)
                    calls = np.zeros(1, np.int64)
                    record(ranges.ctypes.data, calls.ctypes.data, n, cap)
                    k = int(calls[0])
                    # exactly chunks[threads, n] unless the system refused a worker thread
                    assert 1 <= k <= chunks[threads, n] <= min(n, threads * CHUNKS_PER_THREAD), (threads, n, k)
                    r = ranges[:k][np.argsort(ranges[:k, 0])]
                    b, e = r[:, 0].astype(np.int64), r[:, 1].astype(np.int64)
                    assert b[0] == 0 and e[-1] == n and (b[1:] == e[:-1]).all(), (threads, n, r)
                    size = e - b
                    assert size.min() >= 1 and size.max() - size.min() <= 1, (threads, n, size)
                    ran_here = int((r[:, 2] == me).sum())
                    if threads == 1:
                        assert ran_here == k, (n, ran_here, k)
                    mine += ran_here
            # the caller takes part (in any one call the workers may have claimed every chunk)
            assert mine > 0, threads
        print("ok")
    """, timeout=120)
    assert out.strip() == "ok"


def test_concurrent_callers_and_nested_parallel_for():
    out = run_py(f"""
        import ctypes, threading, numpy as np
        from lucid.codegen import jit, set_num_threads
        nested = jit({NESTED_IR!r}, "nested").cfunc("nested", None, ctypes.c_void_p,
                                                    ctypes.c_int64, ctypes.c_int64)
        fill = jit({FILL_IR!r}, "fill").cfunc("fill", None, ctypes.c_void_p, ctypes.c_void_p,
                                              ctypes.c_void_p, ctypes.c_int64)
        for threads in (1, 2, 3, 8):
            set_num_threads(threads)
            for rows, m in ((1, 1000), (7, 33), (64, 4096)):
                out = np.zeros(rows * m, np.int32)
                for rep in range(1, 21):
                    nested(out.ctypes.data, rows, m)
                    assert (out == rep).all(), (threads, rows, m, rep)
        # several Python threads at once: one of them gets the pool, the others run
        # their loops serially; every result is still exact
        set_num_threads(3)
        def worker(errors):
            n = 100003
            out, cnt, calls = np.zeros(n, np.int64), np.zeros(n, np.int32), np.zeros(1, np.int64)
            for rep in range(1, 101):
                fill(out.ctypes.data, cnt.ctypes.data, calls.ctypes.data, n)
            if not ((cnt == 100).all() and (out == 3 * np.arange(n) + 1).all()):
                errors.append("wrong")
        errors = []
        ts = [threading.Thread(target=worker, args=(errors,)) for _ in range(4)]
        for t in ts: t.start()
        for t in ts: t.join()
        assert not errors
        print("ok")
    """, timeout=120)
    assert out.strip() == "ok"


def test_interpreter_exit_and_fork_do_not_hang():
    # exit right after jobs (workers spinning) and after they fell asleep
    for pause in (0.0, 0.3):
        out = run_py(f"""
            import ctypes, time, numpy as np
            from lucid.codegen import jit, set_num_threads
            fill = jit({FILL_IR!r}, "fill").cfunc("fill", None, ctypes.c_void_p,
                                                  ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
            set_num_threads(8)
            n = 10000
            out, cnt, calls = np.zeros(n, np.int64), np.zeros(n, np.int32), np.zeros(1, np.int64)
            for _ in range(50):
                fill(out.ctypes.data, cnt.ctypes.data, calls.ctypes.data, n)
            time.sleep({pause})
            print("bye")
        """, timeout=20)
        assert out.strip() == "bye"
    if not hasattr(os, "fork"):
        return
    out = run_py(f"""
        import ctypes, os, numpy as np
        from lucid.codegen import jit, set_num_threads
        fill = jit({FILL_IR!r}, "fill").cfunc("fill", None, ctypes.c_void_p, ctypes.c_void_p,
                                              ctypes.c_void_p, ctypes.c_int64)
        set_num_threads(3)
        n = 5000
        def run():
            out, cnt, calls = np.zeros(n, np.int64), np.zeros(n, np.int32), np.zeros(1, np.int64)
            for _ in range(20):
                fill(out.ctypes.data, cnt.ctypes.data, calls.ctypes.data, n)
            return (cnt == 20).all() and calls[0] == 20 * {expected_chunks(3, 5000)}
        assert run()
        pid = os.fork()
        if pid == 0:
            os._exit(0 if run() else 1)   # the child's pool starts its own workers
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert run()
        print("ok")
    """, timeout=30)
    assert out.strip() == "ok"


def test_two_threads_speed_sanity(restore_threads):
    """Printed, not asserted (run pytest -s to see it): a compute-bound loop, 2 vs 1 thread."""
    heavy = jit(HEAVY_IR, "heavy").cfunc("heavy", None, _P, _I64, _I64)
    n, iters = 4096, 3000
    out = np.zeros(n, np.float32)

    def best(threads):
        set_num_threads(threads)
        heavy(out.ctypes.data, n, iters)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            heavy(out.ctypes.data, n, iters)
            times.append(time.perf_counter() - t)
        return min(times)

    one, two = best(1), best(2)
    x = np.arange(n, dtype=np.float64)
    for _ in range(iters):
        x = 0.999 * x + 0.5
    np.testing.assert_allclose(out, x, rtol=1e-3)
    print(f"\nparallel_for speed: 1 thread {one * 1e3:.2f} ms, 2 threads {two * 1e3:.2f} ms, "
          f"speed-up {one / two:.2f}x")
