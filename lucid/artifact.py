"""Ahead-of-time artifacts: `export` a model once, `load_artifact` it anywhere, fast.

`export(model, example_inputs, path)` traces and optimises the model (modules in eval
mode) exactly as `lucid.compile` does, then writes the folder `path`:

    manifest.json  format and lucid version, target (triple, CPU, features), the input
                   and output specs, the graph's hash, the weights' layout, sha256 of
                   every other file (written last: a folder without it is incomplete)
    model.so       the native code with a C ABI (lucid.codegen.aot); model.o when no
                   system linker was found (lucid can still load it; C cannot)
    weights.bin    every parameter at a 64-byte aligned offset, ready to be mapped
    model.h        the C API, with the input/output shapes and dtypes as macros
    graph.txt, graph.html   the optimised graph (lucid.ir's text form and HTML view)

`load_artifact(path)` checks the folder and returns an `Artifact`: no tracing, and no
LLVM at all for a shared library (not even importing llvmlite). The weights are mapped
(np.memmap), checksummed in that one pass and never copied; each call allocates its
outputs, so results of earlier calls are never overwritten (the workspace, the arena of
intermediate values, is reused and guarded by a lock). Every refusal is an
`ArtifactError`: a missing folder or file, a manifest that is not one, an artifact format
or lucid version this lucid cannot read, CPU features this machine lacks, a file whose
size or checksum differs from the manifest's. Inputs are checked as `lucid.compile`
checks them (ShapeError, DTypeError) before any native call; an index out of an op's range
(take, gather, scatter_add, roi_align's batch index, ...) raises that op's ShapeError after
it, as eager mode does, and the call's outputs are dropped.

Loading needs manifest.json, the code and weights.bin (the header and graph views are for
people). CPU features are checked against /proc/cpuinfo for the instruction-set
extensions the kernel reports (SSE to AVX-512, FMA, BMI, ...); the artifact needs every
feature LLVM saw on the exporting machine, because its code was compiled for that CPU.
"""
import ctypes
import hashlib
import json
import os
import platform
import re
import threading
import time

import numpy as np

from .errors import ArtifactError, CompileError, DTypeError, LucidError, ShapeError

FORMAT = "lucid-artifact"
FORMAT_VERSION = 1
READABLE_FORMATS = (1,)
ALIGN = 64
MANIFEST = "manifest.json"
WEIGHTS = "weights.bin"

# LLVM feature name -> /proc/cpuinfo flag, for the instruction-set extensions code may use.
# Features outside this table (xsaves, ...) are not reliably listed by the kernel and are
# not checked.
_CPUINFO = {
    "sse": "sse", "sse2": "sse2", "sse3": "pni", "ssse3": "ssse3", "sse4.1": "sse4_1",
    "sse4.2": "sse4_2", "sse4a": "sse4a", "avx": "avx", "avx2": "avx2", "fma": "fma",
    "fma4": "fma4", "f16c": "f16c", "bmi": "bmi1", "bmi2": "bmi2", "popcnt": "popcnt",
    "lzcnt": "abm", "movbe": "movbe", "aes": "aes", "pclmul": "pclmulqdq", "sha": "sha_ni",
    "adx": "adx", "cx16": "cx16", "cmov": "cmov", "mmx": "mmx", "avx512f": "avx512f",
    "avx512cd": "avx512cd", "avx512bw": "avx512bw", "avx512dq": "avx512dq", "avx512vl": "avx512vl",
    "avx512ifma": "avx512ifma", "avx512vbmi": "avx512vbmi", "avx512vbmi2": "avx512_vbmi2",
    "avx512vnni": "avx512_vnni", "avx512bitalg": "avx512_bitalg",
    "avx512vpopcntdq": "avx512_vpopcntdq", "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16",
    "avxvnni": "avx_vnni", "gfni": "gfni", "vaes": "vaes", "vpclmulqdq": "vpclmulqdq",
    "rdrnd": "rdrand", "rdseed": "rdseed", "amx-tile": "amx_tile", "amx-int8": "amx_int8",
    "amx-bf16": "amx_bf16",
}


