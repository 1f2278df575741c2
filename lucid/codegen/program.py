"""A whole optimised graph as one native entry function over one pre-planned arena.

`NativeProgram(graph)` emits one LLVM function per kernel (a fused function of the graph,
or a single op) and `lucid_entry(inputs, outputs, params, arena)`, which calls the
kernels in graph order with pointers into the arena that the memory plan laid out: no
Python runs between kernels. Kernels loop over their output rows; big ones split the
rows over the native thread pool (`lucid_parallel_for`). Identical kernels (a ResNet's
repeated blocks) share one function.

Convolution weights the graph never updates (a compiled model's frozen params) are packed
into the gemm's panel layout once, when the program is built (`prepacked_params`), and
passed to their kernels after the params: the gemm reads them as they lie.

`run(inputs, params)` checks every input's shape and dtype before the native call, and
raises the ops' own ShapeError when native code met an out-of-range index (a take, gather,
scatter or RoI batch index: lucid.codegen.checks); the outputs of that call are dropped.
"""
import ctypes
import itertools
import sys
import threading
import time

import llvmlite.ir as ir
import numpy as np

from ..errors import CompileError, DTypeError, ShapeError
from ..ir.graph import CALL, SOURCE_OPS, Attrs, Graph, Node
from . import irutil as U
from . import anchors, checks
from .elemental import Elemental
from .lowering import ELEMENTAL, KERNELS, MATH_OPS, row_reductions

PARALLEL_MIN_ELEMENTS = 1 << 14  # below this a kernel runs on the calling thread only
_LOADED = {}  # program key -> JitModule already in this process's engine
ROW_SPLIT_BELOW = 64  # with fewer output rows than this, long rows are split into blocks
COLUMN_BLOCK = 4096  # elements per block of a split row
UNROLL_LOOPS = False  # LLVM's loop unrolling on program modules: ~40% of their build time for ~5%
# of run time (lucid.codegen.llvm.optimize); True trades build time for that speed


def _single_op_function(node, name):
    """A one-op kernel as a function graph (constants inlined, other operands inputs)."""
    env, inputs, body = {}, [], []
    for i in node.inputs:
        if i in env:
            continue
        if i.op == "constant":
            env[i] = i
            body.append(i)
        else:
            env[i] = Node("input", (), Attrs(), i.type, name=f"p{len(inputs)}")
            inputs.append(env[i])
    out = Node(node.op, tuple(env[i] for i in node.inputs), node.attrs, node.type, loc=node.loc)
    operands = [i for i in dict.fromkeys(node.inputs) if i.op != "constant"]
    return Graph(name, inputs, inputs + body + [out], [out]), operands


def kernels_of(graph):
    """(step node, function graph, operand nodes) for every compute node, in order."""
    out = []
    for node in graph.compute_nodes:
        if node.op == CALL:
            out.append((node, graph.functions[node.attrs["callee"]], list(node.inputs)))
        else:
            fn, operands = _single_op_function(node, node.op)
            out.append((node, fn, operands))
    return out


def _kernel_key(fn):
    text = str(Graph("k", fn.inputs, fn.nodes, fn.outputs))
    return text


