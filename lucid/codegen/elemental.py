"""The elemental emitter: the LLVM value of any node's element at a given index.

A fused kernel computes its output one element at a time: the value of the output at
index `idx` is the op applied to the values of its inputs at the indices the op reads
(the same index for elementwise ops, a broadcast one, a permuted one for transpose, ...),
recursively, down to loads from the kernel's input buffers. This is how XLA's loop
fusion and TVM's inlined compute work, and it makes every elementwise, broadcast,
injective and reduction op fusable by construction.

Each op's rule lives in `lucid.codegen.lowering` (keyed by op name); this module holds
the machinery they share: the builder, index arithmetic, scoped memoisation (a value
computed inside a loop is never reused outside it), and nested reduction loops.
"""
import llvmlite.ir as ir

from ..errors import CompileError
from . import irutil as U


class Elemental:
    def __init__(self, builder, module, leaves):
        self.b = builder
        self.module = module
        self.leaves = leaves  # function-graph node -> pointer to its buffer (inputs)
        self._memo = [{}]
        self._hoist = None  # the innermost loop that invariant values are hoisted out of

    # ---- values ------------------------------------------------------------------------
    def value(self, node, idx):
        """The element of `node` at `idx` (a tuple of i64 values, one per dimension)."""
        key = (node, tuple(("k", i.constant) if isinstance(i, ir.Constant) else id(i) for i in idx))
        for scope in reversed(self._memo):
            hit = scope.get(key)
            if hit is not None:
                return hit[0]
        if node.op == "constant":
            v = U.const(node.type.dtype, node.attrs["value"])
        elif self._hoist is not None and self._hoist.invariant(idx):
            return self._hoist.evaluate(self, node, idx)
        elif node in self.leaves:
            v = self.load(node, idx)
        else:
            from .lowering import ELEMENTAL

            rule = ELEMENTAL.get(node.op)
            if rule is None:
                raise CompileError(f"no native lowering for op {node.op!r}")
            v = rule(self, node, idx)
        self._memo[-1][key] = (v, idx)  # idx kept alive so its ids stay unique
        return v

    def operand(self, node, k, idx):
        """Input `k` of `node` at the index it reads for output index `idx` (broadcast)."""
        inp = node.inputs[k]
        return self.value(inp, self.broadcast_index(idx, node.type.shape, inp.type.shape))

    def load(self, node, idx):
        ptr = self.b.gep(self.leaves[node], [self.linear(idx, node.type.shape)], inbounds=True)
        return U.load_elem(self.b, ptr, node.type.dtype)

    # ---- index arithmetic --------------------------------------------------------------------
    def linear(self, idx, shape):
        """Row-major offset of `idx` in a tensor of `shape`."""
        b = self.b
        if not shape:
            return U.i64(0)
        off = None
        stride = 1
        for i, n in zip(reversed(idx), reversed(shape)):
            if n != 1:
                term = i if stride == 1 else b.mul(i, U.i64(stride), flags=["nsw"])
                off = term if off is None else b.add(off, term, flags=["nsw"])
            stride *= n
        return off if off is not None else U.i64(0)

    def delinearize(self, lin, shape):
        b = self.b
        out = []
        for n in reversed(shape):
            if n == 1:
                out.append(U.i64(0))
            else:
                out.append(b.urem(lin, U.i64(n)))
                lin = b.udiv(lin, U.i64(n))
        return tuple(reversed(out))

    def broadcast_index(self, idx, out_shape, in_shape):
        lead = len(out_shape) - len(in_shape)
        return tuple(U.i64(0) if n == 1 else idx[lead + k] for k, n in enumerate(in_shape))

    def clamp(self, i, n):
        """`i` clamped to [0, n-1], so a load guarded by a select never leaves the buffer."""
        b = self.b
        i = b.select(b.icmp_signed("<", i, U.i64(0)), U.i64(0), i)
        return b.select(b.icmp_signed(">", i, U.i64(n - 1)), U.i64(max(n - 1, 0)), i)

    def in_range(self, i, n):
        b = self.b
        return b.and_(b.icmp_signed(">=", i, U.i64(0)), b.icmp_signed("<", i, U.i64(n)))

    # ---- loops -------------------------------------------------------------------------------
    def reduce(self, extents, init, dtype, body, combine, fast=True):
        """Fold `body(indices)` over the index space `extents` with `combine(acc, v)`.

        Runs nested loops at the current insertion point and returns the result. Values
        computed in the body stay inside its memo scope."""
        b = self.b
        slot = U.entry_alloca(b, U.value_type(dtype))
        b.store(init, slot)

        def nest(depth, idx):
            if depth == len(extents):
                self._memo.append({})
                v = body(tuple(idx))
                b.store(combine(b.load(slot), v), slot)
                self._memo.pop()
                return
            with U.loop(b, U.i64(extents[depth]), name=f"r{depth}") as i:
                nest(depth + 1, idx + [i])

        nest(0, [])
        return b.load(slot)

    def scoped(self, loop=None):
        """A context manager for a block whose values must not leak out (a loop body).

        With `loop` (the induction variable `irutil.loop` yielded, the builder in its
        body), values the body asks for at indices that do not depend on the loop -- the
        row max and row sum of a softmax, a column-broadcast bias -- are computed once
        before the loop instead of once per iteration (a reduction inside a row loop would
        otherwise cost O(width^2) per row)."""
        emitter = self

        class _Scope:
            def __enter__(self):
                self.saved = emitter._hoist
                if loop is not None:
                    emitter._hoist = _Hoist(emitter, loop)
                emitter._memo.append({})

            def __exit__(self, *exc):
                emitter._memo.pop()
                emitter._hoist = self.saved

        return _Scope()

    # ---- math --------------------------------------------------------------------------------
    def call_intrinsic(self, name, typ, *args):
        fn = U.intrinsic(self.module, name, typ, [a.type for a in args])
        return self.b.call(fn, list(args))


