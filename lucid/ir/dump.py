"""Graph dumps for people: the text form, Graphviz DOT and SVG, and one self-contained HTML page.

`dump_graph(graph, "out/model.html")` picks the format by the file's suffix:

- `.txt`  the text form with source locations (what `lucid.ir.parse` reads back);
- `.dot`  Graphviz DOT: one node per value, each expanded `call` a `subgraph cluster_`
          holding its function's ops, so fusion groups show as boxes;
- `.svg`  that DOT laid out by Graphviz's `dot` (which must be installed);
- `.html` a page that works offline with nothing but a browser: the graph laid out here,
          in Python, as inline SVG, plus a little inline script for details on click and
          a search box. No Graphviz needed, no network, no external files.

Every drawn value carries `data-node="%7"` (its printed name; `fused_3/%2` for a value of
function `fused_3`), one element per node, so a test or a person can find any value.

Functions are drawn inside the first `call` that runs them: their input values sit at
the top of the box, fed by the call's operands, and the users of the call are fed from
the box. A function that is called again is drawn once; the later calls are plain nodes
that name it, and a function that no call runs is drawn as a box of its own.
"""
import bisect
import html
import json
import shutil
import subprocess
from pathlib import Path

from ..errors import LucidError
from .graph import CALL
from .printer import format_value, value_names

SUFFIXES = (".txt", ".dot", ".svg", ".html")
DOT_TIMEOUT = 600  # seconds Graphviz may take on one graph


def dump_graph(graph, path, title=None):
    """Write `graph` to `path` in the format its suffix names; returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise LucidError(f"dump_graph: cannot write {str(path)!r}: unknown suffix {suffix or '(none)'!r}; "
                         f"supported: {', '.join(SUFFIXES)}")
    if suffix == ".txt":
        text = graph.format(locs=True) + "\n"
    elif suffix == ".dot":
        text = to_dot(graph, title)
    elif suffix == ".svg":
        text = to_svg(graph, title)
    else:
        text = to_html(graph, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---- what is drawn: values, boxes for calls, edges ----------------------------------------

class _Item:
    """One drawn thing: a value, or the box of a function (an expanded call, or an uncalled
    function when `node` is None)."""

    __slots__ = ("key", "node", "name", "fn", "box", "inputs", "callee_ref",
                 "row", "span", "w", "h", "x", "y", "preds", "users", "is_out")

    def __init__(self, key, node, name, fn):
        self.key, self.node, self.name, self.fn = key, node, name, fn
        self.box = None  # _Box when this item is an expanded call
        self.callee_ref = None  # callee drawn elsewhere (a repeated call)
        self.inputs = []  # items feeding this one (for a function input: the call's operand)
        self.preds = []  # items at the same level this one is laid out below
        self.users = []
        self.is_out = False


class _Box:
    def __init__(self, callee, graph, items, out, entry):
        self.callee, self.graph, self.items, self.out = callee, graph, items, out
        self.entry = entry  # the function's input items, in order


class _View:
    """The items of a graph (functions expanded into their calls) and its edges."""

    def __init__(self, graph):
        self.graph = graph
        self.items = []  # every item, outer before inner
        self.edges = []  # (source item, target item); a box as source means the call's value
        self.expanded = set()
        self.top = self._level(graph, None)
        for name, fg in graph.functions.items():
            if name not in self.expanded:
                self.expanded.add(name)
                item = _Item(None, None, name, None)
                item.box = self._box(name, fg, [])
                self.items.append(item)
                self.top.append(item)

    def _level(self, g, fn):
        names = value_names(g)
        prefix = f"{fn}/" if fn else ""
        local, level = {}, []
        outs = set(g.outputs)
        for node in g.nodes:
            item = _Item(f"{prefix}%{names[node]}", node, names[node], fn)
            item.is_out = node in outs
            self.items.append(item)
            local[node] = item
            level.append(item)
            item.inputs = item.preds = [local[i] for i in node.inputs if i in local]
            for i in item.preds:
                i.users.append(item)
            if node.op == CALL:
                callee = node.attrs.get("callee")
                fg = g.functions.get(callee) or self.graph.functions.get(callee)
                if fg is not None and callee not in self.expanded:  # (so recursion stops too)
                    self.expanded.add(callee)
                    item.box = self._box(callee, fg, item.inputs)
                else:
                    item.callee_ref = callee
            if item.box is None:
                self.edges.extend((i, item) for i in item.inputs)
        return level

    def _box(self, callee, fg, operands):
        items = self._level(fg, callee)
        by_node = {it.node: it for it in items}
        for operand, inp in zip(operands, fg.inputs):
            target = by_node[inp]
            target.inputs = [operand]
            self.edges.append((operand, target))
        out = by_node.get(fg.outputs[0]) if fg.outputs else None
        return _Box(callee, fg, items, out, [by_node[i] for i in fg.inputs])


def _kind(node):
    """The drawing class of a value: input, param, const, call, or the op's fusion kind."""
    if node.op in ("input", "param"):
        return node.op
    if node.op == "constant":
        return "const"
    if node.op == CALL:
        return "call"
    from ..ops.registry import OPS

    op = OPS.get(node.op)
    return op.fusion if op is not None else "opaque"


