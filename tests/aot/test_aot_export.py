"""lucid.export / lucid.load_artifact: fresh processes, no compilation, outputs, files."""
import json
import os
import sys

import numpy as np
import pytest

import lucid
from lucid.errors import ArtifactError, DTypeError, ShapeError

from _aot_helpers import LOAD_AND_RUN, TwoHeads, assert_close, run_fresh


def test_resnet_in_a_fresh_process_equals_eager(resnet, tmp_path):
    folder, x, ref = resnet
    np.save(tmp_path / "x.npy", x)
    done = run_fresh(LOAD_AND_RUN, folder, tmp_path / "x.npy", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    # a shared library loads with ctypes alone: LLVM is never even imported
    assert "kind Tensor llvm False" in done.stdout
    assert_close(np.load(tmp_path / "out0.npy"), ref)


def test_load_artifact_does_not_trace_or_compile(small, monkeypatch):
    import llvmlite.binding as llvm

    import lucid.codegen.llvm as lucid_llvm
    import lucid.compiler

    tracing = sys.modules["lucid.ir.trace"]  # (lucid.ir.trace is also the function's name)

    def refuse(*args, **kwargs):
        raise AssertionError("load_artifact must not trace or compile")

    for mod, names in ((llvm, ("parse_assembly", "parse_bitcode", "create_mcjit_compiler")),
                       (llvm.TargetMachine, ("emit_object", "emit_assembly")),
                       (lucid_llvm, ("jit", "object_code", "shared_object_code", "load_object", "optimize",
                                     "_compile", "link_ir")),
                       (tracing, ("trace",)), (lucid.compiler, ("trace",))):
        for name in names:
            monkeypatch.setattr(mod, name, refuse)
    folder, x, ref = small
    art = lucid.load_artifact(folder)
    out = art(x)
    assert isinstance(out, tuple) and len(out) == 2
    for got, want in zip(out, ref):
        assert isinstance(got, lucid.Tensor)
        assert_close(got.numpy(), want)


def test_specs_manifest_and_files(small):
    folder, x, ref = small
    art = lucid.load_artifact(folder)
    assert art.path == folder
    assert art.input_specs == [((2, 3, 8, 8), "float32")]
    assert art.output_specs == [((2, 5), "float32"), ((2, 5), "float32")]
    m = art.manifest
    assert m["lucid_version"] == lucid.__version__ and m["format_version"] == 1
    assert m["target"]["triple"] and m["target"]["cpu"] and "avx2" in m["target"]["features"]
    assert len(m["graph_hash"]) == 64
    for name in ("model.so", "weights.bin", "model.h", "graph.txt", "graph.html"):
        assert os.path.isfile(os.path.join(folder, name))
        assert len(m["files"][name]) == 64
    tensors = {t["name"]: t for t in m["weights"]["tensors"]}
    offsets = [t["offset"] for t in tensors.values() if t["offset"] is not None]
    assert offsets and all(o % 64 == 0 for o in offsets)
    # the convolution's constant weight ships pre-packed, once (not also as the plain array)
    conv_w = [n[:-len("#packed")] for n in tensors if n.endswith("#packed")]
    assert len(conv_w) == 1 and tensors[conv_w[0]]["offset"] is None
    for n in conv_w:
        o, c, kh, kw = tensors[n]["shape"]
        assert tensors[n + "#packed"]["shape"] == [-(-o // 6) * 6 * c * kh * kw + 8]
        assert tensors[n + "#packed"]["offset"] % 64 == 0
    assert os.path.getsize(os.path.join(folder, "weights.bin")) == m["weights"]["bytes"]
    header = open(os.path.join(folder, "model.h")).read()
    for text in ("int lucid_twoheads_run(const void *weights", "size_t lucid_twoheads_workspace_size(void)",
                 "#define LUCID_TWOHEADS_INPUT0_SHAPE {2, 3, 8, 8}", "#define LUCID_TWOHEADS_OUTPUT1_DTYPE \"float32\"",
                 "void lucid_twoheads_set_num_threads(int n)"):
        assert text in header
    assert "call" in open(os.path.join(folder, "graph.txt")).read()
    assert "<svg" in open(os.path.join(folder, "graph.html")).read()


def test_outputs_are_fresh_arrays_each_call(small):
    folder, x, ref = small
    art = lucid.load_artifact(folder)
    first = art(x)
    kept = [t.numpy().copy() for t in first]
    second = art(lucid.tensor(x * 3))
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a.numpy(), b)  # the second call wrote elsewhere
    assert not np.shares_memory(first[0].numpy(), second[0].numpy())


def test_inputs_are_checked_before_the_native_call(small):
    folder, x, ref = small
    art = lucid.load_artifact(folder)
    with pytest.raises(ShapeError, match="takes 1 inputs, got 2"):
        art(x, x)
    with pytest.raises(ShapeError, match=r"expects shape \(2, 3, 8, 8\), got \(1, 3, 8, 8\)"):
        art(x[:1])
    with pytest.raises(DTypeError, match="expects dtype float32, got float64"):
        art(x.astype(np.float64))
    with pytest.raises(DTypeError, match="numpy array or a lucid tensor"):
        art(x.tolist())
    # a non-contiguous array of the right shape is fine (copied)
    wide = np.zeros((2, 3, 8, 16), np.float32)
    wide[..., ::2] = x
    assert_close(art(wide[..., ::2])[0].numpy(), ref[0])


def test_thread_count_does_not_change_results(resnet):
    folder, x, ref = resnet
    art = lucid.load_artifact(folder)
    art.set_num_threads(1)
    assert art.num_threads == 1
    one = art(x).numpy()
    art.set_num_threads(2)
    assert_close(art(x).numpy(), one)
    with pytest.raises(lucid.LucidError):
        art.set_num_threads(0)


def test_object_file_fallback_without_a_linker(tmp_path, monkeypatch):
    monkeypatch.setenv("LUCID_LINKER", "none")
    lucid.random.seed(5)
    model = TwoHeads()
    x = lucid.random.randn(2, 3, 8, 8)
    folder = tmp_path / "noso"
    lucid.export(model, x, folder)
    assert sorted(os.listdir(folder)) == ["graph.html", "graph.txt", "manifest.json", "model.h", "model.o",
                                          "weights.bin"]
    np.save(tmp_path / "x.npy", x.numpy())
    done = run_fresh(LOAD_AND_RUN, folder, tmp_path / "x.npy", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    for k, want in enumerate(model.eval()(x)):
        assert_close(np.load(tmp_path / f"out{k}.npy"), want.numpy())


def test_export_refuses_bad_arguments(tmp_path):
    model = TwoHeads()
    x = lucid.random.randn(2, 3, 8, 8)
    with pytest.raises(ArtifactError, match="C identifier"):
        lucid.export(model, x, tmp_path / "a", name="my-model")
    with pytest.raises(DTypeError, match="example input 0"):
        lucid.export(model, [[1.0]], tmp_path / "b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="not a folder"):
        lucid.export(model, x, tmp_path / "file")


def test_export_restores_training_mode_and_reports_progress(tmp_path):
    model = TwoHeads()
    stages = []
    lucid.export(model, lucid.random.randn(2, 3, 8, 8), tmp_path / "p", progress=lambda s, f: stages.append((s, f)))
    assert model.training
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["name"] == "model"


def test_a_function_with_nested_outputs_inputs_repeats_and_constants(tmp_path):
    """Outputs the entry function does not write (an input, a repeat, a constant) are
    copied by the C wrapper; the structure (dict, tuple) comes back as the function made it."""
    def f(x, y):
        z = x * 2 + y
        return {"z": z, "x": x, "same": (z, z), "idx": lucid.argmax(z, axis=1),
                "c": lucid.tensor(np.arange(3, dtype=np.float32))}

    x, y = lucid.random.randn(4, 5), lucid.random.randn(4, 5)
    art = lucid.load_artifact(lucid.export(f, (x, y), tmp_path / "fn", name="fn"))
    out, ref = art(x, y.numpy()), f(x, y)
    assert list(out) == ["z", "x", "same", "idx", "c"] and isinstance(out["same"], tuple)
    assert art.output_specs[4] == ((4,), "int64")  # leaves in order: z, x, same (2), idx, c
    assert_close(out["z"].numpy(), ref["z"].numpy())
    np.testing.assert_array_equal(out["x"].numpy(), x.numpy())
    np.testing.assert_array_equal(out["same"][1].numpy(), out["z"].numpy())
    np.testing.assert_array_equal(out["idx"].numpy(), ref["idx"].numpy())
    np.testing.assert_array_equal(out["c"].numpy(), np.arange(3))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_the_artifact(resnet):
    """The library's fork hook resets its thread pool: a child has no workers."""
    folder, x, ref = resnet
    art = lucid.load_artifact(folder)
    art(x)  # the pool's workers exist now
    pid = os.fork()
    if pid == 0:
        ok = np.allclose(art(x).numpy(), ref, rtol=1e-4, atol=1e-4)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_thread_count_from_the_environment(small):
    code = "import sys, lucid; print(lucid.load_artifact(sys.argv[1]).num_threads)"
    done = run_fresh(code, small[0], env={"LUCID_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.split() == ["1"], done.stderr
    done = run_fresh(code, small[0], env={"LUCID_NUM_THREADS": "lots"})
    assert done.returncode != 0 and "LUCID_NUM_THREADS" in done.stderr