class _Hoist:
    """Where a loop's invariant values go: the end of its preheader, before the branch
    into the loop. Hoisted code may itself contain loops (a reduction), so the branch is
    moved to the end of whatever block the hoisted code finishes in (the new tail), and
    the loop's phi is told its entry edge now comes from there."""

    def __init__(self, emitter, phi):
        self.phi = phi
        self.depth = len(emitter._memo)  # memo scopes visible before the loop's body
        self.tail = phi.incomings[0][1]  # the preheader
        self.tails = {id(self.tail)}  # blocks on the straight path into the loop

    def invariant(self, idx):
        """Do these index values exist before the loop (constants, or computed on the
        path into it)? Anything computed in the body is treated as varying."""
        for i in idx:
            if isinstance(i, (ir.Constant, ir.Argument)):
                continue
            if not (isinstance(i, ir.Instruction) and id(i.parent) in self.tails):
                return False
        return True

    def evaluate(self, emitter, node, idx):
        b = emitter.b
        back = b.block
        term = self.tail.terminator
        self.tail.instructions.remove(term)
        self.tail.terminator = None
        b.position_at_end(self.tail)
        memo, emitter._memo = emitter._memo, emitter._memo[:self.depth]
        emitter._hoist = None
        try:
            v = emitter.value(node, idx)  # memoised in the scope outside the loop
        finally:
            emitter._memo, emitter._hoist = memo, self
        tail = b.block
        term.parent = tail
        tail.instructions.append(term)
        tail.terminator = term
        if tail is not self.tail:
            value, _ = self.phi.incomings[0]
            self.phi.incomings[0] = (value, tail)
            self.tail = tail
            self.tails.add(id(tail))
        b.position_at_end(back)
        return v


def float_suffix(dtype):
    return "f32" if dtype.name == "float32" else "f64"


__all__ = ["Elemental", "ir"]
