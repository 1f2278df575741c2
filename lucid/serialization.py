"""`lucid.save(obj, path)` and `lucid.load(path)`: checkpoints without pickle.

A pickle file runs code when it is loaded, so a checkpoint from anywhere would be a
program from anywhere. lucid's format is data only: a JSON description of the object
tree plus numpy `.npy` files read with `allow_pickle=False`. Loading never imports,
constructs or calls anything it names; it builds only the types listed below.

Format, version 1
-----------------
A zip archive (members stored uncompressed) holding:

- `manifest.json`: UTF-8 JSON `{"format": "lucid", "version": 1, "lucid_version": "...",
  "root": NODE}`.
- `arrays/<k>.npy` for k = 0, 1, ...: one array each, in numpy's `.npy` format, never of
  an object dtype.

A NODE is one of:

- `null`, `true`, `false`, a JSON string: None, bool, str;
- a JSON number: an int when it is written without a fraction or exponent, else a float;
  `{"type": "float", "value": "nan" | "inf" | "-inf"}` for non-finite floats;
- `{"type": "list", "items": [NODE, ...]}`, `{"type": "tuple", "items": [NODE, ...]}`;
- `{"type": "dict", "items": [[KEY, NODE], ...]}` with KEY a JSON string or integer, in
  insertion order (an OrderedDict is saved, and loads, as a dict in the same order);
- `{"type": "ndarray", "file": "arrays/<k>.npy"}`: a numpy array;
- `{"type": "scalar", "file": ...}`: a numpy scalar (`np.float32(1.5)`), kept as a 0-d array;
- `{"type": "tensor", "file": ..., "requires_grad": bool}`: a lucid Tensor (subclasses
  such as parameters load as plain Tensors, with `requires_grad` kept);
- `{"type": "dtype", "name": "float32"}`: a lucid dtype.

Objects shared in the tree are written once per reference (no aliasing is restored).
A file whose format or version lucid does not know, or that is truncated, corrupt or
refers to missing members, raises `LucidError` when loaded.
"""
import io
import json
import math
import os
import re
import uuid
import zipfile

import numpy as np

from . import dtypes as _dt
from .errors import LucidError
from .tensor import Tensor

FORMAT = "lucid"
VERSION = 1
MANIFEST = "manifest.json"
_ARRAY_NAME = re.compile(r"arrays/(0|[1-9][0-9]*)\.npy")


# ---- saving ------------------------------------------------------------------------

class _Writer:
    """Turns an object tree into manifest nodes, collecting arrays to write."""

    def __init__(self):
        self.arrays = []
        self._path_ids = set()  # containers on the current path (refuses cycles)

    def array(self, arr, where):
        if arr.dtype.hasobject:
            raise LucidError(f"lucid.save: the array at {where} has dtype {arr.dtype}, which would "
                             "need pickle; convert it to a numeric, bool or string dtype")
        name = f"arrays/{len(self.arrays)}.npy"
        self.arrays.append((name, arr))
        return name

    def node(self, obj, where):
        if isinstance(obj, np.generic):  # before int/float: np.float64 is a float subclass
            return {"type": "scalar", "file": self.array(np.asarray(obj), where)}
        if obj is None or isinstance(obj, (bool, str)):
            return str(obj) if isinstance(obj, str) else obj
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            obj = float(obj)
            if math.isfinite(obj):
                return obj
            return {"type": "float", "value": "nan" if obj != obj else ("inf" if obj > 0 else "-inf")}
        if isinstance(obj, _dt.DType):
            return {"type": "dtype", "name": obj.name}
        if isinstance(obj, Tensor):
            if obj.is_tracer:
                raise LucidError(f"lucid.save: the tensor at {where} is a tracer (a value inside "
                                 "lucid.trace), which has no data to save")
            return {"type": "tensor", "file": self.array(obj.data, where),
                    "requires_grad": bool(obj.requires_grad)}
        if isinstance(obj, np.ndarray):
            return {"type": "ndarray", "file": self.array(obj, where)}
        if isinstance(obj, (list, tuple, dict)):
            if id(obj) in self._path_ids:
                raise LucidError(f"lucid.save: the object at {where} contains itself")
            self._path_ids.add(id(obj))
            try:
                if isinstance(obj, dict):
                    items = [[self.key(k, where), self.node(v, f"{where}[{k!r}]")] for k, v in obj.items()]
                    return {"type": "dict", "items": items}
                items = [self.node(v, f"{where}[{i}]") for i, v in enumerate(obj)]
                return {"type": "tuple" if isinstance(obj, tuple) else "list", "items": items}
            finally:
                self._path_ids.discard(id(obj))
        raise LucidError(f"lucid.save cannot save a {type(obj).__module__}.{type(obj).__qualname__} "
                         f"(at {where}); it saves dicts, lists, tuples, str, int, float, bool, None, "
                         "numpy arrays, lucid tensors and dtypes")

    @staticmethod
    def key(k, where):
        if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            return int(k)
        if isinstance(k, str):
            return str(k)
        raise LucidError(f"lucid.save: dict keys must be str or int, got {type(k).__name__} "
                         f"{k!r} in the dict at {where}")