# ============================================================================ export

def export(model_or_fn, example_inputs, path, *, opt_level=2, name=None, progress=None):
    """Trace, optimise and compile `model_or_fn` for `example_inputs` (a tensor/array or a
    tuple of them: the artifact's fixed input shapes and dtypes) into the folder `path`;
    returns `path`. Modules run in eval mode while tracing (their mode is restored).
    `name` (a C identifier, default "model") names the C API; `progress(stage, fraction)`
    is called as the work proceeds."""
    from .compiler import CompiledFunction, discover
    from .tensor import Tensor

    def step(stage, fraction):
        if progress is not None:
            progress(stage, fraction)

    if not callable(model_or_fn):
        raise CompileError(f"export needs a module or a function, got {type(model_or_fn).__name__}")
    name = "model" if name is None else name
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
        raise ArtifactError(f"export: name must be a C identifier, got {name!r}")
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    for k, a in enumerate(args):
        if not isinstance(a, (Tensor, np.ndarray)):
            raise DTypeError(f"export: example input {k} must be a lucid tensor or a numpy array, "
                             f"got {type(a).__name__}")
    args = tuple(a if isinstance(a, Tensor) else Tensor(a) for a in args)
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ArtifactError(f"export: {path} exists and is not a folder")

    step("tracing", 0.0)
    modules, _ = discover(model_or_fn)
    modes = [(m, m.training) for _, m in modules]
    for m, _ in modes:
        m.eval()
    try:
        compiled = CompiledFunction(model_or_fn, opt_level=opt_level, backend="interpreter")
        build = compiled._build(args, compiled._signature(args), "export")
    finally:
        for m, mode in modes:
            m.train(mode)
    graph = build.graph
    if build.updates:
        raise CompileError("export: the function updates tensors (a training step?); artifacts "
                           "are for inference")
    step("optimised", 0.3)

    from . import __version__
    from .codegen import aot, cache
    from .codegen.llvm import llvm_target
    import llvmlite.binding as llvm

    os.makedirs(path, exist_ok=True)
    graph_text = str(graph)
    key = cache.program_key(graph_text)
    code = aot.build_library(graph, path, name, key, progress)
    for stale in ({"model.so", "model.o"} - {code["file"]}):
        if os.path.exists(os.path.join(path, stale)):
            os.remove(os.path.join(path, stale))

    step("writing weights", 0.85)
    layout, size = aot.weights_layout(graph)
    _write_atomic(path, WEIGHTS, lambda tmp: aot.write_weights(graph, layout, size, tmp))

    triple, _ = llvm_target()
    features = llvm.get_host_cpu_features()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lucid_version": __version__,
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": {"triple": triple, "cpu": llvm.get_host_cpu_name(),
                   "features": sorted(f for f, on in features.items() if on)},
        "graph_hash": hashlib.sha256(graph_text.encode()).hexdigest(),
        "inputs": [_spec(n.type, n.name) for n in graph.inputs],
        "outputs": [_spec(o.type) for o in graph.outputs],
        "out_spec": graph.meta.get("out_spec", "*"),
        "code": code,
        "weights": {"file": WEIGHTS, "bytes": size, "alignment": ALIGN,
                    "tensors": [{"name": n, "offset": off, "shape": list(shape), "dtype": dt}
                                for n, off, shape, dt in layout]},
    }
    step("writing the header and graph views", 0.9)
    _write_atomic(path, "model.h", lambda tmp: _write_text(tmp, aot.header_text(manifest)))
    _write_atomic(path, "graph.txt", lambda tmp: _write_text(tmp, graph.format(locs=True) + "\n"))
    _write_atomic(path, "graph.html", lambda tmp: graph.dump(tmp, title=f"lucid artifact {name}"))
    manifest["files"] = {f: _sha256_file(os.path.join(path, f))
                         for f in (code["file"], WEIGHTS, "model.h", "graph.txt", "graph.html")}
    _write_atomic(path, MANIFEST, lambda tmp: _write_text(tmp, json.dumps(manifest, indent=1) + "\n"))
    step("done", 1.0)
    return path


