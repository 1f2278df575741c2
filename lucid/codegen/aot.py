"""Ahead-of-time code: an optimised graph as a shared library with a plain C ABI.

`build_library(graph, folder, name)` emits the same kernels and entry function as the
JIT (lucid.codegen.program.emit_module), links in everything they call -- the packed
gemm, the math functions and the native thread pool (lucid.codegen.runtime, itself LLVM
IR) -- adds a C-ABI wrapper, compiles it for the host as position-independent,
small-code-model objects (the model with its runtime, and the gemm, which is the same for
every model and so comes from the disk cache) in which every symbol is internal or hidden
except the API, and links them into `model.so` with the system C compiler driver (`$LUCID_LINKER`, else `$CC`, else `cc`;
the constructor's pthread_atfork needs the C runtime's start files, so no bare `ld`).
The API, for a graph named `name` (a C identifier):

    size_t lucid_<name>_workspace_size(void);   /* bytes of scratch memory run needs */
    int    lucid_<name>_run(const void *weights, const void *const *inputs,
                            void *const *outputs, void *workspace);   /* 0 = success */

`run` returns a positive code instead when an op met an index outside its range (a take,
gather, scatter or RoI batch index; lucid.codegen.checks): the outputs are then not valid,
and the manifest's code.index_errors maps the code to the op and its place in the model.
    void   lucid_<name>_set_num_threads(int n);
    int    lucid_<name>_get_num_threads(void);

`weights` is weights.bin as it lies on disk (mapped or read whole, 64-byte aligned): the
wrapper finds every parameter at the offset the exporter laid it out at. `inputs` and
`outputs` are tables of pointers to dense C-order buffers, one per graph input/output.
`workspace` (any alignment: the wrapper aligns it) holds the arena and the gemm's
scratch; calls that share one workspace must not overlap. The library owns its own
thread pool, sized at load time from LUCID_NUM_THREADS or the online CPUs.

Without a linker (LUCID_LINKER=none, or none found) the artifact holds the object file
the JIT would load instead: `model.o`, static relocations, large code model, the runtime
not included (the engine's runtime serves it) and the API symbols suffixed with the
graph's hash so two such artifacts can share the process-wide engine. lucid loads it
into the engine without compiling; a C program cannot use it.

lucid.artifact loads either kind back; a shared library needs only ctypes, no LLVM.
"""
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

from ..errors import CompileError

ALIGN = 64  # bytes: every weight offset, and the arena and scratch inside the workspace
API = ("run", "workspace_size", "set_num_threads", "get_num_threads")


