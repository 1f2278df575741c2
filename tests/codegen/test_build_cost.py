"""What keeps building a big program cheap: the entry function is left unoptimised (so
LLVM never inlines the kernels into one huge function, which made optimising a training
step's module superlinear), it reuses one argument table, and program modules skip loop
unrolling. The results must not change."""
import re

import numpy as np

import lucid
import lucid.nn as nn
from lucid.codegen import llvm
from lucid.codegen.program import NativeProgram, emit_module, output_slots
from lucid.ir.passes import PassManager
from lucid.ir.passes.pipelines import pipeline


def _graph(steps=6):
    layers = []
    for _ in range(steps):
        layers += [nn.Linear(8, 8), nn.Tanh()]
    model = nn.Sequential(*layers).eval()
    x = lucid.random.randn(3, 8)
    return model, x, PassManager(pipeline(2)).run(lucid.trace(model, x))


def test_entry_is_optnone_with_one_argument_table_and_calls_every_kernel():
    _, _, graph = _graph()
    text, kernels, _ = emit_module(graph, "m", "lucid_entry_t", graph.meta["memory"], output_slots(graph))
    entry = re.search(r"define i32 @\"?lucid_entry_t\"?\(.*?\n}\n", text, re.S).group(0)
    import llvmlite.binding as binding

    attributes = {word for a in binding.parse_assembly(text).get_function("lucid_entry_t").attributes
                  for word in bytes(a).decode().split()}
    assert {"optnone", "noinline"} <= attributes
    assert len(re.findall(r"alloca \[\d+ x i8\*\]|alloca \[\d+ x ptr\]", entry)) == 1
    steps = len(graph.compute_nodes)
    assert len(re.findall(r"call void @", entry)) == steps and kernels < steps  # same layers share kernels
    optimised = llvm.optimized_ir(text)
    kept = re.search(r"define [^\n]*@\"?lucid_entry_t\"?\(.*?\n}\n", optimised, re.S).group(0)
    assert len(re.findall(r"call (?:fastcc )?void @", kept)) == steps  # no kernel was inlined into it


def test_program_still_computes_the_model():
    model, x, graph = _graph()
    program = NativeProgram(graph, name="build_cost", use_cache=False)
    (y,) = program.run([x.data], graph.params)
    np.testing.assert_allclose(y, model(x).data, rtol=1e-5, atol=1e-6)
    assert set(program.timings) == {"emit", "llvm"}


LOOP = """
define void @f(ptr %out, float %x0) {
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %x = phi float [ %x0, %entry ], [ %y, %loop ]
  %sq = fmul float %x, %x
  %y = fadd float %sq, 1.0
  %p = getelementptr float, ptr %out, i64 %i
  store float %y, ptr %p
  %next = add i64 %i, 1
  %done = icmp eq i64 %next, 8
  br i1 %done, label %exit, label %loop
exit:
  ret void
}
"""


def _optimised(unroll):
    import llvmlite.binding as binding

    mod = binding.parse_assembly(LOOP)
    llvm.optimize(mod, unroll=unroll)
    return str(mod)


def test_optimize_without_unroll_keeps_a_constant_trip_count_loop():
    assert "phi" not in _optimised(True)  # fully unrolled: 8 straight-line stores
    rolled = _optimised(False)
    assert "phi" in rolled and rolled.count("store float") == 1
