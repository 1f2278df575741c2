"""Memory planning: every intermediate value of the main graph gets an offset in one arena.

The compiled entry function runs the main graph's nodes in order (one node, plain op or
`call` of a fused kernel, per step) over a single pre-allocated arena, so buffers are
planned statically, once, here:

1. Which values need arena memory: every computed value that is not a graph output.
   Inputs, params and constants live elsewhere; outputs live in memory the caller owns.
2. Liveness: a value is live from the step that computes it to the last step that reads it.
3. In-place reuse: a node may write its result over an input's buffer when that input dies
   at this node and the node is elementwise in it (`can_write_over`, the rule the code
   generator follows as well). Values chained this way share one storage slot whose live
   range is the union of theirs.
4. Placement: slots go into the arena with the static greedy heuristics of TFLite's
   planners (Pisarchyk & Lee, "Efficient Memory Management for Deep Neural Net
   Inference", 2020): greedy by size and greedy by breadth, each putting a slot at the
   lowest 64-byte-aligned offset that overlaps no slot live at the same time. The
   smaller of the two arenas wins.

The result is a `MemoryPlan` in `graph.meta["memory"]`, with the figures that say how good
it is: the arena against the lower bound (the most bytes ever live at once) and against
the naive sum (one buffer per value).
"""
from dataclasses import dataclass

import numpy as np

from ...errors import CompileError
from ...ops.registry import BROADCAST, ELEMENTWISE, OPAQUE, OUT_FUSABLE, REDUCE, get_op
from ..graph import CALL, SOURCE_OPS, Graph, Node
from .manager import graph_pass

ALIGNMENT = 64  # bytes: a cache line, and the widest vector load (AVX-512)


def _align(n, alignment=ALIGNMENT):
    return -(-n // alignment) * alignment


@dataclass(frozen=True)
class Buffer:
    """Where one value lives: bytes [offset, offset + size) of the arena.

    `first_step`/`last_step` are the value's own live range (the step that computes it and
    the last step that reads it). `shares_with` is the input whose storage this value was
    written over in place (it has the same offset), or None."""

    offset: int
    size: int
    first_step: int
    last_step: int
    shares_with: Node = None


@dataclass(eq=False)
class MemoryPlan:
    """The arena layout of a graph's intermediate values (see the module docstring).

    `schedule` is the step order (the main graph's compute nodes) and `outputs` the graph's
    outputs; `check` uses them to verify the plan against the graph it came from."""

    buffers: dict
    arena_size: int
    naive_size: int
    lower_bound: int
    schedule: tuple = ()
    outputs: tuple = ()
    strategy: str = ""
    alignment: int = ALIGNMENT

    def buffer_of(self, node):
        """`(offset, size)` of `node`'s arena buffer, or None when it has none."""
        b = self.buffers.get(node)
        return None if b is None else (b.offset, b.size)

    def root(self, node):
        """The value that owns `node`'s storage (itself unless it was written in place)."""
        return self._roots()[node]

    def _roots(self):
        roots = {}
        for node in self.buffers:
            path = []
            while node not in roots:
                b = self.buffers[node]
                if b.shares_with is None:
                    roots[node] = node
                    break
                if node in path:
                    raise CompileError(f"memory plan: the in-place chain through {node} is a cycle")
                path.append(node)
                node = b.shares_with
            for n in path:
                roots[n] = roots[node]
        return roots

    def slots(self):
        """Storage slots: root value -> (offset, size, first_step, last_step, members)."""
        out = {}
        for node, r in self._roots().items():
            b = self.buffers[node]
            if r in out:
                off, size, first, last, members = out[r]
                members.append(node)
                out[r] = (off, size, min(first, b.first_step), max(last, b.last_step), members)
            else:
                rb = self.buffers[r]
                out[r] = (rb.offset, rb.size, b.first_step, b.last_step, [node])
        return out

    @property
    def in_place_count(self):
        return sum(1 for b in self.buffers.values() if b.shares_with is not None)

    # ---- verification -------------------------------------------------------------------
    def check(self):
        """Raise CompileError unless the plan is sound: aligned buffers inside the arena,
        in-place chains that really share, live ranges that cover every read of the
        schedule, and no two slots live at the same step overlapping in memory."""
        bad = _plan_errors(self)
        if bad:
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise CompileError("memory plan is unsound: " + "; ".join(bad[:5]) + more)
        return self

    # ---- report -------------------------------------------------------------------------
    def summary(self):
        """Three figures and their ratios, for logs and benchmarks."""
        def ratio(a, b):
            return f"{a / b:.3f}" if b else "n/a"

        lines = [
            f"memory plan: {len(self.buffers)} buffers ({self.in_place_count} in place) "
            f"over {len(self.schedule)} steps{', ' + self.strategy if self.strategy else ''}",
            f"  arena        {_human(self.arena_size)}",
            f"  lower bound  {_human(self.lower_bound)}   arena/lower bound = "
            f"{ratio(self.arena_size, self.lower_bound)}",
            f"  naive        {_human(self.naive_size)}   arena/naive = {ratio(self.arena_size, self.naive_size)}",
        ]
        return "\n".join(lines)

    def __repr__(self):
        return (f"<MemoryPlan {len(self.buffers)} buffers, arena {_human(self.arena_size)}, "
                f"lower bound {_human(self.lower_bound)}, naive {_human(self.naive_size)}>")


def _human(n):
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.2f} KiB"
    return f"{n} B"


