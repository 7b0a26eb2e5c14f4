"""Published MiT / SegFormer weights load through init_from, in each layout they are published in.

The files are built here with random values, key names and shapes taken from the reference code's
module structure (NVlabs mix_transformer.py and segformer_head.py, HuggingFace modeling_segformer.py,
mmsegmentation mit.py), written out independently of charm_core's module code; outputs are checked
against a functional forward written from HuggingFace's modules."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import torch.nn.functional as F

from charm_core.model import ModelConfig, build_model, init_from
from charm_core.model.segmentor import Segmentor
from charm_core.state_dict_file import load_state_dict_file

# The official MiT-B0 / B1 architecture, written out independently of charm_core's module code.
OFFICIAL = {"b0": dict(dims=(32, 64, 160, 256), depths=(2, 2, 2, 2), decoder=256),
            "b1": dict(dims=(64, 128, 320, 512), depths=(2, 2, 2, 2), decoder=256)}
SR = (8, 4, 2, 1)
HEADS = (1, 2, 5, 8)


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


def _nvlabs_parts(key: str) -> tuple[str, int, str, str, str]:
    """An NVlabs MiT key as (kind, stage from 0, block index, module, leaf); kind: head, embed, norm, block."""
    parts = key.split(".")
    if key.startswith("head."):
        return "head", -1, "", "", parts[-1]
    if key.startswith("patch_embed"):
        return "embed", int(key[11]) - 1, "", parts[1], parts[-1]
    if key.startswith("norm"):
        return "norm", int(key[4]) - 1, "", "", parts[-1]
    return "block", int(parts[0][5:]) - 1, parts[1], ".".join(parts[2:-1]), parts[-1]


# Where each NVlabs tensor sits in another codebase's MiT (module paths from its reference code).
FOREIGN = {
    "hf": dict(embed="patch_embeddings.{stage}.{sub}.{leaf}", subs={"proj": "proj", "norm": "layer_norm"},
               norm="layer_norm.{stage}.{leaf}", block="block.{stage}.{index}.",
               parts={"norm1": "layer_norm_1", "norm2": "layer_norm_2", "attn.q": "attention.self.query",
                      "attn.sr": "attention.self.sr", "attn.norm": "attention.self.layer_norm",
                      "attn.proj": "attention.output.dense", "mlp.fc1": "mlp.dense1",
                      "mlp.dwconv.dwconv": "mlp.dwconv.dwconv", "mlp.fc2": "mlp.dense2"}),
    "mmseg": dict(embed="layers.{stage}.0.{sub}.{leaf}", subs={"proj": "projection", "norm": "norm"},
                  norm="layers.{stage}.2.{leaf}", block="layers.{stage}.1.{index}.",
                  parts={"norm1": "norm1", "norm2": "norm2", "attn.proj": "attn.attn.out_proj", "attn.sr": "attn.sr",
                         "attn.norm": "attn.norm", "mlp.fc1": "ffn.layers.0", "mlp.dwconv.dwconv": "ffn.layers.1",
                         "mlp.fc2": "ffn.layers.4"}),
}


def foreign_layout(nv: dict[str, torch.Tensor], codebase: str, prefix: str) -> dict[str, torch.Tensor]:
    """NVlabs MiT tensors as HuggingFace's SegformerEncoder (separate key / value, ImageNet head as
    `classifier`) or mmsegmentation's MixVisionTransformer (nn.MultiheadAttention's packed q, k, v;
    Mix-FFN linears as 1x1 convolutions; no ImageNet head) holds them."""
    spec = FOREIGN[codebase]
    out = {}
    for key, value in nv.items():
        parts = key.split(".")
        leaf = parts[-1]
        if key.startswith("head."):
            if codebase == "hf":
                out[f"classifier.{leaf}"] = value
        elif key.startswith("patch_embed"):
            out[prefix + spec["embed"].format(stage=int(key[11]) - 1, sub=spec["subs"][parts[1]], leaf=leaf)] = value
        elif key.startswith("norm"):
            out[prefix + spec["norm"].format(stage=int(key[4]) - 1, leaf=leaf)] = value
        else:
            base = prefix + spec["block"].format(stage=int(parts[0][5:]) - 1, index=parts[1])
            module = ".".join(parts[2:-1])
            if codebase == "hf" and module == "attn.kv":
                out[base + f"attention.self.key.{leaf}"], out[base + f"attention.self.value.{leaf}"] = value.chunk(2)
            elif codebase == "mmseg" and module == "attn.q":
                out[base + f"attn.attn.in_proj_{leaf}"] = torch.cat([value, nv[key.replace("attn.q", "attn.kv")]])
            elif module != "attn.kv":
                conv = codebase == "mmseg" and module in ("mlp.fc1", "mlp.fc2") and leaf == "weight"
                out[base + f"{spec['parts'][module]}.{leaf}"] = value[:, :, None, None] if conv else value
    return out


def hf_layout(nv: dict[str, torch.Tensor], prefix: str = "segformer.encoder.") -> dict[str, torch.Tensor]:
    return foreign_layout(nv, "hf", prefix)


def mmseg_layout(nv: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return foreign_layout(nv, "mmseg", "backbone.")


def head_state_dict(name: str, classes: int, layout: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A SegFormer decode head: NVlabs' SegFormerHead (mmseg fork) or HuggingFace's SegformerDecodeHead."""
    g = torch.Generator().manual_seed(seed)
    dims, d = OFFICIAL[name]["dims"], OFFICIAL[name]["decoder"]
    out = {}
    for i, c in enumerate(dims):
        stage = f"linear_c{i + 1}" if layout == "nvlabs" else f"linear_c.{i}"
        out[f"decode_head.{stage}.proj.weight"] = torch.randn(d, c, generator=g) / c ** 0.5
        out[f"decode_head.{stage}.proj.bias"] = torch.randn(d, generator=g)
    fuse, bn, pred = (("linear_fuse.conv", "linear_fuse.bn", "linear_pred") if layout == "nvlabs"
                      else ("linear_fuse", "batch_norm", "classifier"))
    out[f"decode_head.{fuse}.weight"] = torch.randn(d, 4 * d, 1, 1, generator=g) / (4 * d) ** 0.5
    out |= {f"decode_head.{bn}.weight": torch.rand(d, generator=g) + 0.5,
            f"decode_head.{bn}.bias": torch.randn(d, generator=g),
            f"decode_head.{bn}.running_mean": torch.randn(d, generator=g),
            f"decode_head.{bn}.running_var": torch.rand(d, generator=g) + 0.5,
            f"decode_head.{bn}.num_batches_tracked": torch.tensor(1000)}
    out[f"decode_head.{pred}.weight"] = torch.randn(classes, d, 1, 1, generator=g) / d ** 0.5
    out[f"decode_head.{pred}.bias"] = torch.randn(classes, generator=g)
    if layout == "nvlabs":  # mmseg's BaseDecodeHead builds conv_seg, which SegFormerHead never uses
        out |= {"decode_head.conv_seg.weight": torch.randn(classes, d, 1, 1),
                "decode_head.conv_seg.bias": torch.zeros(classes)}
    return out


