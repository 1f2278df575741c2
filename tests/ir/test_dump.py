"""Graph dumps: the text form, DOT (a cluster per call), SVG through Graphviz or a clear
error without it, the self-contained HTML page (one element per value, nothing fetched,
the page's script runs in headless Chromium), and DumpInstrument's files and summary."""
import json
import re
import shutil
import subprocess
import time

import numpy as np
import pytest

import lucid
import lucid.nn as nn
from lucid.errors import LucidError
from lucid.ir import Graph, parse
from lucid.ir.dump import dot_layout_cost, dump_graph, to_dot, to_html
from lucid.ir.passes import PassManager, cse, dce, graph_pass
from lucid.ir.passes import dumping
from lucid.ir.passes.dumping import DumpInstrument
from lucid.ir.printer import value_names

FUSED = """\
graph fused_0(%a: f32[2,3], %b: f32[2,3]) {
  %0 = add(%a, %b) : f32[2,3]
  %1 = relu(%0) : f32[2,3]
  return %1
}

graph main(%x: f32[2,3]) {
  %b = param : f32[2,3]
  %0 = call(%x, %b) {callee="fused_0"} : f32[2,3]  # model.py:7
  %1 = exp(%0) : f32[2,3]  # model.py:8
  return %1
}"""

# fused_0 runs twice (drawn once), fused_1 is never called (drawn on its own)
TWICE = """\
graph fused_0(%a: f32[2,3], %b: f32[2,3]) {
  %0 = mul(%a, %b) : f32[2,3]
  %1 = neg(%0) : f32[2,3]
  return %1
}

graph fused_1(%a: f32[2,3]) {
  %0 = exp(%a) : f32[2,3]
  %1 = sqrt(%0) : f32[2,3]
  return %1
}

graph main(%x: f32[2,3], %y: f32[2,3]) {
  %0 = call(%x, %y) {callee="fused_0"} : f32[2,3]
  %1 = call(%0, %y) {callee="fused_0"} : f32[2,3]
  return %1
}"""


def _cnn_graph():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    model.eval()
    return lucid.trace(model, lucid.Tensor(np.zeros((2, 3, 8, 8), np.float32)))


@pytest.fixture(scope="module")
def cnn():
    return _cnn_graph()


@pytest.fixture(scope="module")
def fused():
    return parse(FUSED, params={"b": np.ones((2, 3), np.float32)})


@pytest.fixture(scope="module")
def fused_cnn(cnn):
    """The small CNN through the real optimising pipeline: calls, functions, a memory plan."""
    from lucid.ir.passes.pipelines import pipeline

    return PassManager(pipeline(2)).run(cnn)


def _keys(graph):
    """The data-node key of every value: `%name`, or `fn/%name` inside function fn."""
    keys = [f"%{n}" for n in value_names(graph).values()]
    for fname, f in graph.functions.items():
        keys += [f"{fname}/%{n}" for n in value_names(f).values()]
    return keys


def _calls(graph):
    return [n for n in graph.nodes if n.op == "call"]


# ---- .txt ------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["cnn", "fused"])
def test_txt_is_the_text_form_with_locations(which, request, tmp_path):
    g = request.getfixturevalue(which)
    path = dump_graph(g, tmp_path / "g.txt")
    text = path.read_text()
    assert text == g.format(locs=True) + "\n"
    assert "  # " in text  # source locations are there
    assert parse(text, params=g.params) == g


def test_graph_dump_method_and_folders_made(fused, tmp_path):
    path = fused.dump(tmp_path / "a" / "b" / "g.txt")
    assert path.read_text() == fused.format(locs=True) + "\n"


def test_unknown_suffix_names_the_supported_ones(fused, tmp_path):
    for name in ("g.png", "g"):
        with pytest.raises(LucidError, match=r"\.txt, \.dot, \.svg, \.html"):
            dump_graph(fused, tmp_path / name)
    assert not list(tmp_path.iterdir())


# ---- .dot ------------------------------------------------------------------------------------

def _dot_nodes(text):
    return re.findall(r"^\s*v\d+ \[label=", text, flags=re.M)