# ---- in-place legality ------------------------------------------------------------------
def _pointwise_in(node, positions, functions):
    """True when element i of `node`'s output reads the operands at `positions` only at
    element i: an elementwise/broadcast op that does not broadcast them, or a call whose
    function is such an op chain along every path from those parameters."""
    if any(node.inputs[j].type.shape != node.type.shape for j in positions):
        return False
    if node.op == CALL:
        fn = functions.get(node.attrs["callee"])
        if fn is None or len(fn.inputs) != len(node.inputs):
            return False
        if any(n.op not in SOURCE_OPS and get_op(n.op).fusion in (OPAQUE, OUT_FUSABLE, REDUCE) for n in fn.nodes):
            # A kernel with a matmul/conv/reduction writes its output before its epilogue
            # has read every element of the other operands: no in-place writes there.
            return False
        tainted = {fn.inputs[j] for j in positions}
        for n in fn.nodes:
            if n.op in SOURCE_OPS:
                continue
            hit = [j for j, i in enumerate(n.inputs) if i in tainted]
            if hit:
                if not _pointwise_in(n, hit, functions):
                    return False
                tainted.add(n)
        return True
    if node.op in SOURCE_OPS:
        return False
    return get_op(node.op).fusion in (ELEMENTWISE, BROADCAST)


def _last_use(graph):
    """Each compute node's step and the step of its last reader (its own step if none)."""
    step = {n: k for k, n in enumerate(graph.compute_nodes)}
    last = dict(step)
    for n, k in step.items():
        for i in n.inputs:
            if i in last:
                last[i] = max(last[i], k)
    return step, last


def _writable(node, x, step, last, outputs, functions):
    if x is node or x not in step or x in outputs or node in outputs or node.op in SOURCE_OPS:
        return False  # an input, param, constant or output: not an arena buffer
    if last[x] != step[node]:
        return False  # read again later
    if x.type != node.type:
        return False  # different shape or dtype: element i is not at the same bytes
    return _pointwise_in(node, [j for j, i in enumerate(node.inputs) if i is x], functions)


def can_write_over(graph, node, input_index):
    """May `node` write its output over the buffer of its input `node.inputs[input_index]`?

    Yes when (a) both are arena values (computed, not graph outputs), (b) `node` is the
    input's last reader in graph order, (c) they have the same type (shape and dtype), and
    (d) `node` is elementwise in that input: an op of fusion kind elementwise or broadcast
    that does not broadcast it, or a `call` whose function only passes it through such ops,
    never broadcast, reduced, reshaped or transposed. Then each output element is written
    after the only read of the input element at the same bytes."""
    step, last = _last_use(graph)
    if node not in step:
        return False
    x = node.inputs[input_index]
    return _writable(node, x, step, last, set(graph.outputs), graph.functions)


# ---- planning -----------------------------------------------------------------------------
def _slots(graph):
    """Buffers before placement: value -> (first, last, shares_with, root), and the storage
    slots (root value -> [size, first, last]) that in-place chains form."""
    step, last = _last_use(graph)
    outputs = set(graph.outputs)
    values, slot_of, slots = {}, {}, {}
    for node, k in step.items():
        if node in outputs:
            continue
        target = None
        for x in node.inputs:
            if x in slot_of and _writable(node, x, step, last, outputs, graph.functions):
                target = x
                break
        if target is None:
            root = slot_of[node] = node
            slots[node] = [node.type.nbytes, k, last[node]]
        else:
            root = slot_of[node] = slot_of[target]
            slots[root][2] = max(slots[root][2], last[node])
        values[node] = (k, last[node], target, root)
    return values, slots, len(step)