def _fmt(v):
    try:
        return format_value(v)
    except TypeError:
        return repr(v)


def _attr_text(node, limit=None):
    if node.op == "constant":
        v = node.attrs.get("value")
        text = f"{v:.6g}" if isinstance(v, float) and limit else _fmt(v)
    elif node.op == CALL:
        text = ""
    else:
        text = ", ".join(f"{k}={_fmt(v)}" for k, v in node.attrs)
    if limit and len(text) > limit:
        text = text[:limit - 1] + "…"
    return text


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _buffers(graph, view):
    """`{item: (offset, size)}` from the memory plan in graph.meta["memory"], if any."""
    plan = graph.meta.get("memory")
    if plan is None:
        return None, {}
    out = {}
    for item in view.top:
        if item.node is not None:
            buf = plan.buffer_of(item.node)
            if buf is not None:
                out[item] = (int(buf[0]), int(buf[1]))
    return plan, out


def _head(item):
    node = item.node
    if node.op in ("input", "param"):
        return f"%{item.name}"
    if node.op == CALL:
        return f"%{item.name} = call {node.attrs.get('callee')}"
    return f"%{item.name} = {node.op}"


# ---- Graphviz ------------------------------------------------------------------------------

_DOT_STYLE = {
    "input": 'shape=ellipse, style=filled, fillcolor="#dbeafe"',
    "param": 'shape=box, style=filled, fillcolor="#e5e7eb"',
    "const": 'shape=box, style="rounded,dashed", fontcolor="#6b7280"',
    "call": 'fillcolor="#ffedd5"',
    "opaque": 'fillcolor="#ede9fe"',
    "out_fusable": 'fillcolor="#fde68a"',
    "reduce": 'fillcolor="#fef3c7"',
    "injective": 'fillcolor="#ecfdf5"',
}