@pytest.mark.parametrize("which", ["cnn", "fused", "fused_cnn"])
def test_dot_has_one_node_per_value_and_a_cluster_per_call(which, request, tmp_path):
    g = request.getfixturevalue(which)
    text = dump_graph(g, tmp_path / "g.dot").read_text()
    assert text.startswith("digraph ")
    # every value is a node, except each call: that is the cluster of its function's values
    assert len(_dot_nodes(text)) == len(_keys(g)) - len(_calls(g))
    assert text.count("subgraph cluster_") == len(_calls(g))
    for n in g.compute_nodes:
        if n.op != "call":
            assert f"= {n.op}\\n{n.type}" in text


def test_dot_of_a_call_wires_operands_into_the_function(fused):
    text = to_dot(fused)
    assert 'label="%0 = call fused_0 : f32[2,3]"' in text
    ids = dict(re.findall(r"^\s*(v\d+) \[label=\"([^\\\"]+)", text, flags=re.M))
    by_label = {}
    for vid, label in ids.items():
        by_label.setdefault(label, []).append(vid)
    x, b = by_label["%x"][0], by_label["%b"][0]
    a_in, b_in = by_label["%a"][0], [v for v in by_label["%b"] if v != b][0]
    assert f"{x} -> {a_in};" in text and f"{b} -> {b_in};" in text
    assert re.search(r"-> v\d+ \[ltail=cluster_\d+\];", text)  # exp reads the call's value


def test_repeated_and_uncalled_functions_are_each_drawn_once(tmp_path):
    g = parse(TWICE)
    dot = to_dot(g)
    assert len(_dot_nodes(dot)) == len(_keys(g)) - 1  # the first call is a cluster, the second a node
    assert dot.count("subgraph cluster_") == 2  # the first call of fused_0, and fused_1 on its own
    assert "function fused_1 (not called)" in dot
    page = to_html(g)
    assert page.count("data-node=") == len(_keys(g))
    assert 'data-function="fused_1"' in page


# ---- .svg ------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_svg_through_graphviz(fused, tmp_path):
    text = dump_graph(fused, tmp_path / "g.svg").read_text()
    assert "<svg" in text
    assert text.count('class="cluster"') == len(_calls(fused))


