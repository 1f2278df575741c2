"""Every artifact load_artifact must refuse, each with a clear ArtifactError, never a crash."""
import json
import os
import shutil

import pytest

import lucid
from lucid.artifact import host_cpu_features
from lucid.errors import ArtifactError


@pytest.fixture
def copy(small, tmp_path):
    """A private copy of the small artifact, to damage."""
    folder = tmp_path / "art"
    shutil.copytree(small[0], folder)
    return folder


def edit_manifest(folder, change):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_missing_folder(tmp_path):
    with pytest.raises(ArtifactError, match="no artifact folder"):
        lucid.load_artifact(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["manifest.json", "model.so", "weights.bin"])
def test_missing_file(copy, name):
    os.remove(copy / name)
    with pytest.raises(ArtifactError, match="manifest.json|missing " + name):
        lucid.load_artifact(copy)


def test_truncated_weights(copy):
    path = copy / "weights.bin"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="weights.bin has .* bytes.*truncated"):
        lucid.load_artifact(copy)


def test_altered_weights(copy):
    path = copy / "weights.bin"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="weights.bin is altered or damaged"):
        lucid.load_artifact(copy)
    lucid.load_artifact(copy, verify=False)  # the caller may skip the checksum


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_altered_code(copy, how):
    path = copy / "model.so"
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[:1000]
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="model.so is altered or damaged"):
        lucid.load_artifact(copy)


def test_cpu_features_this_machine_lacks(copy):
    have = host_cpu_features()
    lacking = [f for f in ("avx512f", "avx512bw", "amx-tile", "fma4") if have is None or f not in have]
    if not lacking:
        pytest.skip("this CPU has every feature the test could ask for")
    edit_manifest(copy, lambda m: m["target"]["features"].append(lacking[0]))
    with pytest.raises(ArtifactError, match=f"{lacking[0]}, which this machine lacks"):
        lucid.load_artifact(copy)


def test_other_architecture(copy):
    edit_manifest(copy, lambda m: m["target"].update(triple="aarch64-unknown-linux-gnu"))
    with pytest.raises(ArtifactError, match="built for aarch64"):
        lucid.load_artifact(copy)


@pytest.mark.parametrize("version", ["99.0.0", "0.99", "not a version", None])
def test_unreadable_lucid_version(copy, version):
    edit_manifest(copy, lambda m: m.update(lucid_version=version))
    with pytest.raises(ArtifactError, match="cannot read: upgrade lucid or export it again"):
        lucid.load_artifact(copy)


def test_unreadable_format_version(copy):
    edit_manifest(copy, lambda m: m.update(format_version=2))
    with pytest.raises(ArtifactError, match="format version 2"):
        lucid.load_artifact(copy)


@pytest.mark.parametrize("damage", ["garbage", "not a manifest", "incomplete"])
def test_damaged_manifest(copy, damage):
    path = copy / "manifest.json"
    if damage == "garbage":
        path.write_bytes(b"\x00{{{")
        match = "not readable JSON"
    elif damage == "not a manifest":
        path.write_text("[1, 2]")
        match = "not a lucid artifact manifest"
    else:
        edit_manifest(copy, lambda m: m.pop("inputs"))
        match = "incomplete or damaged"
    with pytest.raises(ArtifactError, match=match):
        lucid.load_artifact(copy)


def test_code_from_another_export(copy, resnet):
    """A model.so swapped in from another artifact fails its checksum."""
    shutil.copy(os.path.join(resnet[0], "model.so"), copy / "model.so")
    with pytest.raises(ArtifactError, match="model.so is altered"):
        lucid.load_artifact(copy)