def _spec(ttype, name=None):
    spec = {"shape": list(ttype.shape), "dtype": ttype.dtype.name,
            "bytes": int(ttype.size * ttype.dtype.np.itemsize)}
    if name:
        spec["name"] = name
    return spec


def _write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def _write_atomic(folder, name, write):
    """Write a file through a temporary name: a reader (or a loaded library) never sees a
    half-written file, and a replaced model.so is a new file, not one rewritten in place."""
    tmp = os.path.join(folder, f".tmp.{name}")  # same suffix: graph dumps go by it
    write(tmp)
    os.replace(tmp, os.path.join(folder, name))


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ============================================================================ loading

def load_artifact(path, *, verify=True):
    """The artifact in folder `path`, ready to call (see the module docstring).
    `verify=False` skips the checksums of the code and weights (sizes are still checked)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ArtifactError(f"no artifact folder at {path}")
    manifest = _read_manifest(path)
    _check_target(manifest["target"], path)
    code = manifest["code"]
    for fname in (code["file"], manifest["weights"]["file"]):
        if not os.path.isfile(os.path.join(path, fname)):
            raise ArtifactError(f"artifact {path} is missing {fname}")
    if verify:
        _check_sum(path, code["file"], manifest)
    return Artifact(path, manifest, verify)


def _read_manifest(path):
    mpath = os.path.join(path, MANIFEST)
    if not os.path.isfile(mpath):
        raise ArtifactError(f"artifact {path} has no {MANIFEST} (not an artifact, or its export "
                            "did not finish)")
    try:
        with open(mpath, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ArtifactError(f"{mpath} is not readable JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{mpath} is not a lucid artifact manifest")
    fv = manifest.get("format_version")
    if fv not in READABLE_FORMATS:
        raise ArtifactError(f"artifact {path} has format version {fv!r}; this lucid reads "
                            f"{', '.join(map(str, READABLE_FORMATS))}: export it again with this lucid")
    from . import __version__

    written, ours = _version(manifest.get("lucid_version")), _version(__version__)
    if written is None or written[:2] > ours[:2]:
        raise ArtifactError(f"artifact {path} was written by lucid {manifest.get('lucid_version')!r}, "
                            f"which this lucid ({__version__}) cannot read: upgrade lucid or export "
                            "it again")
    try:
        for key in ("name", "target", "code", "weights", "inputs", "outputs", "files"):
            manifest[key]
        for key in ("file", "kind", "symbols", "workspace_bytes"):
            manifest["code"][key]
        for spec in manifest["inputs"] + manifest["outputs"]:
            np.dtype(spec["dtype"] if spec["dtype"] != "bool" else np.bool_)
            tuple(int(d) for d in spec["shape"])
        int(manifest["weights"]["bytes"])
        manifest["target"]["features"], manifest["target"]["triple"]
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{mpath} is incomplete or damaged ({type(e).__name__}: {e})") from None
    return manifest


def _version(text):
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:[.+-].*)?", text) if isinstance(text, str) else None
    return None if m is None else tuple(int(g or 0) for g in m.groups())


def _arch(triple):
    arch = triple.split("-")[0].lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def host_cpu_features():
    """The instruction-set extensions of this machine, by LLVM name, from /proc/cpuinfo
    (without importing LLVM); None where the kernel does not say (then LLVM is asked)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return {feat for feat, flag in _CPUINFO.items() if flag in flags}
    except OSError:
        pass
    return None


def _check_target(target, path):
    host_arch = _arch(platform.machine())
    if _arch(target["triple"]) != host_arch:
        raise ArtifactError(f"artifact {path} was built for {target['triple']}; this machine is {host_arch}")
    need = {f.lstrip("+") for f in target["features"]}
    have = host_cpu_features()
    if have is None:
        import llvmlite.binding as llvm

        have = {f for f, on in llvm.get_host_cpu_features().items() if on}
        missing = sorted(need - have)
    else:
        missing = sorted(f for f in need if f in _CPUINFO and f not in have)
    if missing:
        raise ArtifactError(f"artifact {path} was built for a CPU ({target.get('cpu', '?')}) with "
                            f"{', '.join(missing)}, which this machine lacks: export it again here")