def test_svg_without_graphviz_says_how_to_install_it(fused, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LucidError, match=r"apt-get install graphviz") as err:
        dump_graph(fused, tmp_path / "g.svg")
    assert "dot" in str(err.value) and ".dot and .html" in str(err.value)
    monkeypatch.undo()
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(LucidError, match=r"not installed"):
        dump_graph(fused, tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


# ---- .html -----------------------------------------------------------------------------------

def _page_data(page):
    m = re.search(r'<script type="application/json" id="lucid-data">(.*?)</script>', page, flags=re.S)
    return json.loads(m.group(1))["nodes"]


@pytest.mark.parametrize("which", ["cnn", "fused", "fused_cnn"])
def test_html_is_self_contained_with_one_element_per_value(which, request, tmp_path):
    g = request.getfixturevalue(which)
    page = dump_graph(g, tmp_path / "g.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=|<link\b|@import|url\((?!#)", page)
    drawn = re.findall(r'data-node="([^"]+)"', page)
    assert sorted(drawn) == sorted(_keys(g))
    data = _page_data(page)
    assert sorted(data) == sorted(_keys(g))
    assert page.count('class="cl"') == len(_calls(g))


def test_html_details_of_values(cnn, fused, tmp_path):
    data = _page_data(to_html(fused))
    call = data["%0"]
    assert call["op"] == "call" and call["callee"] == "fused_0" and call["ret"] == "fused_0/%1"
    assert call["in"] == ["%x", "%b"] and call["users"] == ["%1"] and call["loc"] == "model.py:7"
    assert data["fused_0/%a"]["in"] == ["%x"] and data["fused_0/%0"]["fn"] == "fused_0"
    assert data["%1"]["type"] == "f32[2,3]" and data["%1"]["dtype"] == "float32" and data["%1"]["out"] == 1

    data = _page_data(to_html(cnn))
    names = value_names(cnn)
    conv = next(n for n in cnn.nodes if n.op == "conv2d")
    d = data[f"%{names[conv]}"]
    assert d["shape"] == [2, 4, 8, 8] and ["padding", "(1, 1)"] in d["attrs"]
    assert "test_dump.py:" in d["loc"]


class FakePlan:
    """What the memory planner leaves in meta["memory"], as far as dumps are concerned."""

    def __init__(self, buffers):
        self.buffers = buffers
        self.arena_size, self.naive_size, self.lower_bound = 4096, 10240, 3072

    def buffer_of(self, node):
        return self.buffers.get(node)

    def summary(self):
        return "memory plan: fake, arena 4.0 KiB"


def _with_plan(graph):
    computed = graph.compute_nodes
    plan = FakePlan({computed[0]: (0, 24), computed[1]: (64, 24)})
    return Graph(graph.name, graph.inputs, graph.nodes, graph.outputs, graph.params,
                 {**graph.meta, "memory": plan}, graph.functions), plan


def test_html_and_dot_show_the_memory_plan(fused, tmp_path):
    g, _ = _with_plan(fused)
    page = to_html(g)
    data = _page_data(page)
    assert data["%0"]["buf"] == [0, 24] and data["%1"]["buf"] == [64, 24]
    assert "buf" not in data["%x"] and "buf" not in data["fused_0/%0"]
    assert "arena 4.0 KiB, naive 10.0 KiB, lower bound 3.0 KiB" in page
    assert "memory plan: fake" in page
    assert "@64 24 B" in page  # on the box of %1
    dot = to_dot(g)
    assert "buffer @0 (24 B)" in dot and "@64 (24 B)" in dot


def test_html_of_a_real_memory_plan(fused_cnn, tmp_path):
    plan = fused_cnn.meta["memory"]
    data = _page_data(to_html(fused_cnn))
    names = value_names(fused_cnn)
    with_buffers = [n for n in fused_cnn.nodes if plan.buffer_of(n) is not None]
    assert with_buffers
    for n in with_buffers:
        assert data[f"%{names[n]}"]["buf"] == list(plan.buffer_of(n))


def _chain(n):
    body = [f"  %{k} = {('exp', 'neg', 'relu')[k % 3]}({'%x' if k == 0 else f'%{k - 1}'}) : f32[4]"
            for k in range(n)]
    return body, [f"%{n - 1}"]


def _fan_out(n):  # one value read by n ops that all land in one row
    return [f"  %{k} = neg(%x) : f32[4]" for k in range(n)], [f"%{k}" for k in range(n)]


@pytest.mark.parametrize("shape", [_chain, _fan_out])
def test_html_of_a_big_graph_is_quick(shape, tmp_path):
    """3000 values, deep or wide, lay out and write in well under the 5 s budget."""
    body, results = shape(3000)
    g = parse("\n".join(["graph big(%x: f32[4]) {", *body, "  return " + ", ".join(results), "}"]))
    t0 = time.perf_counter()
    page = dump_graph(g, tmp_path / "big.html").read_text()
    assert time.perf_counter() - t0 < 5.0
    assert page.count("data-node=") == 3001
    assert len(page) < 3_000_000


# ---- headless Chromium runs the page ---------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _dump_dom(url, tmp_path):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", url]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("headless chromium did not finish within 60 s")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_renders_every_value(fused_cnn, tmp_path):
    path = dump_graph(fused_cnn, tmp_path / "page.html")
    call = _calls(fused_cnn)[0]
    key = f"%{value_names(fused_cnn)[call]}"
    dom = _dump_dom(path.as_uri() + "#" + key.replace("%", "%25"), tmp_path)
    keys = _keys(fused_cnn)
    assert len(re.findall(r'data-node="', dom)) == len(keys)
    assert sorted(re.findall(r'data-node="([^"]+)"', dom)) == sorted(keys)
    assert f'data-ready="{len(keys)}"' in dom  # the script ran to its end and found every value
    # the value named in the address was selected and its details shown
    assert re.search(r'class="cl sel" data-node="' + re.escape(key) + '"', dom)
    assert f"<h3>{key} = call</h3>" in dom and call.attrs["callee"] in dom


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_search_highlights_ops(cnn, tmp_path):
    path = dump_graph(cnn, tmp_path / "page.html")
    dom = _dump_dom(path.as_uri() + "#q=reshape", tmp_path)
    n = sum(1 for node in cnn.nodes if "reshape" in node.op)
    assert n and len(re.findall(r'class="n [a-z_]+ hit"', dom)) == n
    assert f"{n} found" in dom


# ---- DumpInstrument --------------------------------------------------------------------------

SIMPLE = """\
graph f(%x: f32[3]) {
  %0 = exp(%x) : f32[3]
  %1 = exp(%x) : f32[3]
  %2 = add(%0, %1) : f32[3]
  %3 = neg(%x) : f32[3]
  return %2
}"""


def test_dump_instrument_writes_every_pass_and_a_summary(tmp_path):
    graph = parse(SIMPLE)
    fake = FakePlan({})

    @graph_pass("plan")
    def plan(g):
        return Graph(g.name, g.inputs, g.nodes, g.outputs, g.params, {**g.meta, "memory": fake}, g.functions)

    debug = tmp_path / "debug"
    dumper = DumpInstrument(debug, formats=("txt", "dot", "html"))
    dumper.add_phase("trace", 0.25)
    out = PassManager([dce, cse, plan], [dumper]).run(graph)
    dumper.add_phase("build", 0.5)

    exts = ["txt", "dot", "html"] + (["svg"] if shutil.which("dot") else [])
    stems = ["00_input"] + [f"{k:02d}_{name}.{when}" for k, name in enumerate(["dce", "cse", "plan"], 1)
                            for when in ("before", "after")]
    expected = {f"{s}.{e}" for s in stems for e in exts} | {"summary.txt", "summary.json"}
    assert {p.name for p in debug.iterdir()} == expected
    assert (debug / "00_input.txt").read_text() == graph.format(locs=True) + "\n"
    assert (debug / "01_dce.after.txt").read_text() == (debug / "02_cse.before.txt").read_text()
    assert (debug / "02_cse.after.txt").read_text() == out.format(locs=True) + "\n"

    s = json.loads((debug / "summary.json").read_text())
    assert [p["name"] for p in s["passes"]] == ["dce", "cse", "plan"]
    assert [(p["ops_before"], p["ops_after"]) for p in s["passes"]] == [(4, 3), (3, 2), (2, 2)]
    assert s["ops_input"] == 4 and s["ops_output"] == 2
    assert [p["name"] for p in s["phases"]] == ["trace", "build"]  # build came after the run
    assert s["total_ms"] >= 750.0 and s["total_ms"] == pytest.approx(s["passes_ms"] + 750.0)
    assert s["memory"] == {"arena_size": 4096, "naive_size": 10240, "lower_bound": 3072,
                           "summary": "memory plan: fake, arena 4.0 KiB"}
    text = (debug / "summary.txt").read_text()
    for word in ("dce", "cse", "plan", "trace", "build", "total", "arena 4096", "lower bound 3072"):
        assert word in text
    assert re.search(r"^\s*1\s+dce\s+[\d.]+\s+4\s+3$", text, flags=re.M)


def test_dump_instrument_counts_ops_inside_functions(fused, tmp_path):
    dumper = DumpInstrument(tmp_path, formats=("txt",))
    PassManager([dce], [dumper]).run(fused)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["passes"][0]["ops_before"] == 2 + 2  # call and exp, add and relu inside fused_0
    assert s["memory"] is None


def test_dump_instrument_adds_svg_only_when_graphviz_is_there(fused, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    dumper = DumpInstrument(tmp_path / "a", formats=("txt",))
    PassManager([dce], [dumper]).run(fused)
    assert not list((tmp_path / "a").glob("*.svg"))


def test_dump_instrument_skips_svg_that_graphviz_would_take_long_on(fused, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/bin/dot")  # never run here
    monkeypatch.setattr(dumping, "SVG_AUTO_MAX_COST", 0)
    dumper = DumpInstrument(tmp_path, formats=("txt",))
    PassManager([dce], [dumper]).run(fused)
    assert not list(tmp_path.glob("*.svg"))
    s = json.loads((tmp_path / "summary.json").read_text())
    assert len(s["notes"]) == 3 and "00_input: no .svg (Graphviz layout cost" in s["notes"][0]
    assert "open the .html" in (tmp_path / "summary.txt").read_text()


def test_dot_layout_cost_counts_ranks_that_edges_cross():
    g = parse("""graph f(%x: f32[3]) {
  %0 = exp(%x) : f32[3]
  %1 = exp(%0) : f32[3]
  %2 = exp(%1) : f32[3]
  %3 = add(%2, %x) : f32[3]
  %w = param : f32[3]
  %4 = mul(%3, %w) : f32[3]
  return %4
}""")
    # 7 values; %x -> %3 crosses 3 ranks; %w sits right above %4, like dot puts it
    assert dot_layout_cost(g) == 7 + 3
