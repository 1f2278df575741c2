"""The on-disk cache of compiled programs.

A program's object code depends only on the optimised graph (its text: structure, types,
attributes, constants; param values are passed in by pointer), the target (triple, CPU
name and features) and the versions of lucid and its code generator. The cache key hashes
exactly those (the code generator's version is the hash of its source files), so a second process that compiles the same model loads the object file
instead of running LLVM. Each entry carries a checksum of its payload: a truncated or
altered file is detected, deleted and rebuilt, never loaded.

The folder is $LUCID_CACHE_DIR, else $XDG_CACHE_HOME/lucid, else ~/.cache/lucid.
"""
import hashlib
import os
import tempfile

import llvmlite.binding as llvm

MAGIC = b"LUCIDOBJ1\n"
_SOURCE_DIGEST = None


def codegen_digest():
    """A hash of the code generator's own source: changing it invalidates the cache."""
    global _SOURCE_DIGEST
    if _SOURCE_DIGEST is None:
        h = hashlib.sha256()
        here = os.path.dirname(os.path.abspath(__file__))
        for name in sorted(os.listdir(here)):
            if name.endswith(".py"):
                with open(os.path.join(here, name), "rb") as f:
                    h.update(name.encode() + b"\0" + f.read())
        _SOURCE_DIGEST = h.hexdigest()
    return _SOURCE_DIGEST


def cache_dir():
    root = os.environ.get("LUCID_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "lucid")
    return root


def target_fingerprint():
    features = llvm.get_host_cpu_features().flatten()
    return f"{llvm.get_process_triple()}|{llvm.get_host_cpu_name()}|{features}"


def program_key(graph_text):
    from .. import __version__

    h = hashlib.sha256()
    for part in (__version__, codegen_digest(), target_fingerprint(), graph_text):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _path(key):
    return os.path.join(cache_dir(), key[:2], key + ".o")


def load(key):
    """The cached object bytes for `key`, or None (a damaged entry is removed)."""
    path = _path(key)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    header_len = len(MAGIC) + 64
    if len(blob) > header_len and blob.startswith(MAGIC):
        digest = blob[len(MAGIC):header_len].decode("ascii", "replace")
        payload = blob[header_len:]
        if hashlib.sha256(payload).hexdigest() == digest:
            return payload
    try:
        os.remove(path)
    except OSError:
        pass
    return None


def store(key, payload):
    """Write an entry atomically (a reader never sees half a file); errors are ignored:
    a cache that cannot be written only costs the next process a compile."""
    path = _path(key)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + hashlib.sha256(payload).hexdigest().encode("ascii") + payload)
        os.replace(tmp, path)
    except OSError:
        pass


def cached(description, build):
    """The bytes stored under `description` (text naming exactly what they are made from:
    the key is `program_key(description)`), else `build()`'s, stored for the next process."""
    key = program_key(description)
    data = load(key)
    if data is None:
        data = build()
        store(key, data)
    return data