def _round_up(n, k=ALIGN):
    return -(-int(n) // k) * k


# ---------------------------------------------------------------------------- weights

PACKED = "#packed"  # suffix of a convolution weight's pre-packed copy (anchors.pack_weight)


def weights_layout(graph):
    """[(tensor name, byte offset, shape, dtype name)] and the file's total size: the
    params in param-node order, then the pre-packed copies of the constant convolution
    weights (`<param>#packed`, in the order the entry function reads them; see
    program.prepacked_params), at 64-byte aligned offsets. A param only ever read through
    its packed copy is not stored twice: its offset is None (the code never reads it)."""
    from .anchors import packed_weight_floats
    from .program import plainly_read, prepacked_params

    packed = prepacked_params(graph)
    plain = plainly_read(graph, packed)
    types = {n.name: n.type for n in graph.param_nodes}
    layout, offset = [], 0
    for node in graph.param_nodes:
        if node.name in packed and node.name not in plain:
            layout.append((node.name, None, tuple(node.type.shape), node.type.dtype.name))
            continue
        layout.append((node.name, offset, tuple(node.type.shape), node.type.dtype.name))
        offset = _round_up(offset + node.type.size * node.type.dtype.np.itemsize)
    for name in packed:
        floats = packed_weight_floats(types[name].shape)
        layout.append((name + PACKED, offset, (floats,), "float32"))
        offset = _round_up(offset + 4 * floats)
    return layout, offset


def write_weights(graph, layout, size, path):
    """weights.bin: each param's bytes at its offset, zero padding between them."""
    from .anchors import pack_weight

    types = {n.name: n.type for n in graph.param_nodes}
    with open(path, "wb") as f:
        pos = 0
        for name, offset, shape, _ in layout:
            if offset is None:
                continue
            if name.endswith(PACKED):
                arr = pack_weight(graph.params[name[:-len(PACKED)]])
            else:
                arr = np.ascontiguousarray(np.asarray(graph.params[name], dtype=types[name].dtype.np))
            if arr.shape != shape:
                raise CompileError(f"export: param {name!r} holds shape {arr.shape}, the graph says {shape}")
            f.write(b"\0" * (offset - pos))
            f.write(arr.tobytes())
            pos = offset + arr.nbytes
        f.write(b"\0" * (size - pos))


# ---------------------------------------------------------------------------- the wrapper

def _bytes_literal(data):
    return "".join(f"\\{b:02X}" for b in data)


def output_sources(graph, output_slot):
    """For every graph output: ("slot", k) if the entry function writes it to outputs[k],
    else where the wrapper copies it from: ("input", i), ("param", name) or ("constant",
    bytes). An output that repeats an earlier one is ("slot", first position)."""
    inputs = {n: k for k, n in enumerate(graph.inputs)}
    out = []
    for o in graph.outputs:
        if o in output_slot:
            out.append(("slot", output_slot[o]))
        elif o.op == "input":
            out.append(("input", inputs[o]))
        elif o.op == "param":
            out.append(("param", o.name))
        else:
            out.append(("constant", np.asarray(o.attrs["value"], dtype=o.type.dtype.np).tobytes()))
    return out


def wrapper_ir(symbols, entry_name, graph, layout, sources, arena_size, scratch_bytes, with_runtime):
    """IR text of the C-ABI functions around `entry_name` (and, for a shared library,
    the constructor that starts the runtime)."""
    offsets = {name: off for name, off, _, _ in layout}
    nparams = max(1, len(layout))
    arena = _round_up(arena_size)
    lines = [f"declare i32 @{entry_name}(ptr, ptr, ptr, ptr, ptr)",
             "declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)",
             "declare void @lucid_set_num_threads(i32)",
             "declare i32 @lucid_get_num_threads()"]
    consts = []
    body = [f"define i32 @{symbols['run']}(ptr %weights, ptr %inputs, ptr %outputs, ptr %workspace) {{",
            "entry:",
            f"  %params = alloca [{nparams} x ptr], align 8"]
    for k, (name, off, _, _) in enumerate(layout):
        body += [f"  %w{k} = getelementptr i8, ptr %weights, i64 {off}" if off is not None else
                 f"  %w{k} = getelementptr i8, ptr null, i64 0",  # read only packed: not stored
                 f"  %s{k} = getelementptr [{nparams} x ptr], ptr %params, i64 0, i64 {k}",
                 f"  store ptr %w{k}, ptr %s{k}, align 8"]
    body += ["  %wsi = ptrtoint ptr %workspace to i64",
             f"  %wsu = add i64 %wsi, {ALIGN - 1}",
             f"  %wsa = and i64 %wsu, {-ALIGN}",
             "  %arena = inttoptr i64 %wsa to ptr",
             f"  %scratch = getelementptr i8, ptr %arena, i64 {arena}",
             f"  %status = call i32 @{entry_name}(ptr %inputs, ptr %outputs, ptr %params, ptr %arena, ptr %scratch)",
             "  %failed = icmp ne i32 %status, 0",
             "  br i1 %failed, label %fail, label %done",
             "fail:",  # an out-of-range index (lucid.codegen.checks): no copies, the code
             "  ret i32 %status",
             "done:"]
    for k, (o, (kind, what)) in enumerate(zip(graph.outputs, sources)):
        if kind == "slot" and what == k:
            continue
        nbytes = o.type.size * o.type.dtype.np.itemsize
        body += [f"  %od{k}p = getelementptr ptr, ptr %outputs, i64 {k}",
                 f"  %od{k} = load ptr, ptr %od{k}p, align 8"]
        if kind == "slot":
            body += [f"  %os{k}p = getelementptr ptr, ptr %outputs, i64 {what}",
                     f"  %os{k} = load ptr, ptr %os{k}p, align 8"]
        elif kind == "input":
            body += [f"  %os{k}p = getelementptr ptr, ptr %inputs, i64 {what}",
                     f"  %os{k} = load ptr, ptr %os{k}p, align 8"]
        elif kind == "param":
            body += [f"  %os{k} = getelementptr i8, ptr %weights, i64 {offsets[what]}"]
        else:
            consts.append(f"@lucid_aot_const{k} = private unnamed_addr constant [{len(what)} x i8] "
                          f"c\"{_bytes_literal(what)}\", align {ALIGN}")
            body += [f"  %os{k} = getelementptr i8, ptr @lucid_aot_const{k}, i64 0"]
        body.append(f"  call void @llvm.memcpy.p0.p0.i64(ptr %od{k}, ptr %os{k}, i64 {nbytes}, i1 false)")
    body += ["  ret i32 0", "}"]
    lines += consts + body
    lines += [f"define i64 @{symbols['workspace_size']}() {{",
              f"  ret i64 {arena + _round_up(scratch_bytes) + ALIGN}", "}",  # as build_library says
              f"define void @{symbols['set_num_threads']}(i32 %n) {{",
              "  call void @lucid_set_num_threads(i32 %n)", "  ret void", "}",
              f"define i32 @{symbols['get_num_threads']}() {{",
              "  %n = call i32 @lucid_get_num_threads()", "  ret i32 %n", "}"]
    if with_runtime:
        lines.append(_CONSTRUCTOR)
    return "\n".join(lines) + "\n"


# Starts the library's runtime when it is loaded: thread pool sized from LUCID_NUM_THREADS
# (a positive integer) or the online CPUs (sysconf(_SC_NPROCESSORS_ONLN) = 84 on Linux),
# and the fork hook that resets the pool in a child.
_CONSTRUCTOR = """
@lucid_aot_env = private unnamed_addr constant [18 x i8] c"LUCID_NUM_THREADS\\00"
@llvm.global_ctors = appending global [1 x { i32, ptr, ptr }] [{ i32, ptr, ptr } { i32 65535, ptr @lucid_aot_init, ptr null }]
declare i64 @sysconf(i32)
declare ptr @getenv(ptr)
declare i32 @atoi(ptr)
declare i32 @pthread_atfork(ptr, ptr, ptr)
declare void @lucid_runtime_init(i32)
declare void @lucid_runtime_after_fork()
define internal void @lucid_aot_init() {
entry:
  %n = call i64 @sysconf(i32 84)
  %pos = icmp sgt i64 %n, 0
  %n1 = select i1 %pos, i64 %n, i64 1
  %big = icmp sgt i64 %n1, 1024
  %n2 = select i1 %big, i64 1024, i64 %n1
  %cpus = trunc i64 %n2 to i32
  call void @lucid_runtime_init(i32 %cpus)
  %e = call ptr @getenv(ptr @lucid_aot_env)
  %has = icmp ne ptr %e, null
  br i1 %has, label %env, label %set
env:
  %v = call i32 @atoi(ptr %e)
  %ok = icmp sgt i32 %v, 0
  %v1 = select i1 %ok, i32 %v, i32 %cpus
  br label %set
set:
  %t = phi i32 [ %cpus, %entry ], [ %v1, %env ]
  call void @lucid_set_num_threads(i32 %t)
  %r = call i32 @pthread_atfork(ptr null, ptr null, ptr @lucid_runtime_after_fork)
  ret void
}
"""


# ---------------------------------------------------------------------------- building

def symbol_names(name, suffix=""):
    return {api: f"lucid_{name}{suffix}_{api}" for api in API}


def _linkers():
    chosen = os.environ.get("LUCID_LINKER")
    if chosen is not None:
        return [] if chosen.strip().lower() in ("", "none") else [chosen]
    return [os.environ.get("CC") or "cc"]


def link_shared(obj_paths, so_path):
    """Link the objects `obj_paths` into a shared library with the first linker that works; the command
    used, or None when there is no working linker."""
    errors = []
    for linker in _linkers():
        exe = shutil.which(linker)
        if exe is None:
            continue
        # every symbol must resolve now (-z defs), not when a program loads the library
        libs = ["-Wl,-z,defs", "-lm", "-lpthread"]
        cmd = [exe, "-shared", "-o", so_path] + list(obj_paths) + libs
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as e:
            errors.append(f"{linker}: {e}")
            continue
        if done.returncode == 0:
            return " ".join([os.path.basename(exe), "-shared", "-o", os.path.basename(so_path)]
                            + [os.path.basename(p) for p in obj_paths] + libs)
        errors.append(f"{linker}: {done.stderr.strip()[:500]}")
    if errors and shutil.which(_linkers()[0]) is not None:
        raise CompileError("export: linking the shared library failed:\n" + "\n".join(errors))
    return None


def _cached(linked_text, kind, compile_it):
    """Object code for `linked_text` from the disk cache (exporting the same model again
    costs no LLVM time)."""
    from . import cache

    return cache.cached(f"aot {kind}\n{linked_text}", compile_it)


def build_library(graph, folder, name, key, progress=None):
    """Write the native code of `graph` into `folder` (model.so, or model.o without a
    linker); a dict for the manifest's "code" entry."""
    from ..ir.passes.memory import memory_plan
    from . import anchors, llvm
    from . import checks
    from .program import UNROLL_LOOPS, emit_module, kernels_of, output_slots, prepacked_params
    from .runtime import runtime_ir

    def step(stage, fraction):
        if progress is not None:
            progress(stage, fraction)

    plan = graph.meta.get("memory") or memory_plan(graph)
    slots = output_slots(graph)
    entry_name = f"lucid_entry_{key[:16]}"
    step("generating code", 0.35)
    program_text, kernels, scratch = emit_module(graph, f"lucid_{name}", entry_name, plan, slots,
                                                 prepacked_params(graph))
    index_errors = {str(code): text for code, (_, text) in
                    checks.messages([(node, fn) for node, fn, _ in kernels_of(graph)]).items()}
    scratch_bytes = (scratch + 16) * 4
    workspace = _round_up(plan.arena_size) + _round_up(scratch_bytes) + ALIGN
    layout, _ = weights_layout(graph)
    sources = output_sources(graph, slots)
    uses_gemm = anchors.SGEMM in program_text
    triple, _ = llvm.llvm_target()

    if any(shutil.which(x) for x in _linkers()):
        # two objects: the model (kernels, entry, wrapper, runtime) and the shared gemm,
        # which is the same for every model and so comes from the cache after the first
        # export; the symbols they share are hidden (not exported by the library)
        symbols = symbol_names(name)
        wrapper = wrapper_ir(symbols, entry_name, graph, layout, sources, plan.arena_size, scratch_bytes, True)
        step("optimising and compiling (LLVM)", 0.45)
        shared = set(re.findall(r"^define (?!internal|private)[^@\n]*@(\w+)", runtime_ir(triple), re.M))
        shared.update(anchors.sgemm_entries())
        linked = llvm.link_ir([program_text, wrapper, runtime_ir(triple)], set(symbols.values()),
                              f"lucid_{name}", hidden=shared)
        objects = [_cached(linked, "shared library", lambda: llvm.shared_object_code(linked, f"lucid_{name}", unroll=UNROLL_LOOPS))]
        if uses_gemm:
            gemm = llvm.link_ir([anchors.gemm_module_ir()], set(anchors.sgemm_entries()), "lucid_gemm",
                                hidden=shared)
            objects.append(_cached(gemm, "shared library", lambda: llvm.shared_object_code(gemm, "lucid_gemm")))
        step("linking", 0.8)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            paths = []
            for k, obj in enumerate(objects):
                paths.append(os.path.join(tmp, f"part{k}.o"))
                with open(paths[-1], "wb") as f:
                    f.write(obj)
            so_tmp = os.path.join(tmp, "model.so")
            command = link_shared(paths, so_tmp)
            if command is not None:
                os.replace(so_tmp, os.path.join(folder, "model.so"))
                return {"file": "model.so", "kind": "shared", "symbols": symbols, "linker": command,
                        "kernels": kernels, "workspace_bytes": workspace, "index_errors": index_errors}
    texts = [program_text] + ([anchors.gemm_module_ir()] if uses_gemm else [])
    # no linker: the JIT's own kind of object, without the runtime (the engine has it)
    symbols = symbol_names(name, "_" + key[:12])
    wrapper = wrapper_ir(symbols, entry_name, graph, layout, sources, plan.arena_size, scratch_bytes, False)
    step("optimising and compiling (LLVM)", 0.5)
    linked = llvm.link_ir(texts + [wrapper], set(symbols.values()), f"lucid_{name}")
    obj = _cached(linked, "jit object", lambda: llvm.object_code(linked, f"lucid_{name}", unroll=UNROLL_LOOPS))
    tmp = os.path.join(folder, ".model.o.tmp")
    with open(tmp, "wb") as f:
        f.write(obj)
    os.replace(tmp, os.path.join(folder, "model.o"))
    return {"file": "model.o", "kind": "object", "symbols": symbols, "linker": None, "kernels": kernels,
            "workspace_bytes": workspace, "index_errors": index_errors}


# ---------------------------------------------------------------------------- the C header

def _macro(name):
    return name.upper()


def header_text(manifest):
    """model.h: the API of the artifact's library, with every input's and output's shape
    and dtype as macros (LUCID_<NAME>_...) and the same under LUCID_MODEL_... so that one
    C program (examples/c/run_model.c) builds against any artifact."""
    name = manifest["name"]
    M = f"LUCID_{_macro(name)}"
    sym = manifest["code"]["symbols"]
    guard = f"{M}_MODEL_H"
    out = [f"/* {name}: generated by lucid {manifest['lucid_version']} (artifact format "
           f"{manifest['format_version']}); do not edit.",
           f" * Target: {manifest['target']['triple']}, CPU {manifest['target']['cpu']}.",
           " * Link with model.so. weights.bin must be passed as it lies on disk, at a",
           f" * {ALIGN}-byte aligned address (read it whole, or mmap it). */",
           f"#ifndef {guard}", f"#define {guard}", "", "#include <stddef.h>", "#include <stdint.h>", "",
           "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
           f"#define {M}_WEIGHTS_FILE \"{manifest['weights']['file']}\"",
           f"#define {M}_WEIGHTS_BYTES {manifest['weights']['bytes']}u",
           f"#define {M}_WEIGHTS_ALIGN {ALIGN}u",
           f"#define {M}_WORKSPACE_BYTES {manifest['code']['workspace_bytes']}u",
           f"#define {M}_NUM_INPUTS {len(manifest['inputs'])}",
           f"#define {M}_NUM_OUTPUTS {len(manifest['outputs'])}", ""]
    dtype_codes = {"float32": 0, "float64": 1, "int32": 2, "int64": 3, "bool": 4}
    for kind, specs in (("INPUT", manifest["inputs"]), ("OUTPUT", manifest["outputs"])):
        for k, spec in enumerate(specs):
            shape = spec["shape"]
            label = f" \"{spec['name']}\"" if spec.get("name") else ""
            out += [f"/* {kind.lower()} {k}{label}: {spec['dtype']}[{', '.join(map(str, shape))}] */",
                    f"#define {M}_{kind}{k}_DTYPE \"{spec['dtype']}\"",
                    f"#define {M}_{kind}{k}_NDIM {len(shape)}",
                    f"#define {M}_{kind}{k}_SHAPE {{{', '.join(map(str, shape)) or '1'}}}",
                    f"#define {M}_{kind}{k}_NUMEL {int(np.prod(shape, dtype=np.int64))}u",
                    f"#define {M}_{kind}{k}_BYTES {spec['bytes']}u"]
        out.append("")
    for kind, specs in (("INPUT", manifest["inputs"]), ("OUTPUT", manifest["outputs"])):
        low = kind.lower()
        out += [f"static const size_t lucid_{name}_{low}_bytes[] = "
                f"{{{', '.join(str(s['bytes']) for s in specs) or '0'}}};",
                f"static const int lucid_{name}_{low}_dtypes[] = "
                f"{{{', '.join(str(dtype_codes.get(s['dtype'], -1)) for s in specs) or '0'}}};",
                f"static const char *const lucid_{name}_{low}_names[] = "
                f"{{{', '.join(chr(34) + (s.get('name') or f'{low}{k}') + chr(34) for k, s in enumerate(specs)) or '0'}}};"]
    out += ["/* dtype codes: 0 float32, 1 float64, 2 int32, 3 int64, 4 bool (1 byte) */", "",
            "/* Bytes of scratch memory (any alignment) one call of run needs. */",
            f"size_t {sym['workspace_size']}(void);",
            "/* Run the model: inputs[i] and outputs[i] point to dense C-order buffers of the",
            " * shapes above; returns 0. Calls sharing a workspace must not overlap.",
            " * A positive return value: an input held an index out of range for an op",
            " * (take, gather, scatter_add, roi_align, ...); the outputs are not valid, and",
            " * manifest.json's code.index_errors names the op and the model's source line. */",
            f"int {sym['run']}(const void *weights, const void *const *inputs, void *const *outputs, "
            "void *workspace);",
            "/* Threads of the library's own pool (default: LUCID_NUM_THREADS, else all CPUs). */",
            f"void {sym['set_num_threads']}(int n);",
            f"int {sym['get_num_threads']}(void);", "",
            f'#define {M}_NAME "{name}"']
    if name != "model":
        out += ["", "/* The same under model-independent names. */", f"#define LUCID_MODEL_NAME {M}_NAME"]
    for what in ("WEIGHTS_FILE", "WEIGHTS_BYTES", "WEIGHTS_ALIGN", "WORKSPACE_BYTES", "NUM_INPUTS", "NUM_OUTPUTS"):
        if name != "model":
            out.append(f"#define LUCID_MODEL_{what} {M}_{what}")
    for low in ("input", "output"):
        for what in ("bytes", "dtypes", "names"):
            if name != "model":
                out.append(f"#define lucid_model_{low}_{what} lucid_{name}_{low}_{what}")
    for api in API:
        if sym[api] != f"lucid_model_{api}":
            out.append(f"#define lucid_model_{api} {sym[api]}")
    out += ["", "#ifdef __cplusplus", "}", "#endif", f"#endif /* {guard} */", ""]
    return "\n".join(out)
