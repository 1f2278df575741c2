"""Fixtures shared by the code generator's tests."""
import pytest

from lucid.codegen import runtime


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Run the test with the native thread pool at 1, then 2 threads."""
    before = runtime.get_num_threads()
    runtime.set_num_threads(request.param)
    yield request.param
    runtime.set_num_threads(before)


def _module_text(fn, *arrays):
    """The LLVM IR text lucid emits for `fn` traced on `arrays` (optimised at level 2)."""
    import lucid
    from lucid.codegen.program import emit_module, output_slots
    from lucid.ir.passes import PassManager
    from lucid.ir.passes.pipelines import pipeline

    graph = PassManager(pipeline(2)).run(lucid.trace(fn, *[lucid.tensor(a) for a in arrays]))
    return emit_module(graph, "m", "lucid_entry_t", graph.meta["memory"], output_slots(graph))[0]


@pytest.fixture
def module_text():
    """`module_text(fn, *arrays)`: the module's IR text, for tests of what is emitted."""
    return _module_text
