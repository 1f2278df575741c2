"""The one long-lived LLVM JIT of the process, and the optimisation pipeline.

Why one engine: llvmlite's MCJIT takes ownership of its target machine, kernels call the
shared runtime (`lucid_parallel_for`) by name, and worker threads of that runtime run
code that must never be unmapped. So the process holds ONE target machine for the host
(`get_host_cpu_name()` + `get_host_cpu_features()`, opt level 3, static relocations
and the JIT's large code model, as numba does: sections may land anywhere in the address
space) and ONE MCJIT engine, created on first use and never disposed. The runtime module (lucid/codegen/runtime.py) is added to it before any kernel.

Every module takes one path: IR text -> parse -> verify -> O3 (new pass manager, loop and
SLP vectorisation, host features) -> ELF object -> checked -> added to the engine. The
object bytes are kept (`JitModule.object`), so the on-disk cache stores exactly what was
loaded and `load_object` brings a cached kernel back without running LLVM's optimiser or
code generator. The runtime module's object is cached the same way, so a process whose
programs all come from the disk cache runs no LLVM pass at all.

These objects suit this JIT, not a shared library: an AOT .so (lucid.codegen.aot) is
compiled by a second target machine, `shared_library_machine()` (`reloc="pic"`,
`codemodel="small"`), after `link_ir` has linked its modules and internalised all but its
API. PIC with the large model is not an option for the JIT either: MCJIT's loader resolves
its GOTOFF64 relocations wrongly and the code crashes. Undefined symbols are checked
before an object is added: MCJIT aborts the whole process on a symbol it cannot resolve,
lucid raises CompileError instead.

Conventions for everyone who writes kernel IR text
--------------------------------------------------
* Pointers: llvmlite 0.50 bundles LLVM 22, which has only OPAQUE pointers. Write `ptr`
  in hand-written IR. The parser still accepts the typed spelling (`float*`, `i8*`,
  `void (i8*, i64, i64)*`, `i8**`) and reads every one of them as plain `ptr`, so IR
  printed by llvmlite.ir's builder and the declaration in the codegen brief work as
  they are. Consequences: pointee types mean nothing (loads, stores and GEPs name the
  element type, pointer-to-pointer bitcasts are no-ops, mixing spellings is legal), old
  intrinsic names (`llvm.memcpy.p0i8.p0i8.i64`) are upgraded to `.p0` forms, and printed
  IR and error messages show `ptr`.
* Target: start a module with `target triple = "..."` and `target datalayout = "..."`
  from `llvm_target()`; a module that names neither gets the host's.
* Runtime symbols are DECLARED, never defined, in kernel modules, e.g.
  `declare void @lucid_parallel_for(ptr, ptr, i64)`; the C library (malloc, free,
  memset, memcpy, libm, pthreads) resolves by name as well.
* Exported (non-internal) symbol names are process-wide. `jit` renames a definition that
  clashes with one already loaded and `JitModule.address` still finds it under the name
  written in the text; prefer `internal` for helpers. Identical IR text is compiled once.
* Floating point: `fmul`/`fadd` pairs become FMA only with the `contract` flag (or use
  `llvm.fmuladd` / `llvm.fma`); reductions vectorise only with `reassoc` (or `fast`).
"""
import ctypes
import hashlib
import itertools
import re
import struct
import threading

import llvmlite.binding as llvm
from llvmlite.binding import ffi

from ..errors import CompileError
from . import runtime

RUNTIME_MODULE = "lucid-runtime"

_lock = threading.RLock()  # the LLVM context, target machine and engine are not thread-safe
_engine_state = None
_rename_ids = itertools.count(1)


class _Engine:
    """The process-wide target machine and MCJIT engine, and what has been loaded."""

    def __init__(self):
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        llvm.initialize_native_asmparser()
        _load_process_symbols()
        target = llvm.Target.from_default_triple()
        self.tm = target.create_target_machine(
            cpu=llvm.get_host_cpu_name(),
            features=llvm.get_host_cpu_features().flatten(),
            opt=3, reloc="default", codemodel="jitdefault", jit=True)
        self.triple = self.tm.triple
        self.data_layout = str(self.tm.target_data)
        self.ee = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self.tm)
        # Never dispose the engine: detached worker threads may still be spinning inside
        # runtime code while the interpreter shuts down.
        self.ee._owned = True
        self.exports = {}      # linked symbol name -> name of the module defining it
        self.by_digest = {}    # sha256 of IR text / object bytes -> JitModule
        self.runtime = None    # the runtime's JitModule, loaded before any kernel


