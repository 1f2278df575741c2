"""lucid.save / lucid.load: exact round trips, the documented layout, and refusal of
anything that is not an intact lucid file (pickles above all)."""
import io
import json
import math
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import lucid
from lucid.optim import Adam


def assert_same(a, b):
    """Equal values and equal types, all the way down (arrays: dtype, shape, bits)."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert type(k) is type(next(kk for kk in b if kk == k))
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, lucid.Tensor):
        assert a.requires_grad == b.requires_grad
        assert_same(a.data, b.data)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, float):
        assert repr(a) == repr(b)  # nan, -0.0 and subnormals included
    else:
        assert a == b


def nested_state(rng):
    return {
        "model": OrderedDict([
            ("conv.weight", lucid.Tensor(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), requires_grad=True)),
            ("bn.running_mean", lucid.Tensor(np.zeros(4, np.float32))),
            ("bn.num_batches", lucid.Tensor(np.array(7, np.int64))),
            ("mask", lucid.Tensor(rng.random((2, 2)) > 0.5)),
            ("fc.weight", lucid.Tensor(rng.normal(size=(2, 5)), requires_grad=True)),
        ]),
        "epoch": 12,
        "best": 0.8125,
        "big": 2 ** 70,
        "special": [math.inf, -math.inf, math.nan, -0.0, 1e-310, 0.1],
        "flags": (True, False, None),
        "nested": {0: [1, (2, [3.5, "x"])], 1: {}, "empty": [], "tuple": ()},
        "names": ["résumé", "", "multi\nline"],
        "arrays": [np.arange(6, dtype=np.int32).reshape(2, 3), np.asfortranarray(rng.normal(size=(3, 2))),
                   np.array([], dtype=np.float64).reshape(0, 4), np.array(["a", "bc"]), np.float32(1.5),
                   np.int64(-3), np.bool_(True), np.array(2.5, np.float16), rng.normal(size=(5,))[::2]],
        "dtypes": [lucid.float32, lucid.int64, lucid.bool_],
    }


def test_round_trip_is_exact(tmp_path, rng):
    obj = nested_state(rng)
    lucid.save(obj, tmp_path / "state.lucid")
    back = lucid.load(tmp_path / "state.lucid")
    # OrderedDict comes back as a dict in the same order; everything else keeps its type.
    obj["model"] = dict(obj["model"])
    assert_same(obj, back)
    assert back["arrays"][0].flags.writeable
    assert back["model"]["conv.weight"].dtype == lucid.float32


def test_round_trip_of_optimizer_state_dict(tmp_path):
    ps = [lucid.Tensor(np.ones((2, 3), np.float32), requires_grad=True),
          lucid.Tensor(np.ones(4), requires_grad=True)]
    opt = Adam([{"params": ps[:1], "lr": 0.01}, {"params": ps[1:]}], amsgrad=True)
    for p in ps:
        p.grad = lucid.Tensor(np.full(p.shape, 0.5, p.dtype.np))
    opt.step()
    sd = opt.state_dict()
    path = tmp_path / "optim.lucid"
    lucid.save(sd, str(path))
    assert_same(sd, lucid.load(str(path)))


def test_file_objects_and_scalars():
    buf = io.BytesIO()
    lucid.save(3, buf)
    buf.seek(0)
    assert lucid.load(buf) == 3
    for value in (None, "text", 2.5, [], {}):
        buf = io.BytesIO()
        lucid.save(value, buf)
        buf.seek(0)
        assert_same(value, lucid.load(buf))


def test_layout_is_the_documented_one(tmp_path):
    path = tmp_path / "x.lucid"
    lucid.save({"w": lucid.Tensor(np.ones(2, np.float32), requires_grad=True), "n": 1.0}, path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["arrays/0.npy", "manifest.json"]
        manifest = json.loads(zf.read("manifest.json"))
        arr = np.load(io.BytesIO(zf.read("arrays/0.npy")), allow_pickle=False)
    assert manifest["format"] == "lucid" and manifest["version"] == 1
    assert manifest["root"] == {"type": "dict", "items": [
        ["w", {"type": "tensor", "file": "arrays/0.npy", "requires_grad": True}], ["n", 1.0]]}
    np.testing.assert_array_equal(arr, np.ones(2, np.float32))


class Custom:
    pass


@pytest.mark.parametrize("obj,match", [
    (np.array([1, "a", None], dtype=object), "pickle"),
    ({"a": [Custom()]}, r"Custom \(at root\['a'\]\[0\]\)"),
    ({(1, 2): 3}, "keys must be str or int"),
    ({True: 3}, "keys must be str or int"),
    ({1.5: 3}, "keys must be str or int"),
    (lambda: 0, "cannot save"),
    ({1, 2}, "cannot save a builtins.set"),
])
def test_unsupported_objects_are_refused(tmp_path, obj, match):
    path = tmp_path / "bad.lucid"
    with pytest.raises(lucid.LucidError, match=match):
        lucid.save(obj, path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_cycles_are_refused(tmp_path):
    a = []
    a.append(a)
    with pytest.raises(lucid.LucidError, match="contains itself"):
        lucid.save(a, tmp_path / "c.lucid")
    shared = [1]
    lucid.save([shared, shared], tmp_path / "ok.lucid")  # shared, not cyclic: fine
    assert lucid.load(tmp_path / "ok.lucid") == [[1], [1]]


def test_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.lucid"
    lucid.save({"v": 1}, path)
    with pytest.raises(lucid.LucidError):
        lucid.save({"v": Custom()}, path)
    assert lucid.load(path) == {"v": 1}


def test_tracers_are_refused(tmp_path):
    def f(x):
        lucid.save(x, tmp_path / "t.lucid")
        return x

    with pytest.raises(lucid.LucidError, match="tracer"):
        lucid.trace(f, lucid.Tensor(np.ones(2, np.float32)))


# ---- loading refuses anything but an intact lucid file -------------------------------

def write_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def manifest(root, version=1, fmt="lucid"):
    return json.dumps({"format": fmt, "version": version, "root": root})


def npy_bytes(arr, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


class Boom:
    def __reduce__(self):
        return (print, ("pickle payload executed",))


def test_pickle_file_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(lucid.LucidError, match="not an intact lucid file"):
        lucid.load(path)
    assert "executed" not in capsys.readouterr().out


def test_pickled_array_member_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.lucid"
    payload = npy_bytes(np.array([Boom()], dtype=object), allow_pickle=True)
    write_zip(path, {"manifest.json": manifest({"type": "ndarray", "file": "arrays/0.npy"}),
                     "arrays/0.npy": payload})
    with pytest.raises(lucid.LucidError, match="allow_pickle"):
        lucid.load(path)
    assert "executed" not in capsys.readouterr().out


def test_torch_style_zip_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    write_zip(path, {"archive/data.pkl": pickle.dumps({"a": 1}), "archive/version": "3"})
    with pytest.raises(lucid.LucidError, match="no manifest.json"):
        lucid.load(path)


@pytest.mark.parametrize("members,match", [
    ({"manifest.json": "{not json"}, "not an intact"),
    ({"manifest.json": "[1, 2]"}, "does not describe a lucid file"),
    ({"manifest.json": manifest(1, fmt="other")}, "does not describe a lucid file"),
    ({"manifest.json": manifest(1, version=2)}, "format version 2; this lucid reads version 1"),
    ({"manifest.json": manifest(1, version="1")}, "format version '1'"),
    ({"manifest.json": json.dumps({"format": "lucid", "version": 1})}, "no root"),
    ({"manifest.json": manifest({"type": "pickle", "data": "gASV"})}, "unknown entry type 'pickle'"),
    ({"manifest.json": manifest({"type": "ndarray", "file": "arrays/0.npy"})},
     "missing or invalid array member"),
    ({"manifest.json": manifest({"type": "ndarray", "file": "../../etc/passwd"}), "../../etc/passwd": "x"},
     "missing or invalid array member"),
    ({"manifest.json": manifest({"type": "tensor", "file": "arrays/0.npy"}),
      "arrays/0.npy": npy_bytes(np.ones(2, np.uint8))}, "not a lucid dtype"),
    ({"manifest.json": manifest({"type": "tensor", "file": "arrays/0.npy", "requires_grad": "yes"}),
      "arrays/0.npy": npy_bytes(np.ones(2))}, "requires_grad"),
    ({"manifest.json": manifest({"type": "ndarray", "file": "arrays/0.npy"}),
      "arrays/0.npy": npy_bytes(np.ones(100))[:-40]}, "not an intact"),
    ({"manifest.json": manifest({"type": "ndarray", "file": "arrays/0.npy"}),
      "arrays/0.npy": npy_bytes(np.ones(2)) + b"extra"}, "trailing data"),
    ({"manifest.json": manifest({"type": "dict", "items": [[[1], 2]]})}, "dict item"),
    ({"manifest.json": manifest({"type": "dtype", "name": "complex128"})}, "unknown dtype"),
    ({"manifest.json": manifest({"type": "float", "value": "huge"})}, "float entry"),
    ({"manifest.json": manifest({"type": "list"})}, "items list"),
    ({"manifest.json": manifest({"type": "scalar", "file": "arrays/0.npy"}),
      "arrays/0.npy": npy_bytes(np.ones(2))}, "shape"),
])
def test_tampered_files_are_refused(tmp_path, members, match):
    path = tmp_path / "bad.lucid"
    write_zip(path, members)
    with pytest.raises(lucid.LucidError, match=match):
        lucid.load(path)


def test_deeply_nested_manifest_is_refused(tmp_path):
    path = tmp_path / "deep.lucid"
    depth = 100000
    root = '{"type": "list", "items": [' * depth + "1" + "]}" * depth
    write_zip(path, {"manifest.json": '{"format": "lucid", "version": 1, "root": ' + root + "}"})
    with pytest.raises(lucid.LucidError):
        lucid.load(path)


def test_truncated_and_corrupted_files_are_refused(tmp_path, rng):
    path = tmp_path / "ok.lucid"
    lucid.save({"w": lucid.Tensor(rng.normal(size=(64, 64)))}, path)
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 10):
        bad = tmp_path / f"cut{cut}.lucid"
        bad.write_bytes(data[:cut])
        with pytest.raises(lucid.LucidError):
            lucid.load(bad)
    # Flip bytes inside the array data: the zip's CRC check catches it.
    corrupt = bytearray(data)
    start = data.index(b"\x93NUMPY") + 200
    corrupt[start:start + 8] = bytes(8)
    bad = tmp_path / "flipped.lucid"
    bad.write_bytes(bytes(corrupt))
    with pytest.raises(lucid.LucidError):
        lucid.load(bad)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        lucid.load(tmp_path / "nope.lucid")


def test_saved_file_has_ordinary_permissions(tmp_path):
    lucid.save([1], tmp_path / "a.lucid")
    (tmp_path / "b.txt").write_bytes(b"")
    assert (tmp_path / "a.lucid").stat().st_mode == (tmp_path / "b.txt").stat().st_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.lucid", "b.txt"]
