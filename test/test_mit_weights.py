"""Official MiT ImageNet weights (SegFormer release key names) load into the backbone, safely."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from charm_core.model import ModelConfig, build_model, load_imagenet_weights
from charm_core.state_dict_file import load_state_dict_file

# The official MiT-B0 / B1 architecture, written out independently of charm_core's module code.
OFFICIAL = {"b0": dict(dims=(32, 64, 160, 256), depths=(2, 2, 2, 2)),
            "b1": dict(dims=(64, 128, 320, 512), depths=(2, 2, 2, 2))}
SR = (8, 4, 2, 1)


def official_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A mit_b*.pth-style state dict: every key of the release (incl. the ImageNet head), random values."""
    g = torch.Generator().manual_seed(seed)
    shapes: dict[str, tuple[int, ...]] = {}
    dims, depths = OFFICIAL[name]["dims"], OFFICIAL[name]["depths"]
    prev = 3
    for i, (c, depth, sr) in enumerate(zip(dims, depths, SR), start=1):
        k = 7 if i == 1 else 3
        shapes |= {f"patch_embed{i}.proj.weight": (c, prev, k, k), f"patch_embed{i}.proj.bias": (c,),
                   f"patch_embed{i}.norm.weight": (c,), f"patch_embed{i}.norm.bias": (c,)}
        for j in range(depth):
            b = f"block{i}.{j}."
            shapes |= {b + "norm1.weight": (c,), b + "norm1.bias": (c,),
                       b + "attn.q.weight": (c, c), b + "attn.q.bias": (c,),
                       b + "attn.kv.weight": (2 * c, c), b + "attn.kv.bias": (2 * c,),
                       b + "attn.proj.weight": (c, c), b + "attn.proj.bias": (c,),
                       b + "norm2.weight": (c,), b + "norm2.bias": (c,),
                       b + "mlp.fc1.weight": (4 * c, c), b + "mlp.fc1.bias": (4 * c,),
                       b + "mlp.dwconv.dwconv.weight": (4 * c, 1, 3, 3), b + "mlp.dwconv.dwconv.bias": (4 * c,),
                       b + "mlp.fc2.weight": (c, 4 * c), b + "mlp.fc2.bias": (c,)}
            if sr > 1:
                shapes |= {b + "attn.sr.weight": (c, c, sr, sr), b + "attn.sr.bias": (c,),
                           b + "attn.norm.weight": (c,), b + "attn.norm.bias": (c,)}
        shapes |= {f"norm{i}.weight": (c,), f"norm{i}.bias": (c,)}
        prev = c
    shapes |= {"head.weight": (1000, dims[-1]), "head.bias": (1000,)}
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


def _backbone(name: str = "b0") -> torch.nn.Module:
    return build_model(ModelConfig(arch="mean", backbone=name)).backbone


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_official_b0_weights_load_by_name(tmp_path: Path, suffix: str) -> None:
    state = official_state_dict("b0")
    path = tmp_path / f"mit_b0{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    backbone = _backbone()
    load_imagenet_weights(backbone, path)
    own = backbone.state_dict()
    assert set(own) == set(state) - {"head.weight", "head.bias"}
    for key, value in own.items():
        assert torch.equal(value, state[key]), key


def test_official_b1_weights_and_the_encoder_output_they_give(tmp_path: Path) -> None:
    state = official_state_dict("b1", seed=1)
    path = tmp_path / "mit_b1.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in state.items()}}, path)  # mmseg-style wrapper
    a, b = _backbone("b1"), _backbone("b1")
    load_imagenet_weights(a, path)
    load_imagenet_weights(b, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fa, fb = a.eval()(x), b.eval()(x)
    assert [tuple(f.shape) for f in fa] == [(1, 16, 16, 64), (1, 8, 8, 128), (1, 4, 4, 320), (1, 2, 2, 512)]
    assert all(torch.equal(u, v) for u, v in zip(fa, fb))


def test_wrong_variant_reports_shapes(tmp_path: Path) -> None:
    path = tmp_path / "mit_b1.safetensors"
    save_file(official_state_dict("b1"), str(path))
    with pytest.raises(ValueError, match=r"patch_embed1.proj.weight: file \(64, 3, 7, 7\) vs model \(32, 3, 7, 7\)"):
        load_imagenet_weights(_backbone("b0"), path)


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path) -> None:
    state = official_state_dict("b0")
    del state["norm4.weight"]
    state["block1.0.attn.extra"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"1 missing \['norm4.weight'\], 1 unexpected \['block1.0.attn.extra'\]"):
        load_imagenet_weights(_backbone(), path)


def test_pth_files_are_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"patch_embed1.proj.weight": Exploit()}, f, protocol=2)
    with pytest.raises(ValueError, match="weights_only"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_non_tensor_content_and_missing_files_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="flat mapping"):
        load_state_dict_file(path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="safetensors"):
        load_state_dict_file(bad)
    with pytest.raises(FileNotFoundError):
        load_state_dict_file(tmp_path / "absent.pth")