def reference_stages(hf: dict[str, torch.Tensor], x: torch.Tensor, eps: dict[str, float]) -> list[torch.Tensor]:
    """MiT forward written from HuggingFace's SegformerEncoder on its own tensor names; stage maps
    [N, h, w, C]. `eps`: LayerNorm eps of "embed", "block", "sr" and "stage" norms."""
    p = "segformer.encoder."
    feats = []
    for i in range(4):
        w, b = hf[f"{p}patch_embeddings.{i}.proj.weight"], hf[f"{p}patch_embeddings.{i}.proj.bias"]
        x = F.conv2d(x, w, b, stride=4 if i == 0 else 2, padding=w.shape[-1] // 2)
        n, c, h, wd = x.shape

        def norm(t, name, kind):
            return F.layer_norm(t, (c,), hf[f"{name}.weight"], hf[f"{name}.bias"], eps[kind])

        t = norm(x.flatten(2).transpose(1, 2), f"{p}patch_embeddings.{i}.layer_norm", "embed")
        j = 0
        while f"{p}block.{i}.{j}.layer_norm_1.weight" in hf:
            q_ = f"{p}block.{i}.{j}."

            def lin(u, name):
                return F.linear(u, hf[q_ + name + ".weight"], hf[q_ + name + ".bias"])

            u = norm(t, q_ + "layer_norm_1", "block")
            kv = u
            if SR[i] > 1:
                kv = F.conv2d(u.transpose(1, 2).reshape(n, c, h, wd), hf[q_ + "attention.self.sr.weight"],
                              hf[q_ + "attention.self.sr.bias"], stride=SR[i])
                kv = norm(kv.flatten(2).transpose(1, 2), q_ + "attention.self.layer_norm", "sr")

            def heads(u):
                return u.view(n, -1, HEADS[i], c // HEADS[i]).transpose(1, 2)

            q, k, v = heads(lin(u, "attention.self.query")), heads(lin(kv, "attention.self.key")), \
                heads(lin(kv, "attention.self.value"))
            attn = torch.softmax(q @ k.transpose(-1, -2) / (c // HEADS[i]) ** 0.5, dim=-1) @ v
            t = t + lin(attn.transpose(1, 2).reshape(n, -1, c), "attention.output.dense")
            u = lin(norm(t, q_ + "layer_norm_2", "block"), "mlp.dense1")
            u = F.conv2d(u.transpose(1, 2).reshape(n, -1, h, wd), hf[q_ + "mlp.dwconv.dwconv.weight"],
                         hf[q_ + "mlp.dwconv.dwconv.bias"], padding=1, groups=u.shape[-1])
            t = t + lin(F.gelu(u.flatten(2).transpose(1, 2)), "mlp.dense2")
            j += 1
        t = norm(t, f"{p}layer_norm.{i}", "stage")
        feats.append(t.reshape(n, h, wd, c))
        x = feats[-1].permute(0, 3, 1, 2)
    return feats


def reference_logits(hf: dict[str, torch.Tensor], feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """SegformerDecodeHead (eval mode) on stage maps [N, h, w, C], upsampled to `size` as our model does."""
    h1 = feats[0].shape[1:3]
    ups = []
    for i, f in enumerate(feats):
        y = F.linear(f, hf[f"decode_head.linear_c.{i}.proj.weight"], hf[f"decode_head.linear_c.{i}.proj.bias"])
        ups.append(F.interpolate(y.permute(0, 3, 1, 2), size=h1, mode="bilinear", align_corners=False))
    y = F.conv2d(torch.cat(ups[::-1], dim=1), hf["decode_head.linear_fuse.weight"])       # c4, c3, c2, c1
    bn = "decode_head.batch_norm."
    y = F.relu(F.batch_norm(y, hf[bn + "running_mean"], hf[bn + "running_var"], hf[bn + "weight"], hf[bn + "bias"],
                            training=False, eps=1e-5))
    y = F.conv2d(y, hf["decode_head.classifier.weight"], hf["decode_head.classifier.bias"])
    return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


NVLABS_EPS = {"embed": 1e-5, "block": 1e-6, "sr": 1e-5, "stage": 1e-6}   # ours, and the weights' training
HF_EPS = {"embed": 1e-5, "block": 1e-5, "sr": 1e-5, "stage": 1e-5}


def _model(name: str = "b0", classes: int = 25) -> Segmentor:
    """A one-modality mean-fusion model: logits = upsampled head(backbone(x)), nothing in between."""
    return build_model(ModelConfig(arch="mean", backbone=name, modalities=("rgb",), num_classes=classes)).eval()


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("layout", ["nvlabs", "nvlabs-segformer", "hf-classification", "hf-model", "hf-encoder",
                                    "mmseg"])
def test_every_layout_gives_the_encoder_built_by_hand(tmp_path: Path, layout: str) -> None:
    nv = official_state_dict("b0")
    files = {
        "nvlabs": lambda: _save(nv, tmp_path / "mit_b0.pth"),
        "nvlabs-segformer": lambda: _save({"state_dict": {f"backbone.{k}": v for k, v in nv.items() if "head" not in k}
                                           | head_state_dict("b0", 150, "nvlabs")}, tmp_path / "segformer.pth"),
        "hf-classification": lambda: _save(hf_layout(nv), tmp_path / "model.safetensors"),
        "hf-model": lambda: _save(hf_layout(nv, "encoder."), tmp_path / "pytorch_model.bin"),
        "hf-encoder": lambda: _save(hf_layout(nv, ""), tmp_path / "encoder.safetensors"),
        "mmseg": lambda: _save({"meta": {"mmseg_version": "1.2.2"}, "state_dict": mmseg_layout(nv)},
                               tmp_path / "segformer_mit-b0.pth"),
    }
    model = _model()
    report = init_from(model, files[layout]())
    assert report.layout == layout.split("-")[0].replace("hf", "huggingface")
    by_hand = _model()
    by_hand.backbone.load_state_dict({k: v for k, v in nv.items() if not k.startswith("head.")})
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, expected = model.backbone(x), by_hand.backbone(x)
        reference = reference_stages(hf_layout(nv), x, NVLABS_EPS)
    for a, b, r in zip(ours, expected, reference):
        assert torch.equal(a, b)
        assert _relative_error(a, r) < 5e-5
    # Whatever the file's layout, the encoder keeps the LayerNorm eps the weights were trained with
    # (NVlabs'), not HuggingFace's 1e-5 or mmseg's 1e-6 everywhere.
    norms = {name: m.eps for name, m in model.backbone.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    assert {norms["block1.0.norm1"], norms["block4.1.norm2"], norms["norm4"]} == {NVLABS_EPS["block"]}
    assert {norms["patch_embed2.norm"], norms["block1.0.attn.norm"]} == {NVLABS_EPS["embed"]}
    assert all(k.startswith("backbone.") for k in report.loaded) or layout == "nvlabs-segformer"


def test_huggingface_eps_moves_features_by_float_rounding_only() -> None:
    """The figure the weights module states: HuggingFace's eps (1e-5 everywhere) against NVlabs'."""
    hf = hf_layout(official_state_dict("b0"))
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pairs = zip(reference_stages(hf, x, HF_EPS), reference_stages(hf, x, NVLABS_EPS))
        gaps = [_relative_error(a, b) for a, b in pairs]
    assert 0 < max(gaps) < 5e-5


def test_huggingface_segmentation_checkpoint_gives_huggingface_logits(tmp_path: Path) -> None:
    nv = official_state_dict("b0", seed=2)
    hf = {k: v for k, v in hf_layout(nv).items() if not k.startswith("classifier.")} | head_state_dict("b0", 25, "hf")
    model = _model(classes=25)
    report = init_from(model, _save(hf, tmp_path / "model.safetensors"))
    assert not report.reinitialised and not report.skipped
    assert {k for k in model.state_dict()} == set(report.loaded)       # every tensor of the model came from the file
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model({"rgb": x})
        expected = reference_logits(hf, reference_stages(hf, x, NVLABS_EPS), (64, 96))
    assert logits.shape == (2, 25, 64, 96)
    assert _relative_error(logits, expected) < 5e-5


def test_nvlabs_segformer_decoder_equals_the_huggingface_one_of_the_same_tensors(tmp_path: Path) -> None:
    nv_head = head_state_dict("b0", 25, "nvlabs", seed=3)
    hf_head = head_state_dict("b0", 25, "hf", seed=3)   # the same random draws, HuggingFace's names
    mit = official_state_dict("b0")
    a, b = _model(), _model()
    init_from(a, _save({f"backbone.{k}": v for k, v in mit.items()} | nv_head, tmp_path / "nv.pth"))
    init_from(b, _save(hf_layout(mit) | hf_head, tmp_path / "model.safetensors"))
    for key, value in a.decoder.state_dict().items():
        assert torch.equal(value, b.decoder.state_dict()[key]), key


def test_other_classes_keep_a_fresh_classifier_and_the_rest_of_the_decoder(tmp_path: Path) -> None:
    nv = official_state_dict("b0")
    file = {f"backbone.{k}": v for k, v in nv.items() if not k.startswith("head.")} \
        | head_state_dict("b0", 150, "nvlabs")                                           # ADE20K: 150
    model = _model(classes=25)
    fresh = {k: v.clone() for k, v in model.decoder.linear_pred.state_dict().items()}
    report = init_from(model, _save({"state_dict": file}, tmp_path / "ade.pth"))
    assert set(report.reinitialised) == {"decoder.linear_pred.weight", "decoder.linear_pred.bias"}
    assert "150 classes" in report.reinitialised["decoder.linear_pred.weight"]
    assert all(torch.equal(v, model.decoder.linear_pred.state_dict()[k]) for k, v in fresh.items())
    assert torch.equal(model.decoder.linear_c[3].weight, file["decode_head.linear_c4.proj.weight"])
    assert torch.equal(model.decoder.bn.running_var, file["decode_head.linear_fuse.bn.running_var"])
    assert set(report.skipped) == {"decode_head.conv_seg.weight", "decode_head.conv_seg.bias"}
    summary = report.summary()
    assert "re-initialised decoder.linear_pred.weight" in summary and "skipped 2" in summary


def test_mmseg_decoder_is_skipped_with_the_reason(tmp_path: Path) -> None:
    nv = official_state_dict("b0")
    head = {f"decode_head.convs.{i}.conv.weight": torch.zeros(256, c, 1, 1)
            for i, c in enumerate(OFFICIAL["b0"]["dims"])}
    model = _model()
    report = init_from(model, _save({"state_dict": mmseg_layout(nv) | head}, tmp_path / "mmseg.pth"))
    assert set(report.skipped) == set(head)
    assert all("per stage" in why for why in report.skipped.values())
    assert "decoder.linear_fuse.weight" in report.not_in_file


def test_a_charm_checkpoint_fine_tunes_into_other_classes(tmp_path: Path) -> None:
    from charm_core.checkpoint import save_checkpoint

    cfg = ModelConfig(backbone="tiny", num_classes=25)
    source = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / "run.safetensors", source, cfg)
    target = build_model(ModelConfig(backbone="tiny", num_classes=4))
    report = init_from(target, path)
    assert report.layout == "charm"
    assert set(report.reinitialised) == {"decoder.linear_pred.weight", "decoder.linear_pred.bias"}
    own = target.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("decoder.linear_pred."):
            assert torch.equal(own[key], value), key


def test_save_pretrained_folder_is_accepted(tmp_path: Path) -> None:
    _save(hf_layout(official_state_dict("b0")), tmp_path / "model.safetensors")
    assert init_from(_model(), tmp_path).layout == "huggingface"


def test_wrong_variant_reports_shapes_and_the_variant(tmp_path: Path) -> None:
    path = tmp_path / "mit_b1.safetensors"
    save_file(official_state_dict("b1"), str(path))
    with pytest.raises(ValueError, match=r"patch_embed1.proj.weight: file \(64, 3, 7, 7\) vs model \(32, 3, 7, 7\)"
                                         r".*holds MiT-b1: set model.backbone=b1"):
        init_from(_model("b0"), path)


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path) -> None:
    state = official_state_dict("b0")
    del state["norm4.weight"]
    state["block1.0.attn.extra"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"1 missing \['norm4.weight'\], 1 unexpected \['block1.0.attn.extra'\]"):
        init_from(_model(), path)


def test_a_file_without_an_encoder_is_named(tmp_path: Path) -> None:
    path = _save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="no MiT encoder found"):
        init_from(_model(), path)


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
