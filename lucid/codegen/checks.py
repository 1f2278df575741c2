"""Index checks in native code: a bad index raises, as in eager mode, instead of reading
the wrong element.

Eager mode and the interpreter refuse an index outside an op's range (ShapeError from the
op's numpy reference). Native code cannot raise from inside a vectorised loop, so it
does two things at once: the access is still clamped (memory is never read out of bounds,
not even before the error is reported) and the out-of-range condition is recorded:

- each checked op of a kernel owns one bit of a 32-bit status word (bit k: the k-th
  checked op of the kernel's function graph, in node order; ops past the 31st share bit
  31); the status word is a stack slot of the entry function, passed to every kernel as
  the last slot of its argument table;
- a loop ORs `bad ? bit : 0` into a per-function accumulator (a branch-free reduction the
  vectoriser keeps in vector registers), and every return of the function ORs the
  accumulator into the status word once (an atomic `or`: the pool's threads share it);
- after a kernel that has checked ops the entry function reads the word and, when it is
  not zero, returns at once with the code `32 * step + bit + 1` (step: the kernel's
  position among the graph's kernels). 0 means success.

`NativeProgram.run` and the AOT wrapper (`lucid_<name>_run`'s return value) turn the code
back into the op, its node and its user-code location (`messages`).
"""
import llvmlite.ir as ir

from ..errors import CompileError
from . import irutil as U

# Ops whose lowerings clamp an index read from a tensor (and record when they had to),
# with how the error names the range. Each entry: node -> message head.
CHECKED = {
    "take": lambda n: _axis_range(n, n.inputs[0].type.shape[n.attrs["axis"]]),
    "gather": lambda n: _axis_range(n, n.inputs[0].type.shape[n.attrs["axis"]]),
    "scatter_add": lambda n: _axis_range(n, n.inputs[0].type.shape[n.attrs["axis"]]),
    "take_add": lambda n: _axis_range(n, n.attrs["size"]),
    "roi_align": lambda n: f"roi_align: a batch index is out of range for {n.inputs[0].type.shape[0]} feature maps",
    "roi_align_grad": lambda n: (f"roi_align_grad: a batch index is out of range for "
                                 f"{n.attrs['feature_shape'][0]} feature maps"),
}
BITS = 32


def _axis_range(node, n):
    return (f"{node.op}: an index is out of range for axis {node.attrs['axis']} of size {n} "
            f"(valid: {-n} to {n - 1})")


def checked_nodes(fn):
    """The nodes of function graph `fn` that own status bits, in bit order."""
    return [n for n in fn.nodes if n.op in CHECKED]


def bit_of(fn, node):
    nodes = checked_nodes(fn)
    if node not in nodes:
        raise CompileError(f"internal: {node.op} records an index error but is not a checked op")
    return min(nodes.index(node), BITS - 1)


def message(node):
    """The error message for an out-of-range index met by `node` (with its location)."""
    text = CHECKED[node.op](node) + " in compiled code"
    return text + (f" (at {node.loc})" if node.loc else "")


def messages(steps):
    """{status code: (node, message)} for every code the entry function can return;
    `steps` are (graph node, function graph) in kernel order (see program.kernels_of)."""
    out = {}
    for k, (step_node, fn) in enumerate(steps):
        for bit, node in enumerate(checked_nodes(fn)[:BITS]):
            out[BITS * k + bit + 1] = (node, message(node))
    return out


# ---- emission --------------------------------------------------------------------------

class FunctionChecks:
    """The index-check state of one LLVM function of a kernel: the status word's pointer
    (loaded from the kernel's argument table) and the accumulator (made on first use)."""

    def __init__(self, fn, status):
        self.fn, self.status, self.acc = fn, status, None


def attach(function, fn, status):
    """Let `function` (an LLVM function reading the argument table of the kernel of `fn`)
    record index errors into the status word `status` (an i32*)."""
    if getattr(function, "_lucid_checks", None) is None:
        function._lucid_checks = FunctionChecks(fn, status)


def record(E, node, bad):
    """In the function E is emitting: `bad` (i1) says `node` met an out-of-range index."""
    b = E.b
    state = getattr(b.function, "_lucid_checks", None)
    if state is None:
        raise CompileError(f"internal: {node.op}'s index check has no status word in {b.function.name}")
    if state.acc is None:
        with b.goto_entry_block():
            state.acc = b.alloca(U.I32, name="index_errors")
            b.store(ir.Constant(U.I32, 0), state.acc)
    flag = b.select(bad, ir.Constant(U.I32, 1 << bit_of(state.fn, node)), ir.Constant(U.I32, 0))
    b.store(b.or_(b.load(state.acc), flag), state.acc)


def flush(functions):
    """Before every return of each of `functions` that recorded: OR its accumulator into
    the status word (once per call: per chunk of rows on the thread pool)."""
    for function in functions:
        state = getattr(function, "_lucid_checks", None)
        if state is None or state.acc is None or getattr(state, "flushed", False):
            continue
        state.flushed = True
        for block in function.blocks:
            term = block.terminator
            if isinstance(term, ir.Ret):
                b = ir.IRBuilder(block)
                b.position_before(term)
                b.atomic_rmw("or", state.status, b.load(state.acc), "monotonic")