def _load_process_symbols():
    """Make the running process's symbols (libc, libm, pthreads) resolvable by name."""
    if llvm.address_of_symbol("malloc") is None:
        with ffi.OutputString() as err:
            if ffi.lib.LLVMPY_LoadLibraryPermanently(None, err):
                raise CompileError(f"llvm: cannot load the process's symbols: {err}")


def _raw_engine():
    """The engine, created on first use (without the runtime: for compiling only)."""
    global _engine_state
    with _lock:
        if _engine_state is None:
            _engine_state = _Engine()
        return _engine_state


def _engine():
    """The engine, with the runtime module loaded and the default thread count applied."""
    with _lock:
        eng = _raw_engine()
        if eng.runtime is None:
            # The runtime's object code comes from the disk cache like any program's: a
            # cache hit then runs no LLVM optimiser or code generator at all.
            from . import cache

            text = runtime.runtime_ir(eng.triple)
            data = cache.cached("lucid runtime module\n" + text, lambda: _compile(eng, text, RUNTIME_MODULE)[0])
            eng.runtime = _add_object(eng, (data, {}), RUNTIME_MODULE, digest=None)
            runtime._bind(eng.runtime)
        runtime.apply_default_num_threads()  # raises on a bad LUCID_NUM_THREADS
        return eng


def llvm_target():
    """(triple, data_layout) of the host, for `target triple`/`target datalayout` lines."""
    eng = _raw_engine()
    return eng.triple, eng.data_layout


class JitModule:
    """A module loaded into the engine: its object code and its exported symbols."""

    __slots__ = ("name", "object", "_addresses")

    def __init__(self, name, object_bytes, addresses):
        self.name = name
        self.object = object_bytes
        self._addresses = addresses  # name as written -> absolute address

    @property
    def symbols(self):
        """The exported symbols, by the names the module's text gave them."""
        return tuple(sorted(self._addresses))

    def address(self, symbol):
        """Absolute address of an exported function or global of this module."""
        try:
            return self._addresses[symbol]
        except KeyError:
            raise CompileError(f"jit module {self.name!r} defines no exported symbol "
                               f"{symbol!r}; it exports {list(self.symbols)}") from None

    def cfunc(self, symbol, restype, *argtypes):
        """The function `symbol` callable from Python through ctypes (releases the GIL)."""
        return ctypes.CFUNCTYPE(restype, *argtypes)(self.address(symbol))

    def __repr__(self):
        return f"JitModule({self.name!r}, symbols={list(self.symbols)})"


# ---------------------------------------------------------------------------- pipeline

def optimize(module_ref, tm=None, unroll=True):
    """Run LLVM's O3 pipeline (loop + SLP vectorisation, host features) on a ModuleRef,
    tuned for `tm` (default: the JIT's target machine).

    `unroll=False` leaves out loop unrolling (vectorisation and interleaving stay): the
    whole-program modules of lucid.codegen.program take it. Their loops have constant
    trip counts, which O3 unrolls fully (RoI-align's sampling loops, short reductions),
    and that unrolled code is most of their optimisation and code generation time: a
    detector's training step (559 kernels) builds in 30 s of CPU instead of 50 s, and
    runs about 5% slower (the inner loops are vectorised and interleaved either way).
    Hand-blocked code (the shared gemm) keeps it."""
    with _lock:
        tm = tm or _raw_engine().tm
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pto.loop_interleaving = True
        pto.loop_unrolling = bool(unroll)
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(module_ref, pb)
    return module_ref


def _parse(eng, ir_text, name):
    """Parse and verify IR text; errors name the module and show the offending line."""
    if not isinstance(ir_text, str):
        raise CompileError(f"llvm module {name!r}: expected LLVM IR text (str), got {type(ir_text).__name__}")
    try:
        mod = llvm.parse_assembly(ir_text)
    except RuntimeError as e:
        raise CompileError(_syntax_message(name, ir_text, str(e))) from None
    try:
        mod.verify()
    except RuntimeError as e:
        raise CompileError(_verify_message(name, ir_text, str(e))) from None
    mod.name = name
    if not mod.triple:
        mod.triple = eng.triple
    if not mod.data_layout:
        mod.data_layout = eng.data_layout
    return mod