def _check_sum(path, fname, manifest, data=None):
    want = manifest["files"].get(fname)
    if want is None:
        raise ArtifactError(f"artifact {path}: the manifest lists no checksum for {fname}")
    if data is None:
        got = _sha256_file(os.path.join(path, fname))
    else:
        got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ArtifactError(f"artifact {path}: {fname} is altered or damaged (sha256 {got[:16]}..., "
                            f"the manifest says {want[:16]}...)")


def _np_dtype(name):
    return np.dtype(np.bool_) if name == "bool" else np.dtype(name)


def _default_threads():
    """LUCID_NUM_THREADS (a positive integer) or the machine's CPUs, as lucid.compile uses."""
    env = os.environ.get("LUCID_NUM_THREADS", "").strip()
    if env:
        if not env.isdigit() or not 1 <= int(env) <= 1024:
            raise LucidError(f"the environment variable LUCID_NUM_THREADS must be an integer in "
                             f"[1, 1024], got {env!r}")
        return int(env)
    return max(1, min(os.cpu_count() or 1, 1024))


class Artifact:
    """A loaded artifact: call it with the inputs the model was exported for."""

    def __init__(self, path, manifest, verify=True):
        self.path = path
        self.manifest = manifest
        self.name = manifest["name"]
        self.input_specs = [(tuple(s["shape"]), s["dtype"]) for s in manifest["inputs"]]
        self.output_specs = [(tuple(s["shape"]), s["dtype"]) for s in manifest["outputs"]]
        self._in_dtypes = [_np_dtype(d) for _, d in self.input_specs]
        self._out_dtypes = [_np_dtype(d) for _, d in self.output_specs]
        self._in_names = [s.get("name") or f"input{k}" for k, s in enumerate(manifest["inputs"])]
        wfile = os.path.join(path, manifest["weights"]["file"])
        size = int(manifest["weights"]["bytes"])
        actual = os.path.getsize(wfile)
        if actual != size:
            raise ArtifactError(f"artifact {path}: {manifest['weights']['file']} has {actual} bytes, "
                                f"the manifest says {size} (truncated or altered)")
        if size:
            # copy-on-write: pages come from the file, and a stray write could never reach it
            self._weights = np.memmap(wfile, dtype=np.uint8, mode="c")
            if verify:
                _check_sum(path, manifest["weights"]["file"], manifest, self._weights)
        else:
            self._weights = np.zeros(ALIGN, np.uint8)
        code = manifest["code"]
        self._lib = NativeLibrary(os.path.join(path, code["file"]), code["kind"], code["symbols"])
        ws = int(self._lib.workspace_size())
        if code.get("workspace_bytes") not in (None, ws):
            raise ArtifactError(f"artifact {path}: the code needs {ws} bytes of workspace, the "
                                f"manifest says {code['workspace_bytes']} (files from different exports?)")
        self._workspace = np.empty(max(ws, 1), np.uint8)  # pages are touched by the first run
        self._lock = threading.Lock()
        self._spec = manifest.get("out_spec", "*")
        if code["kind"] == "shared":
            self._lib.set_num_threads(_default_threads())

    def __repr__(self):
        ins = ", ".join(f"{d}{list(s)}" for s, d in self.input_specs)
        return f"<lucid Artifact {self.name!r} at {self.path}: ({ins})>"

    @property
    def num_threads(self):
        """Threads of the pool this artifact's code runs on."""
        return int(self._lib.get_num_threads())

    def set_num_threads(self, n):
        """Use `n` threads (the caller included) for this artifact's parallel kernels."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 1024:
            raise LucidError(f"set_num_threads(n): n must be an integer in [1, 1024], got {n!r}")
        self._lib.set_num_threads(int(n))

    def __call__(self, *inputs):
        from .ir.trace import unflatten
        from .tensor import Tensor

        if len(inputs) != len(self.input_specs):
            raise ShapeError(f"artifact {self.name} takes {len(self.input_specs)} inputs, got {len(inputs)}")
        arrays = []
        for k, (x, (shape, dname), dt) in enumerate(zip(inputs, self.input_specs, self._in_dtypes)):
            where = f"artifact {self.name}: input {k} ({self._in_names[k]})"
            if isinstance(x, Tensor):
                arr = x.data
            elif isinstance(x, np.ndarray):
                arr = x
            else:
                raise DTypeError(f"{where} must be a numpy array or a lucid tensor, got {type(x).__name__}")
            if arr.shape != shape:
                raise ShapeError(f"{where} expects shape {shape}, got {arr.shape}")
            if arr.dtype != dt:
                raise DTypeError(f"{where} expects dtype {dname}, got {arr.dtype}")
            arrays.append(arr if arr.flags.c_contiguous else arr.copy(order="C"))
        outs = [np.empty(shape, dt) for (shape, _), dt in zip(self.output_specs, self._out_dtypes)]
        in_table = np.array([a.ctypes.data for a in arrays] or [0], dtype=np.uintp)
        out_table = np.array([o.ctypes.data for o in outs] or [0], dtype=np.uintp)
        with self._lock:
            rc = self._lib.run(self._weights.ctypes.data, in_table.ctypes.data, out_table.ctypes.data,
                               self._workspace.ctypes.data)
        if rc != 0:
            # an out-of-range index (lucid.codegen.checks): the op's own error, as eager mode raises
            text = self.manifest["code"].get("index_errors", {}).get(str(rc))
            if text is not None:
                raise ShapeError(f"artifact {self.name}: {text}")
            raise ArtifactError(f"artifact {self.name}: the native run returned {rc}")
        results = [Tensor._wrap(o) for o in outs]
        if self._spec == "*" and len(results) == 1:
            return results[0]
        if self._spec == "*":
            return tuple(results)
        return unflatten(self._spec, results)


class NativeLibrary:
    """The four API functions of an artifact's code, callable through ctypes."""

    def __init__(self, path, kind, symbols):
        self.path = path
        if kind == "shared":
            try:
                lib = ctypes.CDLL(os.path.abspath(path), mode=getattr(os, "RTLD_LOCAL", 0))
            except OSError as e:
                raise ArtifactError(f"cannot load the artifact's library {path}: {e}") from None

            def address(sym):
                try:
                    return ctypes.cast(getattr(lib, sym), ctypes.c_void_p).value
                except AttributeError:
                    raise ArtifactError(f"{path} does not define {sym}") from None
            self._keep = lib
        elif kind == "object":
            from .codegen.llvm import load_object

            with open(path, "rb") as f:
                data = f.read()
            try:
                module = load_object(data, os.path.basename(os.path.dirname(os.path.abspath(path))))
            except CompileError as e:
                raise ArtifactError(f"cannot load the artifact's object file {path}: {e}") from None

            def address(sym):
                try:
                    return module.address(sym)
                except CompileError:
                    raise ArtifactError(f"{path} does not define {sym}") from None
            self._keep = module
        else:
            raise ArtifactError(f"unknown kind of artifact code {kind!r} (expected 'shared' or 'object')")
        vp = ctypes.c_void_p
        self.run = ctypes.CFUNCTYPE(ctypes.c_int32, vp, vp, vp, vp)(address(symbols["run"]))
        self.workspace_size = ctypes.CFUNCTYPE(ctypes.c_uint64)(address(symbols["workspace_size"]))
        self.set_num_threads = ctypes.CFUNCTYPE(None, ctypes.c_int32)(address(symbols["set_num_threads"]))
        self.get_num_threads = ctypes.CFUNCTYPE(ctypes.c_int32)(address(symbols["get_num_threads"]))