def _peak(slots, n_steps):
    """Most bytes live at once (each slot counted once), from a difference array."""
    delta = np.zeros(n_steps + 1, dtype=np.int64)
    for size, first, last in slots:
        delta[first] += size
        delta[last + 1] -= size
    return int(np.cumsum(delta).max()) if n_steps else 0


def _place(order, slots):
    """Offsets for `slots` ([size, first, last]) placed in `order`: each goes to the lowest
    aligned offset free over its whole live range. Returns (offsets, arena size)."""
    n = len(slots)
    firsts = np.empty(n, dtype=np.int64)
    lasts = np.empty(n, dtype=np.int64)
    starts = np.empty(n, dtype=np.int64)
    ends = np.empty(n, dtype=np.int64)
    offsets = [0] * n
    count, arena = 0, 0
    for s in order:
        size, first, last = slots[s]
        offset = 0
        if size:
            live = np.nonzero((firsts[:count] <= last) & (lasts[:count] >= first))[0]
            if len(live):
                order_live = live[np.argsort(starts[live], kind="stable")]
                for a, b in zip(starts[order_live].tolist(), ends[order_live].tolist()):
                    if offset + size <= a:
                        break
                    offset = max(offset, _align(b))
            firsts[count], lasts[count], starts[count], ends[count] = first, last, offset, offset + size
            count += 1
            arena = max(arena, offset + size)
        offsets[s] = offset
    return offsets, arena


def _by_size(slots, n_steps):
    return sorted(range(len(slots)), key=lambda s: (-slots[s][0], slots[s][1], s))


def _by_breadth(slots, n_steps):
    """Steps from the busiest down; at each, its unplaced slots from the biggest down.

    A slot is placed at the first step of that order inside its live range: the minimum
    of the steps' ranks over the range, answered from a sparse table (no walk over every
    step of every range, which is quadratic when activations live long)."""
    if not slots:
        return []
    delta = np.zeros(n_steps + 1, dtype=np.int64)
    for size, first, last in slots:
        delta[first] += size
        delta[last + 1] -= size
    breadth = np.cumsum(delta)[:n_steps]
    rank = np.empty(n_steps, dtype=np.int64)
    rank[np.lexsort((np.arange(n_steps), -breadth))] = np.arange(n_steps)
    table = [rank]  # table[j][k]: the least rank of steps k .. k + 2**j - 1
    while (1 << len(table)) <= n_steps:
        half = 1 << (len(table) - 1)
        table.append(np.minimum(table[-1][:-half], table[-1][half:]))

    def first_rank(first, last):
        level = (last - first + 1).bit_length() - 1
        return int(min(table[level][first], table[level][last - (1 << level) + 1]))

    return sorted(range(len(slots)), key=lambda s: (first_rank(slots[s][1], slots[s][2]), -slots[s][0],
                                                     slots[s][1], s))


STRATEGIES = (("greedy by size", _by_size), ("greedy by breadth", _by_breadth))


def memory_plan(graph):
    """The `MemoryPlan` of `graph`'s main body, scheduled in node order."""
    values, slot_map, n_steps = _slots(graph)
    roots = list(slot_map)
    slots = [slot_map[r] for r in roots]
    best = None
    for name, strategy in STRATEGIES:
        offsets, arena = _place(strategy(slots, n_steps), slots)
        if best is None or arena < best[1]:
            best = (offsets, arena, name)
    offsets, arena, name = best
    offset_of = dict(zip(roots, offsets))
    buffers = {node: Buffer(offset_of[root], node.type.nbytes, first, last, target)
               for node, (first, last, target, root) in values.items()}
    return MemoryPlan(buffers=buffers, arena_size=arena,
                      naive_size=sum(node.type.nbytes for node in values),
                      lower_bound=_peak(slots, n_steps), schedule=tuple(graph.compute_nodes),
                      outputs=tuple(graph.outputs), strategy=name)


@graph_pass("plan_memory")
def plan_memory(graph):
    """The same graph with `meta["memory"]`, the `MemoryPlan` of its intermediate values."""
    meta = dict(graph.meta)
    meta["memory"] = memory_plan(graph)
    return Graph(graph.name, list(graph.inputs), list(graph.nodes), list(graph.outputs), dict(graph.params),
                 meta, dict(graph.functions))