class _ModuleBuilder:
    def __init__(self, name, entry_name="lucid_entry"):
        self.entry_name = entry_name
        self.module = ir.Module(name=name)
        from .llvm import llvm_target

        self.module.triple, self.module.data_layout = llvm_target()
        self.parallel_for = None
        self.kernel_names = {}
        self.scratch_floats = 0
        self.scratch_users = set()  # kernels whose argument table holds the scratch buffer
        self._status_slot = None  # while a kernel is emitted: its table's status-word slot
        self.packed_inputs = set()  # while a kernel is emitted: its inputs given pre-packed

    def runtime_parallel_for(self):
        if self.parallel_for is None:
            body_t = ir.FunctionType(U.VOID, [U.I8P, U.I64, U.I64]).as_pointer()
            self.parallel_for = ir.Function(self.module, ir.FunctionType(U.VOID, [body_t, U.I8P, U.I64]),
                                            "lucid_parallel_for")
        return self.parallel_for

    # ---- one kernel -------------------------------------------------------------------------
    def kernel(self, fn, packed=()):
        """The kernel function's name for `fn` (built once per distinct text); `packed`: the
        positions of inputs given pre-packed (anchors.prepacked_input)."""
        key = (_kernel_key(fn), tuple(packed))
        name = self.kernel_names.get(key)
        if name is not None:
            return name
        name = f"k{len(self.kernel_names)}_{fn.name[:40]}"
        self.kernel_names[key] = name
        anchored = anchors.anchor_of(fn) is not None
        # argument table: output, inputs, [scratch], status word (see lucid.codegen.checks)
        self._status_slot = len(fn.inputs) + 1 + (1 if anchored else 0)
        known = len(self.module.globals)
        self.packed_inputs = {fn.inputs[k] for k in packed}
        try:
            self._kernel_body(name, fn, anchored)
        finally:
            self._status_slot = None
            self.packed_inputs = set()
        # Only this kernel's functions can have unflushed checks: walking the whole
        # module's function list once per kernel is quadratic over a training step's.
        added = itertools.islice(self.module.globals.values(), known, None)
        checks.flush(f for f in added if isinstance(f, ir.Function))
        return name

    def _kernel_body(self, name, fn, anchored):
        out = fn.outputs[0]
        custom = [n for n in fn.compute_nodes if n.op in KERNELS]
        if anchored:
            need = anchors.scratch_floats(fn)
            self.scratch_floats = max(self.scratch_floats, need)
            anchors.emit(self, name, fn, scratch_index=len(fn.inputs) + 1)
            self.scratch_users.add(name)
            return
        # a custom kernel may decline (None) where the op's elemental rule serves better
        built = KERNELS[custom[0].op](self, name, fn) if custom and len(fn.compute_nodes) == 1 else None
        if custom and built is None and custom[0].op not in ELEMENTAL:
            raise CompileError(f"{custom[0].op} cannot take fused epilogues (kernel {fn.name})")
        if built is not None:
            rows, body = built
        else:
            missing = sorted({n.op for n in fn.compute_nodes if n.op not in ELEMENTAL})
            if missing:
                raise CompileError(f"no native lowering for op(s) {', '.join(missing)}")
            rows, body = elemental_rows(self, name, fn, out, lambda b, ctx: self.pointers(b, ctx, fn))
        self.dispatch(name, body, rows, out.type.size)

    def pointers(self, b, ctx, fn):
        """(input node -> typed buffer pointer, output pointer) from a kernel's argument
        table `ctx`; also lets the function being built record index errors."""
        args = b.bitcast(ctx, U.I8P.as_pointer())
        if self._status_slot is not None:
            status = b.bitcast(b.load(b.gep(args, [U.i64(self._status_slot)])), U.I32.as_pointer())
            checks.attach(b.function, fn, status)
        leaves = {}
        for k, inp in enumerate(fn.inputs):
            p = b.load(b.gep(args, [U.i64(k + 1)]))
            leaves[inp] = b.bitcast(p, U.memory_type(inp.type.dtype).as_pointer())
        outp = b.bitcast(b.load(b.gep(args, [U.i64(0)])), U.memory_type(fn.outputs[0].type.dtype).as_pointer())
        return leaves, outp

    def dispatch(self, name, body, rows, size):
        kernel = ir.Function(self.module, ir.FunctionType(U.VOID, [U.I8P.as_pointer()]), name)
        kernel.linkage = "internal"
        b = ir.IRBuilder(kernel.append_basic_block("entry"))
        ctx = b.bitcast(kernel.args[0], U.I8P)
        if size >= PARALLEL_MIN_ELEMENTS and rows > 1:  # rows: work units of the body
            b.call(self.runtime_parallel_for(), [body, ctx, U.i64(rows)])
        else:
            b.call(body, [ctx, U.i64(0), U.i64(rows)])
        b.ret_void()

    # ---- the entry function -------------------------------------------------------------------
    def entry(self, graph, steps, buffer_of, output_slot, packed=(), profile=False):
        """i32 @entry(inputs, outputs, params, arena, scratch): runs the kernels in order;
        returns 0, or at the first kernel that met an out-of-range index, the status code
        of lucid.codegen.checks (the outputs are then not valid). `packed` names the params
        whose pre-packed copies follow the graph's params in the params table.

        `profile`: the entry also adds each step's time-stamp-counter cycles to the
        exported global i64 array @<entry>_cycles (one per step, then the whole call), for
        lucid.codegen.profile; two counter reads per kernel, so it is a separate build."""
        fnty = ir.FunctionType(U.I32, [U.I8P.as_pointer()] * 3 + [U.I8P, U.I8P])
        entry = ir.Function(self.module, fnty, self.entry_name)
        # Straight-line calls, one per step, thousands in a training step: the optimiser
        # has nothing to gain there (kernels must not be inlined into it) and took seconds.
        entry.attributes.add("noinline")
        entry.attributes.add("optnone")
        b = ir.IRBuilder(entry.append_basic_block("entry"))
        inputs, outputs, params, arena, scratch = entry.args
        status = b.alloca(U.I32, name="status")
        b.store(ir.Constant(U.I32, 0), status)
        status_arg = b.bitcast(status, U.I8P)
        input_pos = {n: k for k, n in enumerate(graph.inputs)}
        param_pos = {n: k for k, n in enumerate(graph.param_nodes)}

        def pointer(node):
            if node in input_pos:
                return b.load(b.gep(inputs, [U.i64(input_pos[node])]))
            if node in param_pos:
                return b.load(b.gep(params, [U.i64(param_pos[node])]))
            if node in output_slot:
                return b.load(b.gep(outputs, [U.i64(output_slot[node])]))
            offset = buffer_of(node)
            if offset is None:
                raise CompileError(f"internal: no buffer planned for {node!r}")
            return b.gep(arena, [U.i64(offset)])

        # One argument table, refilled for each kernel (calls are sequential): an alloca per
        # step made the entry block thousands of allocas long, and placing each of them
        # (llvmlite finds the insertion point by a list search) quadratic.
        width = max([len(step[2]) + 3 for step in steps] or [2])
        args = b.alloca(ir.ArrayType(U.I8P, width), name="args")
        clock = counts = None
        if profile:
            clock = U.intrinsic(self.module, "llvm.readcyclecounter", U.I64, [])
            counts = ir.GlobalVariable(self.module, ir.ArrayType(U.I64, len(steps) + 1),
                                       f"{self.entry_name}_cycles")
            counts.initializer = ir.Constant(counts.type.pointee, None)
            counts.align = 64
            start = b.call(clock, [])

        def count(k, since):
            slot = b.gep(counts, [U.i64(0), U.i64(k)], inbounds=True)
            b.store(b.add(b.load(slot), b.sub(b.call(clock, []), since)), slot)

        packed_pos = {name: len(param_pos) + k for k, name in enumerate(packed)}
        for step, (node, kernel_name, operands, fn, packed_at) in enumerate(steps):
            kernel = self.module.globals[kernel_name]
            extra = 1 if kernel_name in self.scratch_users else 0
            slots = [node] + operands
            for k, n in enumerate(slots):
                if k - 1 in packed_at:
                    p = b.load(b.gep(params, [U.i64(packed_pos[n.name])]))
                else:
                    p = pointer(n)
                b.store(p, b.gep(args, [U.i64(0), U.i64(k)]))
            if extra:
                b.store(scratch, b.gep(args, [U.i64(0), U.i64(len(slots))]))
            b.store(status_arg, b.gep(args, [U.i64(0), U.i64(len(slots) + extra)]))
            t0 = b.call(clock, []) if profile else None
            b.call(kernel, [b.bitcast(args, U.I8P.as_pointer())])
            if profile:
                count(step, t0)
            if checks.checked_nodes(fn):
                word = b.load(status)
                with b.if_then(b.icmp_unsigned("!=", word, ir.Constant(U.I32, 0)), likely=False):
                    cttz = U.intrinsic(self.module, "llvm.cttz.i32", U.I32, [U.I32, U.I1])
                    bit = b.call(cttz, [word, ir.Constant(U.I1, 1)])
                    b.ret(b.add(bit, ir.Constant(U.I32, checks.BITS * step + 1)))
        if profile:
            count(len(steps), start)
        b.ret(ir.Constant(U.I32, 0))