def _excerpt(lines, lineno, col=None):
    out = []
    for i in range(max(1, lineno - 2), min(len(lines), lineno + 1) + 1):
        mark = ">" if i == lineno else " "
        out.append(f"{mark}{i:5d} | {lines[i - 1]}")
        if i == lineno and col:
            out.append(" " * (9 + col - 1) + "^")
    return "\n".join(out)


def _syntax_message(name, text, err):
    m = re.search(r":(\d+):(\d+): error: (.*)", err)
    if not m:
        return f"llvm module {name!r}: invalid LLVM IR: {err.strip()}"
    lineno, col, what = int(m.group(1)), int(m.group(2)), m.group(3).strip()
    lines = text.splitlines()
    where = _excerpt(lines, lineno, col) if 1 <= lineno <= len(lines) else ""
    return f"llvm module {name!r}: invalid LLVM IR at line {lineno}, column {col}: {what}\n{where}"


def _verify_message(name, text, err):
    """The verifier prints offending instructions, not line numbers: find them in the text."""
    lines = text.splitlines()
    norm = {}
    for i, line in enumerate(lines, 1):
        norm.setdefault(_normalise(line), i)
    found = []
    for shown in err.splitlines()[1:]:
        i = norm.get(_normalise(shown))
        if i is not None and i not in found:
            found.append(i)
    head = err.strip().splitlines()[0] if err.strip() else "verification failed"
    msg = f"llvm module {name!r}: invalid LLVM IR: {head}"
    if found:
        found.sort()
        where = "\n".join(_excerpt(lines, i) for i in found)
        msg += f" (at line{'s' if len(found) > 1 else ''} {', '.join(map(str, found))})\n{where}"
    else:
        msg += "\n" + err.strip()
    return msg


def _normalise(line):
    line = re.sub(r", align \d+", "", line.strip())
    line = re.sub(r"[\w.]+(?:\s*\([^()]*\))?\*+", "ptr", line)  # typed pointers print as ptr
    return re.sub(r"\s+", " ", line)


def _compile(eng, ir, name, rename_clashes=False, unroll=True):
    """IR text -> optimised ELF object bytes, and the renames applied (linked -> written)."""
    with _lock:
        mod = _parse(eng, ir, name)
        renames = {}
        if rename_clashes:
            for gv in itertools.chain(mod.functions, mod.global_variables):
                if gv.is_declaration or gv.linkage in (llvm.Linkage.internal, llvm.Linkage.private):
                    continue
                if gv.name in eng.exports:
                    written = gv.name
                    gv.name = f"{written}.lucid{next(_rename_ids)}"
                    renames[gv.name] = written
        optimize(mod, unroll=unroll)
        return eng.tm.emit_object(mod), renames


# ---------------------------------------------------------------------------- ELF symbols

def _elf_symbols(data, name):
    """(defined global symbols, undefined symbols) of an ELF64 relocatable object."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise CompileError(f"load_object {name!r}: not a little-endian ELF64 object")
    try:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                    for i in range(shnum)]
        defined, undefined = [], []
        for sh in sections:
            if sh[1] != 2:  # SHT_SYMTAB
                continue
            strtab = sections[sh[6]]
            str_off = strtab[4]
            for off in range(sh[4] + sh[9], sh[4] + sh[5], sh[9]):  # skip the null symbol
                st_name, st_info, _other, st_shndx, _v, _s = struct.unpack_from("<IBBHQQ", data, off)
                end = data.index(b"\0", str_off + st_name)
                sym = data[str_off + st_name:end].decode()
                if st_info >> 4 not in (1, 2) or not sym:  # GLOBAL or WEAK only
                    continue
                (undefined if st_shndx == 0 else defined).append(sym)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as e:
        raise CompileError(f"load_object {name!r}: corrupt ELF object ({e})") from None
    return defined, undefined


def _add_object(eng, compiled, name, digest):
    """Check an object's symbols, add it to the engine, and return its JitModule."""
    data, renames = compiled
    defined, undefined = _elf_symbols(data, name)
    clashes = [s for s in defined if s in eng.exports]
    if clashes:
        raise CompileError(f"load_object {name!r}: symbol(s) {clashes} already defined by module "
                           f"{eng.exports[clashes[0]]!r}; exported names are process-wide")
    missing = [s for s in undefined
               if s not in eng.exports and not s.startswith("_GLOBAL_OFFSET_TABLE_")
               and llvm.address_of_symbol(s) is None]
    if missing:
        raise CompileError(f"llvm module {name!r}: unresolved external symbol(s) {missing}: neither "
                           f"defined by a loaded module nor by the process")
    eng.ee.add_object_file(llvm.ObjectFileRef.from_data(data))
    eng.ee.finalize_object()
    addresses = {}
    for sym in defined:
        eng.exports[sym] = name
        addresses[renames.get(sym, sym)] = eng.ee.get_function_address(sym)
    jm = JitModule(name, data, addresses)
    if digest is not None:
        eng.by_digest[digest] = jm
    return jm