# ---- the checker ----------------------------------------------------------------------------
def _plan_errors(plan):
    errors = []
    buffers = plan.buffers
    for node, b in buffers.items():
        if b.offset < 0 or b.offset % plan.alignment:
            errors.append(f"{node} has offset {b.offset}, not a non-negative multiple of {plan.alignment}")
        if b.size < 0 or b.offset + b.size > plan.arena_size:
            errors.append(f"{node} at [{b.offset}, {b.offset + b.size}) is outside the arena of "
                          f"{plan.arena_size} bytes")
        if b.first_step > b.last_step:
            errors.append(f"{node} is live from step {b.first_step} to {b.last_step}")
        s = b.shares_with
        if s is not None:
            sb = buffers.get(s)
            if sb is None:
                errors.append(f"{node} shares the buffer of {s}, which has none")
            elif (sb.offset, sb.size) != (b.offset, b.size) or sb.last_step != b.first_step:
                errors.append(f"{node} is written over {s} but sits at {(b.offset, b.size)} from step "
                              f"{b.first_step}, {s} at {(sb.offset, sb.size)} until step {sb.last_step}")
    writers = {}
    for node, b in buffers.items():
        if b.shares_with is not None:
            if b.shares_with in writers:
                errors.append(f"{writers[b.shares_with]} and {node} are both written over {b.shares_with}")
            writers[b.shares_with] = node
    if errors:
        return errors
    try:
        slots = plan.slots()
    except CompileError as err:
        return [str(err)]
    errors += _schedule_errors(plan)
    # Slots by first step: each must not overlap an earlier one still live when it starts.
    items = sorted(slots.items(), key=lambda kv: kv[1][2])
    off, size, first, last = (np.array([v[k] for _, v in items], dtype=np.int64) for k in range(4))
    for i in range(1, len(items)):
        if not size[i]:
            continue
        clash = np.nonzero((last[:i] >= first[i]) & (size[:i] > 0) & (off[:i] < off[i] + size[i])
                           & (off[i] < off[:i] + size[:i]))[0]
        for j in clash[:3].tolist():
            errors.append(f"{items[i][0]} [{off[i]}, {off[i] + size[i]}) and {items[j][0]} "
                          f"[{off[j]}, {off[j] + size[j]}) overlap while both live at step {first[i]}")
    if plan.arena_size != max((b.offset + b.size for b in buffers.values()), default=0):
        errors.append(f"arena_size {plan.arena_size} is not the end of the last buffer")
    naive = sum(b.size for b in buffers.values())
    if plan.naive_size != naive:
        errors.append(f"naive_size {plan.naive_size} is not the sum of the buffer sizes, {naive}")
    n_steps = max([b.last_step + 1 for b in buffers.values()] + [len(plan.schedule)])
    peak = _peak([(size, first, last) for off, size, first, last, _ in slots.values()], n_steps)
    if plan.lower_bound != peak:
        errors.append(f"lower_bound {plan.lower_bound} is not the peak of live bytes, {peak}")
    return errors


def _schedule_errors(plan):
    """The plan against its schedule: every intermediate value has a buffer of its size,
    live from its step through its last reader, and no output is in the arena."""
    if not plan.schedule:
        return []
    errors = []
    outputs = set(plan.outputs)
    step = {n: k for k, n in enumerate(plan.schedule)}
    for node, b in plan.buffers.items():
        if node in outputs:
            errors.append(f"output {node} is in the arena")
        if node not in step:
            errors.append(f"{node} has a buffer but is not computed by the schedule")
        elif b.first_step != step[node] or b.size != node.type.nbytes:
            errors.append(f"{node} is computed at step {step[node]} with {node.type.nbytes} bytes; its "
                          f"buffer starts at step {b.first_step} with {b.size}")
        if b.shares_with is not None and b.shares_with not in node.inputs:
            errors.append(f"{node} is written over {b.shares_with}, which is not one of its inputs")
    for node, k in step.items():
        if node not in outputs and node not in plan.buffers:
            errors.append(f"{node} (step {k}) has no buffer")
        for i in node.inputs:
            b = plan.buffers.get(i)
            if b is not None and b.last_step < k:
                errors.append(f"{i} is read at step {k} but its buffer is free after step {b.last_step}")
    return errors
