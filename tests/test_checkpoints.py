"""Weight files are read without running code, and broken files give errors naming the file."""

import os
import pickle
import random

import pytest
import torch
from safetensors.torch import save_file

from grounded_inpaint.checkpoints import load_state_dict, unwrap_state_dict
from grounded_inpaint.errors import CheckpointError

MARKER_ENV = "GROUNDED_INPAINT_PWNED"


class _Exploit:
    """Unpickling this calls os.putenv — a stand-in for arbitrary code execution."""

    def __reduce__(self):
        return (os.putenv, (MARKER_ENV, "1"))


def test_safetensors_round_trip(tmp_path):
    sd = {"a.weight": torch.randn(3, 4), "b": torch.arange(5)}
    save_file(sd, tmp_path / "m.safetensors")
    out = load_state_dict(tmp_path / "m.safetensors")
    assert set(out) == set(sd) and torch.equal(out["a.weight"], sd["a.weight"])


def test_pth_wrapped_and_module_prefix(tmp_path):
    sd = {"module.x": torch.ones(2), "module.y": torch.zeros(1)}
    torch.save({"model": sd, "epoch": 3}, tmp_path / "m.pth")
    out = load_state_dict(tmp_path / "m.pth")
    assert set(out) == {"x", "y"}


def test_pickled_callable_is_refused_and_never_run(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"w": _Exploit()}, f)
    os.environ.pop(MARKER_ENV, None)
    with pytest.raises(CheckpointError) as info:
        load_state_dict(path)
    assert "evil.pth" in str(info.value) and "run code" in str(info.value)
    # os.putenv does not touch os.environ, so read the real process environment
    import ctypes

    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    assert libc.getenv(MARKER_ENV.encode()) is None


def test_pickled_callable_inside_torch_zip_is_refused(tmp_path):
    path = tmp_path / "evil2.pt"
    torch.save({"w": torch.ones(1), "payload": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="run code"):
        load_state_dict(path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_names_the_file(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    good = tmp_path / f"good{suffix}"
    sd = {"w": torch.randn(64, 64)}
    if suffix == ".pth":
        torch.save(sd, good)
    else:
        save_file(sd, good)
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError) as info:
        load_state_dict(path)
    assert str(path) in str(info.value) and "corrupted" in str(info.value)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path, seed):
    path = tmp_path / "noise.pth"
    path.write_bytes(random.Random(seed).randbytes(1000))
    with pytest.raises(CheckpointError, match="noise.pth"):
        load_state_dict(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        load_state_dict(tmp_path / "nothere.pth")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown checkpoint type"):
        load_state_dict(tmp_path / "w.onnx")


def test_no_tensors():
    with pytest.raises(CheckpointError, match="no tensors"):
        unwrap_state_dict({"epoch": 1}, "x.pth")
    with pytest.raises(CheckpointError, match="state dict"):
        unwrap_state_dict([1, 2], "x.pth")