class NativeProgram:
    """The compiled graph: call `run(inputs, params)` with numpy arrays."""

    def __init__(self, graph, name="lucid_program", use_cache=True, profile=False):
        from . import cache
        from .llvm import jit, load_object

        anchors.ensure_gemm()
        self.graph = graph
        plan = graph.meta.get("memory")
        if plan is None:
            from ..ir.passes.memory import memory_plan

            plan = memory_plan(graph)
        self.plan = plan
        self.output_slot = {}
        for k, o in enumerate(graph.outputs):
            if o.op not in SOURCE_OPS:
                self.output_slot.setdefault(o, k)
        self.packed = prepacked_params(graph)
        self.profile = bool(profile)
        self.key = cache.program_key(str(graph) + f"\n; arena {plan.arena_size}\n; packed {self.packed}"
                                     + ("\n; profile" if profile else ""))
        self.entry_name = f"lucid_entry_{self.key[:16]}"
        loaded = _LOADED.get(self.key)
        data = cache.load(self.key) if use_cache and loaded is None else None
        self.from_cache = loaded is not None or data is not None
        self.kernel_count = None
        self.timings = {}  # phase -> seconds: "emit" (LLVM IR, Python), "llvm" (optimise, codegen, load) or "load"
        t0 = time.perf_counter()
        if loaded is not None:
            self._jit = loaded
        elif data is not None:
            self._jit = load_object(data, name)
            self.timings["load"] = time.perf_counter() - t0
        else:
            self.ir_text = self._emit(graph, name, plan)
            t1 = time.perf_counter()
            self._jit = jit(self.ir_text, name, unroll=UNROLL_LOOPS)
            self.timings.update(emit=t1 - t0, llvm=time.perf_counter() - t1)
            if use_cache:
                cache.store(self.key, self._jit.object)
        _LOADED[self.key] = self._jit
        self._entry = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.c_void_p, ctypes.c_void_p)(self._jit.address(self.entry_name))
        kernels = kernels_of(graph)
        scratch = max([anchors.scratch_floats(fn) for _, fn, _ in kernels] or [0])
        self._errors = checks.messages([(node, fn) for node, fn, _ in kernels])
        self._scratch = np.empty(scratch + 16, dtype=np.float32)
        self._scratch_ptr = (self._scratch.ctypes.data + 63) // 64 * 64
        self._arena = np.empty(plan.arena_size + 64, dtype=np.uint8)
        self._arena_ptr = (self._arena.ctypes.data + 63) // 64 * 64
        self._lock = threading.Lock()
        self._param_nodes = graph.param_nodes
        self._packs = {}  # param name -> (the array packed, its packed copy); see _packed
        for name in self.packed:
            if name in graph.params:
                self._packed(name, graph.params[name])
        self._out_pool = {}  # output slot -> arrays of earlier calls (see _output_arrays)

    def cycles(self):
        """A profiled program's time-stamp-counter cycles so far: one count per step
        (`kernels_of` order), then the whole entry calls'. Programs of one key share their
        module, and so these counts: take differences (lucid.codegen.profile does)."""
        if not self.profile:
            raise CompileError(f"{self.graph.name}: this program was not built with profile=True")
        n = len(self.graph.compute_nodes) + 1
        return np.ctypeslib.as_array((ctypes.c_int64 * n).from_address(
            self._jit.address(f"{self.entry_name}_cycles"))).copy()

    def _packed(self, name, arr):
        """The packed copy of param `name` for this call's array (anchors.pack_weight).

        Packed once, when the program is built, for the array the graph holds, and again
        only when a call passes another array: a compiled model's frozen params are
        compiled in (lucid.compiler rebuilds when one is reassigned), so packing them per
        call, as the gemm would, is work done again for the same bytes."""
        hit = self._packs.get(name)
        if hit is None or hit[0] is not arr:
            hit = self._packs[name] = (arr, anchors.pack_weight(arr))
        return hit[1]

    def _output_arrays(self):
        """This call's output arrays: earlier calls' arrays that nobody references any more.

        A fresh np.empty of 64 MiB costs page faults and the kernel's zeroing of every page
        on first write -- as much time as an elementwise kernel that fills it. An array that
        only this pool references cannot be observed by anyone, so it is written again; an
        array a caller still holds (a result, a view of it, a param it became) is left
        alone. Two arrays per slot let a training step's updated params alternate."""
        outs = []
        for k, o in enumerate(self.graph.outputs):
            if self.output_slot.get(o, -1) != k:
                outs.append(None)
                continue
            pool = self._out_pool.setdefault(k, [])
            # references when free: the pool's list, the loop variable, getrefcount's argument
            arr = next((a for a in pool if sys.getrefcount(a) <= 3), None)
            if arr is None:
                arr = np.empty(o.type.shape, o.type.dtype.np)
                pool.append(arr)
                del pool[:-2]
            outs.append(arr)
        return outs

    def error(self, status):
        """The lucid error for a non-zero status code of the entry function."""
        hit = self._errors.get(status)
        if hit is None:
            return CompileError(f"{self.graph.name}: the native code failed with status {status}")
        return ShapeError(hit[1])

    def _emit(self, graph, name, plan):
        text, self.kernel_count, _ = emit_module(graph, name, self.entry_name, plan, self.output_slot,
                                                 self.packed, self.profile)
        return text

    def run(self, inputs, params):
        """Run on `inputs` (arrays in graph-input order); `params` maps param names to arrays."""
        graph = self.graph
        if len(inputs) != len(graph.inputs):
            raise ShapeError(f"{graph.name} takes {len(graph.inputs)} inputs, got {len(inputs)}")
        arrays = []
        for node, x in zip(graph.inputs, inputs):
            arr = np.asarray(x)
            if arr.shape != node.type.shape:
                raise ShapeError(f"input %{node.name} expects shape {node.type.shape}, got {arr.shape}")
            if arr.dtype != node.type.dtype.np:
                raise DTypeError(f"input %{node.name} expects dtype {node.type.dtype}, got {arr.dtype}")
            arrays.append(_contiguous(arr))
        param_arrays = []
        for node in self._param_nodes:
            arr = params.get(node.name)
            if arr is None:
                raise CompileError(f"no value for param %{node.name}")
            arr = _contiguous(np.asarray(arr, dtype=node.type.dtype.np))
            if arr.shape != node.type.shape:
                raise ShapeError(f"param %{node.name} expects shape {node.type.shape}, got {arr.shape}")
            param_arrays.append(arr)
        with self._lock:
            param_arrays += [self._packed(name, params[name]) for name in self.packed]
            outs = self._output_arrays()
        in_table = _table(arrays)
        out_table = _table([a if a is not None else np.empty(0) for a in outs])
        param_table = _table(param_arrays)
        with self._lock:
            status = self._entry(in_table.ctypes.data, out_table.ctypes.data, param_table.ctypes.data,
                                 self._arena_ptr, self._scratch_ptr)
        if status:
            raise self.error(status)
        result = []
        by_node = {}
        for k, o in enumerate(graph.outputs):
            if outs[k] is not None:
                by_node[o] = outs[k]
        for o in graph.outputs:
            if o in by_node:
                result.append(by_node[o] if not any(r is by_node[o] for r in result) else by_node[o].copy())
            elif o.op == "input":
                result.append(arrays[graph.inputs.index(o)].copy())
            elif o.op == "param":
                result.append(param_arrays[self._param_nodes.index(o)].copy())
            else:  # a constant
                result.append(np.asarray(o.attrs["value"], dtype=o.type.dtype.np))
        return result