def save(obj, path):
    """Write `obj` (a tree of dicts, lists, tuples, scalars, arrays, tensors) to `path`.

    `path` is a file name (written to a temporary file first, then renamed, so a failed
    save never leaves a half-written checkpoint) or a writable binary file object."""
    from . import __version__

    writer = _Writer()
    root = writer.node(obj, "root")
    manifest = {"format": FORMAT, "version": VERSION, "lucid_version": __version__, "root": root}
    text = json.dumps(manifest, ensure_ascii=False, allow_nan=False)
    if hasattr(path, "write"):
        _write_zip(path, text, writer.arrays)
        return
    path = os.fspath(path)
    # A fresh name beside the target ("x": never an existing file); unlike mkstemp's
    # 0600 files it gets the usual permissions (umask), which the checkpoint keeps.
    tmp = f"{path}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(tmp, "xb") as fh:
            _write_zip(fh, text, writer.arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_zip(fh, manifest_text, arrays):
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(MANIFEST, manifest_text.encode("utf-8"))
        for name, arr in arrays:
            with zf.open(name, "w", force_zip64=arr.nbytes > (1 << 30)) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


# ---- loading -------------------------------------------------------------------------

class _Reader:
    """Rebuilds the object tree from manifest nodes, reading arrays on demand."""

    def __init__(self, zf):
        self.zf = zf
        self.members = set(zf.namelist())

    def array(self, name):
        if not isinstance(name, str) or not _ARRAY_NAME.fullmatch(name) or name not in self.members:
            raise LucidError(f"the manifest refers to a missing or invalid array member {name!r}")
        with self.zf.open(name) as fh:
            arr = np.lib.format.read_array(fh, allow_pickle=False)
            if fh.read(1):
                raise LucidError(f"array member {name} has trailing data")
        return arr

    def node(self, n):
        if n is None or isinstance(n, (bool, str, int)):
            return n
        if isinstance(n, float):
            return n
        if not isinstance(n, dict) or not isinstance(n.get("type"), str):
            raise LucidError(f"unexpected manifest entry {_short(n)}")
        kind = n["type"]
        if kind in ("list", "tuple"):
            items = n.get("items")
            if not isinstance(items, list):
                raise LucidError(f"a {kind} entry without an items list: {_short(n)}")
            seq = [self.node(v) for v in items]
            return tuple(seq) if kind == "tuple" else seq
        if kind == "dict":
            items = n.get("items")
            if not isinstance(items, list):
                raise LucidError(f"a dict entry without an items list: {_short(n)}")
            out = {}
            for pair in items:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int))
                        and not isinstance(pair[0], bool)):
                    raise LucidError(f"a dict item must be [str or int key, value], got {_short(pair)}")
                out[pair[0]] = self.node(pair[1])
            return out
        if kind == "float":
            value = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}.get(n.get("value"))
            if value is None:
                raise LucidError(f"a float entry with an unknown value: {_short(n)}")
            return value
        if kind == "dtype":
            name = n.get("name")
            if not isinstance(name, str) or name not in {d.name for d in _dt.ALL}:
                raise LucidError(f"unknown dtype in the manifest: {_short(n)}")
            return _dt.as_dtype(name)
        if kind == "ndarray":
            return self.array(n.get("file"))
        if kind == "scalar":
            arr = self.array(n.get("file"))
            if arr.ndim != 0:
                raise LucidError(f"a numpy scalar entry holds an array of shape {arr.shape}")
            return arr[()]
        if kind == "tensor":
            arr = self.array(n.get("file"))
            requires_grad = n.get("requires_grad", False)
            if not isinstance(requires_grad, bool):
                raise LucidError(f"a tensor entry with a non-bool requires_grad: {_short(n)}")
            try:
                lucid_dtype = _dt.as_dtype(arr.dtype)
            except LucidError:
                lucid_dtype = None
            if lucid_dtype is None or lucid_dtype.np != arr.dtype:
                raise LucidError(f"a tensor entry holds an array of dtype {arr.dtype}, "
                                 "which is not a lucid dtype")
            return Tensor(arr, requires_grad=requires_grad)
        raise LucidError(f"unknown entry type {kind!r} in the manifest")


def _short(x, limit=80):
    text = repr(x)
    return text if len(text) <= limit else text[:limit] + "..."


def load(path):
    """Read an object saved by `lucid.save` (a file name or a readable binary file object).

    Raises `LucidError` for anything that is not an intact lucid file of a known version
    (and the usual `FileNotFoundError` when there is no file)."""
    where = getattr(path, "name", None) if hasattr(path, "read") else os.fspath(path)
    if hasattr(path, "read"):
        return _load_from(path, where)
    with open(path, "rb") as fh:
        return _load_from(fh, where)


def _load_from(fh, where):
    try:
        with zipfile.ZipFile(fh) as zf:
            try:
                raw = zf.read(MANIFEST)
            except KeyError:
                raise LucidError("it has no manifest.json (not a file written by lucid.save)") from None
            manifest = json.loads(raw.decode("utf-8"))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise LucidError("its manifest does not describe a lucid file")
            version = manifest.get("version")
            if version != VERSION or isinstance(version, bool):
                raise LucidError(f"it has format version {version!r}; this lucid reads version {VERSION}")
            if "root" not in manifest:
                raise LucidError("its manifest has no root entry")
            return _Reader(zf).node(manifest["root"])
    except LucidError as err:
        raise LucidError(f"lucid.load: {where!s} cannot be loaded: {err}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, TypeError, KeyError,
            UnicodeDecodeError, RecursionError, OverflowError, NotImplementedError, RuntimeError,
            io.UnsupportedOperation) as err:
        raise LucidError(f"lucid.load: {where!s} is not an intact lucid file "
                         f"({type(err).__name__}: {err})") from None