# ---------------------------------------------------------------------------- public API

def jit(ir_text, name, unroll=True):
    """Compile LLVM IR text (optimised for the host) into the engine; a JitModule.

    Identical text is compiled once: the second call returns the first JitModule.
    `unroll`: see `optimize`."""
    if not isinstance(ir_text, str):
        raise CompileError(f"jit {name!r}: expected LLVM IR text (str), got {type(ir_text).__name__}")
    eng = _engine()
    digest = ("ir:" if unroll else "ir-nounroll:") + hashlib.sha256(ir_text.encode()).hexdigest()
    with _lock:
        if digest in eng.by_digest:
            return eng.by_digest[digest]
        return _add_object(eng, _compile(eng, ir_text, name, rename_clashes=True, unroll=unroll), name, digest)


def object_code(ir_text, name="module", unroll=True):
    """The optimised module compiled to a relocatable ELF object (for caches and AOT)."""
    return _compile(_raw_engine(), ir_text, name, unroll=unroll)[0]


def load_object(data, name):
    """Add a precompiled object (from `object_code` or `JitModule.object`) to the engine.

    No LLVM optimisation or code generation runs. Loading the same bytes again returns
    the same JitModule."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CompileError(f"load_object {name!r}: expected object bytes, got {type(data).__name__}")
    data = bytes(data)
    eng = _engine()
    digest = "obj:" + hashlib.sha256(data).hexdigest()
    with _lock:
        if digest in eng.by_digest:
            return eng.by_digest[digest]
        return _add_object(eng, (data, {}), name, digest)


def asm(ir_text, name="module"):
    """The optimised module as host assembly text (for inspection and tests)."""
    eng = _raw_engine()
    with _lock:
        mod = _parse(eng, ir_text, name)
        optimize(mod)
        return eng.tm.emit_assembly(mod)


def optimized_ir(ir_text, name="module"):
    """The module's IR after the O3 pipeline (for inspection and tests)."""
    eng = _raw_engine()
    with _lock:
        return str(optimize(_parse(eng, ir_text, name)))


# ---------------------------------------------------------------------------- ahead of time

_pic_machine = []


def shared_library_machine():
    """A host target machine for code that goes into a shared library: position
    independent, small code model (the JIT's machine is neither; see the module doc).
    Created once; it is never handed to an engine."""
    with _lock:
        if not _pic_machine:
            eng = _raw_engine()
            _pic_machine.append(llvm.Target.from_triple(eng.triple).create_target_machine(
                cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
                opt=3, reloc="pic", codemodel="small"))
        return _pic_machine[0]


def link_ir(texts, keep, name="module", hidden=()):
    """Link several IR modules into one and make every definition internal except the
    names in `keep` (so the optimiser may inline and drop them, and a shared library
    exports nothing else); the linked module's IR text. Names in `hidden` (defined or
    only declared) get hidden visibility: they link across the objects of one shared
    library but are not exported from it."""
    eng = _raw_engine()
    with _lock:
        dest = _parse(eng, texts[0], name)
        for k, text in enumerate(texts[1:], 1):
            dest.link_in(_parse(eng, text, f"{name}#{k}"))
        for gv in itertools.chain(dest.functions, dest.global_variables):
            if gv.name in hidden:
                gv.visibility = llvm.Visibility.hidden
            if gv.is_declaration or gv.name in keep or gv.name in hidden or gv.name.startswith("llvm."):
                continue
            gv.linkage = llvm.Linkage.internal
        missing = [n for n in keep if not any(f.name == n and not f.is_declaration for f in dest.functions)]
        if missing:
            raise CompileError(f"link_ir {name!r}: no definition of {missing}")
        return str(dest)


def shared_object_code(ir_text, name="module", unroll=True):
    """The optimised module as a PIC, small-code-model ELF object, for a shared library
    (the AOT artifact); never loaded into this process's engine. `unroll`: see `optimize`."""
    eng = _raw_engine()
    tm = shared_library_machine()
    with _lock:
        mod = _parse(eng, ir_text, name)
        optimize(mod, tm, unroll=unroll)
        return tm.emit_object(mod)