def _packed_at(fn, operands, packed):
    """The operand positions of a kernel that read a pre-packed copy: its conv2d weight
    (anchors.prepacked_input) when that is a param named in `packed`."""
    k = anchors.prepacked_input(fn)
    return (k,) if k is not None and operands[k].op == "param" and operands[k].name in packed else ()


def prepacked_params(graph):
    """Names of the params a compiled program gives its convolutions pre-packed (in graph
    order): conv2d weights that the graph neither updates nor marks mutable. A training
    step's weights change every call, so they stay plain."""
    live = set(graph.meta.get("updates", ())) | set(graph.meta.get("mutable", ()))
    frozen = {n.name for n in graph.param_nodes} - live
    names = [operands[k].name for _, fn, operands in kernels_of(graph) for k in _packed_at(fn, operands, frozen)]
    return tuple(dict.fromkeys(names))


def plainly_read(graph, packed):
    """Names of the params some kernel (or the graph's outputs) reads as the plain array,
    not through the pre-packed copy of `packed`."""
    names = {o.name for o in graph.outputs if o.op == "param"}
    for _, fn, operands in kernels_of(graph):
        at = _packed_at(fn, operands, packed)
        names.update(node.name for j, node in enumerate(operands) if node.op == "param" and j not in at)
    return names