def _dq(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph, title=None):
    """The graph as Graphviz DOT text; each expanded call is a `subgraph cluster_N`."""
    view = _View(graph)
    _, bufs = _buffers(graph, view)
    ids = {item: f"v{k}" for k, item in enumerate(view.items)}
    lines = [f"digraph {_dq(graph.name)} {{",
             f"  graph [rankdir=TB, compound=true, nslimit=2, fontname=Helvetica, fontsize=11, labelloc=t, "
             f"label={_dq(title or graph.name)}];",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname=Helvetica, '
             'fontsize=10, height=0.3];',
             '  edge [arrowsize=0.6, color="#64748b"];']

    def emit(level, indent):
        pad = "  " * indent
        for item in level:
            if item.box is not None:
                head = (f"{_head(item)} : {item.node.type}" if item.node is not None
                        else f"function {item.box.callee} (not called)")
                if item in bufs:
                    head += f"\nbuffer @{bufs[item][0]} ({_bytes(bufs[item][1])})"
                lines.append(f"{pad}subgraph cluster_{ids[item][1:]} {{")
                lines.append(f'{pad}  label={_dq(head)}; style="rounded,filled"; fillcolor="#fff7ed"; '
                             f'color="#fb923c"; labeljust=l;')
                emit(item.box.items, indent + 1)
                lines.append(f"{pad}}}")
                continue
            node = item.node
            kind = _kind(node)
            label = f"{_head(item)}\n{node.type}"
            attrs = _attr_text(node, 60) if node.op != "param" else ""
            if attrs:
                label += f"\n{attrs}"
            if item in bufs:
                label += f"\n@{bufs[item][0]} ({_bytes(bufs[item][1])})"
            extra = _DOT_STYLE.get(kind, "")
            if item.is_out:
                extra += (", " if extra else "") + "penwidth=2"
            if node.loc:
                extra += (", " if extra else "") + f"tooltip={_dq(node.loc)}"
            lines.append(f"{pad}{ids[item]} [label={_dq(label)}{', ' + extra if extra else ''}];")

    emit(view.top, 1)
    for src, dst in view.edges:
        if src.box is not None:
            tail = _tail(src)
            lines.append(f"  {ids[tail]} -> {ids[dst]} [ltail=cluster_{ids[src][1:]}];")
        else:
            lines.append(f"  {ids[src]} -> {ids[dst]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _tail(item):
    """The drawn value a box's edges leave from: its function's result (inside nested boxes)."""
    while item.box is not None:
        item = item.box.out if item.box.out is not None else item.box.items[-1]
    return item


def dot_layout_cost(graph):
    """Roughly how many nodes Graphviz's dot will lay out: one per value, plus one per rank
    each edge crosses. A backward graph's edges span hundreds of ranks (activations saved
    for the backward pass); dot needs seconds at about 1e4 and hours at 1e6."""
    view = _View(graph)
    into, out = {}, {}
    for src, dst in view.edges:
        into.setdefault(dst, []).append(_tail(src))
        out.setdefault(_tail(src), []).append(dst)
    rank = {}
    for item in view.items:  # outer values before inner ones: a topological order of the edges
        rank[item] = max((rank[s] + 1 for s in into.get(item, ())), default=0)
    for item in reversed(view.items):  # like dot, pull values down to just above their readers
        if item in out:
            rank[item] = max(rank[item], min(rank[d] for d in out[item]) - 1)
    return len(view.items) + sum(rank[d] - rank[s] - 1 for d, srcs in into.items() for s in srcs)


def to_svg(graph, title=None):
    """The DOT dump laid out by Graphviz (`dot -Tsvg`)."""
    exe = shutil.which("dot")
    if exe is None:
        raise LucidError("dump_graph: writing .svg needs Graphviz's `dot` program, which is not installed "
                         "(install Graphviz: `apt-get install graphviz` on Debian/Ubuntu, "
                         "`brew install graphviz` on macOS); .dot and .html dumps work without it")
    try:
        done = subprocess.run([exe, "-Tsvg"], input=to_dot(graph, title), capture_output=True,
                              text=True, timeout=DOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise LucidError(f"dump_graph: Graphviz's dot took more than {DOT_TIMEOUT} s on graph "
                         f"{graph.name!r}; write .html (laid out without Graphviz) instead") from None
    if done.returncode != 0:
        raise LucidError(f"dump_graph: Graphviz's dot failed on graph {graph.name!r}: {done.stderr.strip()}")
    return done.stdout


# ---- the HTML page: a layered layout computed here -----------------------------------------

CHAR_W = 6.7  # px per character of the 11px monospace font
NODE_H, V_GAP, H_GAP, PAD, HEADER = 34, 30, 16, 12, 24
MIN_W, MAX_CHARS = 70, 34
SCAN = 48  # gaps looked at on each side of the wanted x before settling for a row's end


def _clip(text, n=MAX_CHARS):
    return text if len(text) <= n else text[:n - 1] + "…"


def _lines(item, bufs):
    node = item.node
    if node.op == "input":
        second = f"input {node.type}"
    elif node.op == "param":
        second = f"param {node.type}"
    elif node.op == "constant":
        second = f"{_attr_text(node, 16)} : {node.type}"
    else:
        second = str(node.type)
    lines = [_clip(_head(item)), _clip(second)]
    if item in bufs:
        off, size = bufs[item]
        lines.append(_clip(f"@{off} {_bytes(size)}"))
    return lines


class _Layout:
    """Layered top-to-bottom layout, one level (the main graph or one function) at a time.

    Rows: each value goes as low as its users allow (longest path from the level's inputs,
    then pulled down to just above its first user), so a weight's reshape or a side branch
    sits next to where it is used rather than in the first row; a box spans as many rows
    as its function needs. Columns: values are placed in graph order at the free x closest
    to the mean of their inputs' centres, so chains run straight down and branches spread
    sideways; values computed from params and constants alone are placed last, next to
    their first user."""

    def __init__(self, view, bufs):
        self.bufs = bufs
        self.node_h = NODE_H + (12 if bufs else 0)
        self.row_h = self.node_h + V_GAP
        self.lines = {}
        self.width, self.height = self._level(view.top)
        self._place(view.top, 0.0, 0.0)

    def _size(self, item):
        if item.box is not None:
            w, h = self._level(item.box.items)
            head = _box_head(item, self.bufs)
            item.w = max(w + 2 * PAD, len(head) * CHAR_W + 2 * PAD)
            item.h = h + HEADER + PAD
            item.span = max(1, -(-(item.h + V_GAP) // self.row_h))
        else:
            self.lines[item] = lines = _lines(item, self.bufs)
            item.w = max(MIN_W, max(len(s) for s in lines) * CHAR_W + 14)
            item.h, item.span = self.node_h, 1

    def _level(self, items):
        if not items:
            return 0.0, 0.0
        for item in items:
            self._size(item)
        fixed = {it for it in items if it.node is None or it.node.op == "input"}
        for item in items:  # longest path from the level's inputs
            item.row = max((p.row + p.span for p in item.preds), default=0)
        for item in reversed(items):  # then as close above the first user as the users allow
            if item not in fixed and item.users:
                item.row = max(item.row, min(u.row for u in item.users) - item.span)
        # values that depend on params and constants only (weights, their reshapes, ...)
        static = set()
        for item in items:
            if item.node is not None and item.node.op in ("param", "constant") or \
                    (item.preds and all(p in static for p in item.preds)):
                static.add(item)
        occupied = {}  # row -> sorted [(x0, x1)] taken

        def put(item, want):
            rows = range(item.row, item.row + item.span)
            taken = occupied.get(item.row, []) if item.span == 1 else \
                _merge(iv for r in rows for iv in occupied.get(r, ()))
            item.x = _nearest_free(taken, want - item.w / 2, item.w)
            for r in rows:
                bisect.insort(occupied.setdefault(r, []), (item.x, item.x + item.w))

        right = 0.0
        for item in items:
            if item in static:
                continue
            centres = [p.x + p.w / 2 + _shift(item, k) for k, p in enumerate(item.preds) if p not in static]
            put(item, sum(centres) / len(centres) if centres else right + item.w / 2)
            right = max(right, item.x + item.w + H_GAP)
        for item in reversed(items):  # static values next to their first user, siblings spread
            if item not in static:
                continue
            entry = _entry(item.users[0], item) if item.users else None
            if entry is not None:  # above the function input it feeds
                put(item, item.users[0].x + PAD + entry.x + entry.w / 2)
            elif item.users:
                user = item.users[0]
                mine = [p for p in dict.fromkeys(user.preds) if p in static and p.users[0] is user]
                k = mine.index(item)
                put(item, user.x + user.w / 2 + (k - (len(mine) - 1) / 2) * (item.w + H_GAP))
            else:
                put(item, right + item.w / 2)
                right = max(right, item.x + item.w + H_GAP)
        left = min(it.x for it in items)
        for it in items:
            it.x -= left
        width = max(it.x + it.w for it in items)
        height = max(it.row * self.row_h + it.h for it in items)
        return width, height

    def _place(self, items, ox, oy):
        """Relative positions to absolute ones (boxes hold their function's layout)."""
        for it in items:
            it.x += ox
            it.y = oy + it.row * self.row_h
            if it.box is not None:
                self._place(it.box.items, it.x + PAD, it.y + HEADER)


def _merge(intervals):
    """Sorted intervals with the overlapping ones joined."""
    out = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _nearest_free(taken, x, w):
    """The x0 closest to `x` where [x0, x0 + w) keeps H_GAP clear of the sorted, disjoint
    intervals `taken`: look at the gap around x, then outwards while a gap could be closer."""
    inf = float("inf")

    def gap(g):  # the range of x0 that fits between taken[g - 1] and taken[g]
        lo = taken[g - 1][1] + H_GAP if g > 0 else -inf
        hi = taken[g][0] - H_GAP - w if g < len(taken) else inf
        return lo, hi

    start = bisect.bisect_left(taken, (x, x))
    # the two ends of the row always fit; in a crowded row, do not look at more than SCAN gaps
    ends = (taken[0][0] - H_GAP - w, taken[-1][1] + H_GAP) if taken else (x, x)
    best = min(ends, key=lambda e: abs(e - x))
    for step in (-1, 1):
        g = start if step == 1 else start - 1
        for _ in range(SCAN):
            if not 0 <= g <= len(taken):
                break
            lo, hi = gap(g)
            if (lo - x if step == 1 else x - hi) > abs(best - x):
                break
            if lo <= hi:
                cand = min(max(x, lo), hi)
                if abs(cand - x) < abs(best - x):
                    best = cand
            g += step
    return best


def _entry(user, item):
    """The function input that `item` feeds when `user` is a box, else None."""
    if user.box is None:
        return None
    k = user.preds.index(item)
    return user.box.entry[k] if k < len(user.box.entry) else None


def _shift(box, k):
    """How far right of a box's operand k the box's centre must be for the function input
    it feeds to sit right under it (0 for a plain value)."""
    if box.box is None or k >= len(box.box.entry):
        return 0.0
    entry = box.box.entry[k]
    return box.w / 2 - (PAD + entry.x + entry.w / 2)


def _box_head(item, bufs):
    if item.node is None:
        return f"function {item.box.callee} (not called)"
    head = f"{_head(item)} : {item.node.type}"
    if item in bufs:
        off, size = bufs[item]
        head += f"  @{off} {_bytes(size)}"
    return head


def _details(view, bufs):
    """What the page's script shows for each value (by its data-node key)."""
    out = {}
    for item in view.items:
        if item.node is None:
            continue
        node = item.node
        d = {"op": node.op, "type": str(node.type), "shape": list(node.shape), "dtype": node.dtype.name,
             "in": [i.key for i in item.inputs], "users": [u.key for u in item.users]}
        if node.attrs:
            d["attrs"] = [[k, _fmt(v)] for k, v in node.attrs]
        if node.loc:
            d["loc"] = node.loc
        if item.fn:
            d["fn"] = item.fn
        if item.box is not None:
            d["callee"] = item.box.callee
            if item.box.out is not None:
                d["ret"] = item.box.out.key
        elif item.callee_ref:
            d["callee"] = item.callee_ref
        if item in bufs:
            d["buf"] = list(bufs[item])
        if item.is_out:
            d["out"] = 1
        out[item.key] = d
    return out


def _svg(view, layout):
    esc = html.escape
    parts = []
    h = layout.node_h
    edges = []
    for src, dst in view.edges:
        sx, sy = src.x + src.w / 2, src.y + src.h
        tx, ty = dst.x + dst.w / 2, dst.y
        d = max(12.0, (ty - sy) / 2)
        s_key = src.key if src.key is not None else ""
        edges.append(f'<path class="e" data-s="{esc(s_key)}" data-t="{esc(dst.key)}" '
                     f'd="M{sx:.0f},{sy:.0f}C{sx:.0f},{sy + d:.0f} {tx:.0f},{ty - d:.0f} {tx:.0f},{ty - 2:.0f}"/>')

    boxes = []

    def draw(items):
        for it in items:
            if it.box is not None:
                attr = (f'data-node="{esc(it.key)}"' if it.node is not None
                        else f'data-function="{esc(it.box.callee)}"')
                boxes.append(f'<g class="cl" {attr} data-callee="{esc(it.box.callee)}">'
                             f'<rect x="{it.x:.0f}" y="{it.y:.0f}" width="{it.w:.0f}" height="{it.h:.0f}" rx="8"/>'
                             f'<text x="{it.x + PAD:.0f}" y="{it.y + 16:.0f}">{esc(_box_head(it, layout.bufs))}'
                             "</text></g>")
                draw(it.box.items)
                continue
            cls = "n " + _kind(it.node) + (" out" if it.is_out else "")
            lines = layout.lines[it]
            text = "".join(f'<text x="{it.x + 7:.0f}" y="{it.y + 14 + 12 * k:.0f}"{" class=t" if k else ""}>'
                           f"{esc(s)}</text>" for k, s in enumerate(lines))
            parts.append(f'<g class="{cls}" data-node="{esc(it.key)}"><rect x="{it.x:.0f}" y="{it.y:.0f}" '
                         f'width="{it.w:.0f}" height="{h}" rx="4"/>{text}</g>')

    # boxes first (outer under inner), then the edges, then the values on top
    draw(view.top)
    w, hh = layout.width + 2 * PAD, layout.height + 2 * PAD
    return (f'<svg id="graph" width="{w:.0f}" height="{hh:.0f}" viewBox="{-PAD} {-PAD} {w:.0f} {hh:.0f}">'
            '<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" '
            'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0L8,4L0,8z" fill="#64748b"/></marker></defs>'
            f'{"".join(boxes)}<g class="edges">{"".join(edges)}</g>{"".join(parts)}</svg>')


def to_html(graph, title=None):
    """One HTML file that shows the graph offline: inline SVG, CSS and script only."""
    view = _View(graph)
    plan, bufs = _buffers(graph, view)
    layout = _Layout(view, bufs)
    esc = html.escape
    title = title or f"lucid graph {graph.name}"
    n_fn_ops = sum(len(f.compute_nodes) for f in graph.functions.values())
    stats = (f"{len(graph.nodes)} values, {len(graph.compute_nodes)} ops in {graph.name}"
             + (f", {len(graph.functions)} functions with {n_fn_ops} ops" if graph.functions else ""))
    memory = ""
    if plan is not None:
        memory = (f'<details class="mem"><summary>memory: arena {_bytes(plan.arena_size)}, naive '
                  f'{_bytes(plan.naive_size)}, lower bound {_bytes(plan.lower_bound)}</summary>'
                  f"<pre>{esc(str(plan.summary()))}</pre></details>")
    data = json.dumps({"nodes": _details(view, bufs)}, separators=(",", ":"))
    data = data.replace("</", "<\\/").replace("<!--", "<\\!--")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n"
            f'<header><b>{esc(title)}</b><span class="stats">{esc(stats)}</span>'
            '<input id="q" type="search" placeholder="search ops / values" autocomplete="off">'
            '<span id="hits"></span><button id="zin">+</button><button id="zout">&minus;</button>'
            f'<button id="zfit">fit</button>{memory}</header>\n'
            f'<main><div id="canvas">{_svg(view, layout)}</div>'
            '<aside id="details"><p class="hint">Click a value for its op, attributes, type, '
            'inputs, users and source line. Boxes are fused kernels (functions run by a call).</p>'
            f'{_LEGEND}</aside></main>\n'
            f'<script type="application/json" id="lucid-data">{data}</script>\n'
            f"<script>{_JS}</script>\n</body></html>\n")


_LEGEND = ('<div class="legend"><span class="k input">input</span><span class="k param">param</span>'
           '<span class="k const">constant</span><span class="k elementwise">elementwise</span>'
           '<span class="k injective">injective</span><span class="k reduce">reduce</span>'
           '<span class="k opaque">opaque</span><span class="k cl">fused kernel</span></div>')

_CSS = """
body{margin:0;font:13px system-ui,sans-serif;color:#1f2937;height:100vh;display:flex;flex-direction:column}
header{display:flex;gap:10px;align-items:center;flex-wrap:wrap;padding:6px 10px;border-bottom:1px solid #d1d5db;background:#f9fafb}
header .stats{color:#6b7280}
header input{width:16em}
.mem{flex-basis:100%}.mem pre{margin:4px 0;font-size:12px}
main{flex:1;display:flex;min-height:0}
#canvas{flex:1;overflow:auto;background:#fff}
#details{width:340px;overflow:auto;border-left:1px solid #d1d5db;padding:8px 12px;background:#f9fafb}
#details table{border-collapse:collapse;width:100%}#details td{vertical-align:top;padding:2px 4px;border-bottom:1px solid #e5e7eb;word-break:break-all}
#details td:first-child{color:#6b7280;white-space:nowrap;word-break:normal}
#details a{color:#2563eb;cursor:pointer;margin-right:6px}
.hint{color:#6b7280}
svg text{font:11px ui-monospace,Menlo,Consolas,monospace;fill:#111827;pointer-events:none}
svg text.t{fill:#4b5563}
.e{fill:none;stroke:#94a3b8;stroke-width:1;marker-end:url(#arrow)}
.e.hl{stroke:#dc2626;stroke-width:2}
.n{cursor:pointer}.n rect{fill:#fff;stroke:#64748b;stroke-width:1}
.n.input rect{fill:#dbeafe}.n.param rect{fill:#e5e7eb}.n.const rect{fill:#f9fafb;stroke-dasharray:3 2}
.n.opaque rect{fill:#ede9fe}.n.reduce rect{fill:#fef3c7}.n.injective rect{fill:#ecfdf5}.n.call rect{fill:#ffedd5}
.n.out rect{stroke-width:2.5;stroke:#111827}
.cl>rect{fill:#fff7ed;stroke:#fb923c;stroke-width:1.5}.cl>text{font-weight:bold;fill:#9a3412}
.cl{cursor:pointer}
.hit>rect{stroke:#f59e0b!important;stroke-width:3!important;fill:#fef08a!important}
.sel>rect{stroke:#dc2626!important;stroke-width:3!important}
.legend{margin-top:12px}.legend .k{display:inline-block;margin:2px;padding:1px 6px;border:1px solid #64748b;border-radius:3px;background:#fff;font-size:11px}
.k.input{background:#dbeafe}.k.param{background:#e5e7eb}.k.const{border-style:dashed}.k.opaque{background:#ede9fe}
.k.reduce{background:#fef3c7}.k.injective{background:#ecfdf5}.k.cl{background:#fff7ed;border-color:#fb923c}
"""

# The page's script: details on click, search, zoom. Plain DOM, no libraries.
_JS = r"""
(function () {
  var data = JSON.parse(document.getElementById('lucid-data').textContent).nodes;
  var svg = document.getElementById('graph'), panel = document.getElementById('details');
  var els = {}, edges = {}, selected = null, hits = [], hitAt = -1, scale = 1;
  var W = +svg.getAttribute('width'), H = +svg.getAttribute('height');
  svg.querySelectorAll('[data-node]').forEach(function (el) { els[el.getAttribute('data-node')] = el; });
  svg.querySelectorAll('path.e').forEach(function (p) {
    [p.getAttribute('data-s'), p.getAttribute('data-t')].forEach(function (k) { (edges[k] = edges[k] || []).push(p); });
  });
  function links(keys) {
    var span = document.createElement('span');
    (keys || []).forEach(function (k) {
      var a = document.createElement('a'); a.textContent = k; a.setAttribute('data-go', k); span.appendChild(a);
    });
    return span;
  }
  function row(table, name, value) {
    var tr = table.insertRow(), a = tr.insertCell(), b = tr.insertCell();
    a.textContent = name;
    if (typeof value === 'string') b.textContent = value; else b.appendChild(value);
  }
  function show(key) {
    var d = data[key]; if (!d) return;
    panel.textContent = '';
    var h = document.createElement('h3'); h.textContent = key + ' = ' + d.op; panel.appendChild(h);
    var t = document.createElement('table'); panel.appendChild(t);
    row(t, 'type', d.type); row(t, 'shape', '(' + d.shape.join(', ') + ')'); row(t, 'dtype', d.dtype);
    (d.attrs || []).forEach(function (kv) { row(t, kv[0], kv[1]); });
    if (d.callee) row(t, 'runs', d.callee);
    if (d.ret) row(t, 'returns', links([d.ret]));
    row(t, 'inputs', links(d['in'])); row(t, 'users', links(d.users));
    if (d.fn) row(t, 'in function', d.fn);
    if (d.loc) row(t, 'source', d.loc);
    if (d.buf) row(t, 'buffer', 'offset ' + d.buf[0] + ', ' + d.buf[1] + ' bytes');
    if (d.out) row(t, 'output', 'yes');
  }
  function select(key, scroll) {
    if (selected) { els[selected].classList.remove('sel'); (edges[selected] || []).forEach(function (p) { p.classList.remove('hl'); }); }
    selected = els[key] ? key : null;
    if (!selected) return;
    var el = els[key]; el.classList.add('sel');
    (edges[key] || []).forEach(function (p) { p.classList.add('hl'); });
    show(key);
    if (scroll) el.scrollIntoView({block: 'center', inline: 'center'});
    if (history.replaceState) history.replaceState(null, '', '#' + encodeURIComponent(key));
  }
  svg.addEventListener('click', function (ev) {
    var el = ev.target.closest('[data-node]'); if (el) select(el.getAttribute('data-node'), false);
  });
  panel.addEventListener('click', function (ev) {
    var k = ev.target.getAttribute && ev.target.getAttribute('data-go'); if (k) select(k, true);
  });
  var q = document.getElementById('q'), count = document.getElementById('hits');
  function search() {
    hits.forEach(function (el) { el.classList.remove('hit'); }); hits = []; hitAt = -1;
    var s = q.value.trim().toLowerCase();
    if (s) Object.keys(els).forEach(function (k) {
      var d = data[k];
      if (k.toLowerCase().indexOf(s) >= 0 || (d && d.op.toLowerCase().indexOf(s) >= 0) ||
          (d && d.callee && d.callee.toLowerCase().indexOf(s) >= 0)) { els[k].classList.add('hit'); hits.push(els[k]); }
    });
    count.textContent = s ? hits.length + ' found' : '';
  }
  q.addEventListener('input', search);
  q.addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter' && hits.length) { hitAt = (hitAt + 1) % hits.length; select(hits[hitAt].getAttribute('data-node'), true); }
  });
  function zoom(f) { scale = f; svg.setAttribute('width', W * scale); svg.setAttribute('height', H * scale); }
  document.getElementById('zin').onclick = function () { zoom(scale * 1.25); };
  document.getElementById('zout').onclick = function () { zoom(scale / 1.25); };
  document.getElementById('zfit').onclick = function () {
    var c = document.getElementById('canvas'); zoom(Math.min(1, c.clientWidth / W, c.clientHeight / H));
  };
  var hash = decodeURIComponent(location.hash.slice(1));  // #%7 selects a value, #q=conv searches
  if (hash.indexOf('q=') === 0) { q.value = hash.slice(2); search(); }
  else if (hash) select(hash, true);
  else { var first = svg.querySelector('.n.input') || svg.querySelector('[data-node]');
         if (first) first.scrollIntoView({block: 'nearest', inline: 'center'}); }
  document.body.setAttribute('data-ready', String(Object.keys(els).length));
})();
"""