def output_slots(graph):
    """Graph output node -> the slot of `outputs` the entry function writes it to (the
    first position it appears at; inputs, params and constants are not written)."""
    slots = {}
    for k, o in enumerate(graph.outputs):
        if o.op not in SOURCE_OPS:
            slots.setdefault(o, k)
    return slots


def emit_module(graph, name, entry_name, plan, output_slot, packed=(), profile=False):
    """LLVM IR text of the graph's kernels and its entry function `entry_name` (math
    functions linked in; `lucid_sgemm` and `lucid_parallel_for` only declared; the entry
    returns an i32 status, lucid.codegen.checks); also the number of distinct kernels and
    the scratch floats they need. The JIT (NativeProgram) and the AOT exporter
    (lucid.codegen.aot) both build on it. `packed`: names of params whose convolutions
    read a pre-packed copy (anchors.pack_weight), passed after the params. `profile`:
    the entry counts each step's cycles (see _ModuleBuilder.entry)."""
    mb = _ModuleBuilder(name, entry_name)
    steps = []
    for node, fn, operands in kernels_of(graph):
        packed_at = _packed_at(fn, operands, packed)
        steps.append((node, mb.kernel(fn, packed_at), operands, fn, packed_at))

    def buffer_of(node):
        hit = plan.buffer_of(node)
        return None if hit is None else hit[0]

    mb.entry(graph, steps, buffer_of, output_slot, packed, profile)
    return _link_math(U.finish_loop_ids(str(mb.module))), len(mb.kernel_names), mb.scratch_floats


def elemental_rows(mb, name, fn, out, pointers):
    """@name(ctx, begin, end): work units [begin, end) of `out`, computed elementally.

    The output is seen as rows (all but the last dimension) of `width` elements; a unit
    is one row, or, when there are too few rows to keep every thread busy, one block of
    a row. The innermost loop runs along a row, which LLVM vectorises.
    `pointers(builder, ctx)` gives (leaf node -> buffer pointer, output pointer)."""
    shape = out.type.shape
    lead, width = (shape[:-1], shape[-1]) if shape else ((), 1)
    rows = int(np.prod(lead, dtype=np.int64)) if lead else 1
    blocks = 1
    # A row reduction fused in (softmax's max and sum) is computed once per unit: split
    # rows would each redo it over the whole row, `blocks` times the work.
    if rows < ROW_SPLIT_BELOW and width >= 2 * COLUMN_BLOCK and not row_reductions(fn):
        blocks = -(-width // COLUMN_BLOCK)
    block = -(-width // blocks)
    # Bodies with transcendentals: 4 vectors in flight (irutil.interleave_hint); gelu(x*w + b)
    # over 16M values runs 1.3x faster, exp 1.2x.
    hint = U.interleave_hint(mb.module, 4) if any(n.op in MATH_OPS for n in fn.nodes) else None
    body = ir.Function(mb.module, ir.FunctionType(U.VOID, [U.I8P, U.I64, U.I64]), f"{name}.rows")
    body.linkage = "internal"
    b = ir.IRBuilder(body.append_basic_block("entry"))
    ctx, begin, end = body.args
    leaves, outp = pointers(b, ctx)
    E = Elemental(b, mb.module, leaves)
    with U.loop(b, end, start=begin, name="unit") as u:
        with E.scoped():
            r = b.udiv(u, U.i64(blocks)) if blocks > 1 else u
            row_idx = E.delinearize(r, lead)
            base = b.mul(r, U.i64(width))
            if blocks > 1:
                first = b.mul(b.urem(u, U.i64(blocks)), U.i64(block))
                stop = b.add(first, U.i64(block))
                stop = b.select(b.icmp_signed(">", stop, U.i64(width)), U.i64(width), stop)
            else:
                first, stop = U.i64(0), U.i64(width)
            with U.loop(b, stop, start=first, name="col", hint=hint) as c:
                with E.scoped(loop=c):  # row-invariant values (softmax's row max) hoisted
                    idx = row_idx + (c,) if shape else ()
                    v = E.value(out, idx)
                    U.store_elem(b, v, b.gep(outp, [b.add(base, c)], inbounds=True), out.type.dtype)
    b.ret_void()
    return rows * blocks, body


def _contiguous(arr):
    """`arr` as a C-contiguous array of the same shape (np.ascontiguousarray makes 0-d 1-d)."""
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _table(arrays):
    return np.array([a.ctypes.data for a in arrays] or [0], dtype=np.uintp)


def _link_math(text):
    from .mathlib_glue import link_math

    return link_math(text)
