"""charm_core.model: shapes for every subset and config, absent-modality invariance, gradients, masks."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from charm_core.modalities import MODALITIES, all_subsets
from charm_core.model import ARCHS, BACKBONES, ModelConfig, build_model
from charm_core.model.fusion import alignment_loss, mean_fusion
from charm_core.model.mpu import MPUBlock, window_plan
from charm_core.model.semantic_projector import SemanticProjector, project_all

# Not multiples of 32 nor of the window: stage maps 20x18, 10x9, 5x5, 3x3 exercise padding and shifts.
H, W = 80, 72
ATOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(batch: int = 2, h: int = H, w: int = W, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, 3, h, w, generator=g) for m in MODALITIES}


def _model(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(**kw)).eval()


def _mask(subset: tuple[str, ...], batch: int) -> torch.Tensor:
    row = torch.tensor([m in subset for m in MODALITIES])
    return row.expand(batch, -1).clone()


@pytest.mark.parametrize("backbone", [b for b in BACKBONES if b not in ("b3", "b4", "b5")])  # those: b2, deeper
@pytest.mark.parametrize("arch", ARCHS)
def test_every_subset_gives_logits_at_input_size(arch: str, backbone: str) -> None:
    model = _model(arch=arch, backbone=backbone, num_classes=7)
    x = _inputs(batch=1, h=40, w=56)
    with torch.inference_mode():
        for subset in all_subsets():
            logits = model({m: x[m] for m in subset})
            assert logits.shape == (1, 7, 40, 56), subset
            assert torch.isfinite(logits).all()


@pytest.mark.parametrize("kw", [
    dict(arch="charm"),
    dict(arch="charm", symmetric_mpu=True, mpu_blocks=3, window_size=4),
    dict(arch="mean"),
    dict(arch="align"),
])
def test_absent_modalities_do_not_change_the_output(kw: dict) -> None:
    """Per-batch masks: a subset fed alone == all four fed with the others marked unavailable."""
    model = _model(**kw)
    x = _inputs()
    with torch.inference_mode():
        everything = model(x)
        for subset in all_subsets():
            alone = model({m: x[m] for m in subset})
            masked = model(x, available=_mask(subset, 2))
            torch.testing.assert_close(masked, alone, atol=ATOL, rtol=0)
            if len(subset) < 4:  # the test can fail: the absent modalities matter when present
                assert (everything - alone).abs().max() > 100 * ATOL


@pytest.mark.parametrize("kw", [dict(arch="charm"), dict(arch="charm", symmetric_mpu=True), dict(arch="mean")])
def test_mixed_per_sample_masks_match_each_sample_alone(kw: dict) -> None:
    model = _model(**kw)
    x = _inputs(batch=4)
    available = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    garbage = {m: t.clone() for m, t in x.items()}
    for m_idx, m in enumerate(MODALITIES):
        garbage[m][~available[:, m_idx]] = float("nan")  # absent values must not leak, not even NaN
    with torch.inference_mode():
        batched = model(x, available=available)
        batched_garbage = model(garbage, available=available)
        for i, row in enumerate(available.tolist()):
            alone = model({m: x[m][i:i + 1] for m, a in zip(MODALITIES, row) if a})
            torch.testing.assert_close(batched[i:i + 1], alone, atol=ATOL, rtol=0)
    torch.testing.assert_close(batched_garbage, batched, atol=ATOL, rtol=0)


def test_modality_absent_for_the_whole_batch_is_not_computed() -> None:
    model = _model()
    seen = []
    model.backbone.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    x = _inputs(batch=3)
    available = torch.tensor([[1, 0, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    with torch.inference_mode():
        model(x, available=available)  # depth, lidar: all False; event: one sample
        model({"lidar": x["lidar"]})
    assert seen == [3 + 1, 3]  # only the available (modality, sample) pairs reach the backbone


def test_gradients_reach_present_projectors_only() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig()).train()
    x = _inputs(batch=3)
    del x["event"]  # absent: not even passed
    available = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 1]], dtype=torch.bool)  # depth: all False
    model(x, available=available).square().mean().backward()
    for stage in model.fusion:
        for m, projector in stage.projectors.items():
            grads = [p.grad for p in projector.parameters()]
            if m in ("rgb", "lidar"):
                assert all(g is not None and g.abs().sum() > 0 for g in grads), m
            else:
                assert all(g is None or g.abs().sum() == 0 for g in grads), m
        re_grad = stage.evaluator.weight.grad
        assert re_grad[[0, 3]].abs().sum(dim=1).min() > 0 and re_grad[[1, 2]].abs().sum() == 0


def test_all_modalities_projected_at_once_equal_each_projector_alone() -> None:
    """project_all: one depthwise convolution over the modalities' channels side by side and a batched
    1x1 equal each modality's own SemanticProjector, values and gradients."""
    torch.manual_seed(0)
    projectors = [SemanticProjector(8) for _ in range(3)]
    for p in projectors:  # nonzero everywhere: a mixed-up filter or modality would show
        for t in p.parameters():
            t.data.normal_(0.0, 0.3)
    feats = torch.randn(3, 2, 6, 5, 8, requires_grad=True)
    alone = torch.stack([p(f) for p, f in zip(projectors, feats)])
    grads_alone = torch.autograd.grad(alone.square().sum(), [feats, projectors[1].dw7.weight, projectors[2].pw.bias])
    fused = project_all(projectors, feats)
    grads = torch.autograd.grad(fused.square().sum(), [feats, projectors[1].dw7.weight, projectors[2].pw.bias])
    torch.testing.assert_close(fused, alone, rtol=1e-5, atol=1e-5)
    for got, expected in zip(grads, grads_alone):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_re_weights_are_a_softmax_over_present_modalities() -> None:
    model = _model()
    x = _inputs(batch=2)
    available = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 1]], dtype=torch.bool)
    with torch.inference_mode():
        _, aux = model(x, available, with_aux=True)
    assert len(aux["re_weights"]) == 4
    for weights in aux["re_weights"]:  # [B, 4, h, w]
        torch.testing.assert_close(weights.sum(dim=1), torch.ones_like(weights[:, 0]))
        assert (weights[~available] == 0).all() and (weights[available] > 0).all()


def test_mean_fusion_averages_present_modalities_only() -> None:
    feats = torch.stack([torch.full((2, 1, 1, 3), v) for v in (1.0, 2.0, 6.0)])  # [M'=3, B=2, 1, 1, C=3]
    available = torch.tensor([[1, 1, 1], [1, 0, 1]], dtype=torch.bool)
    fused = mean_fusion(feats, available)
    assert fused[0].flatten().tolist() == [3.0] * 3 and fused[1].flatten().tolist() == [3.5] * 3
    assert mean_fusion(feats, None)[1].flatten().tolist() == [3.0] * 3


def test_alignment_loss_hand_computed() -> None:
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    feats = torch.stack([e1.expand(2, 1, 1, 2), e2.expand(2, 1, 1, 2)]).clone().requires_grad_()
    available = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)  # sample 1 has one modality: no pair
    fused = mean_fusion(feats, available)
    loss = alignment_loss(feats, fused, available)
    assert loss.item() == pytest.approx(1 - 2 ** -0.5, abs=1e-6)  # cos(e_i, (e1+e2)/2) = 1/sqrt(2)
    loss.backward()
    assert feats.grad[:, 0].abs().sum() > 0 and feats.grad[:, 1].abs().sum() == 0
    single = alignment_loss(feats[:1], fused, available[:, :1])
    assert single.item() == 0.0 and single.requires_grad


def test_align_arch_exposes_a_differentiable_alignment_loss() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="align")).train()
    logits, aux = model(_inputs(batch=2, h=64, w=64), with_aux=True)
    assert aux["align_loss"].ndim == 0 and aux["align_loss"].item() > 0
    aux["align_loss"].backward()
    assert model.backbone.patch_embed1.proj.weight.grad.abs().sum() > 0


def test_decoder_equals_segformer_concat_then_fuse() -> None:
    """The reordered head must compute exactly SegFormer's: linear, upsample, concat, fuse, BN, ReLU."""
    torch.manual_seed(0)
    head = build_model(ModelConfig(backbone="b0", num_classes=5)).decoder.eval()
    head.bn.running_mean.normal_()
    head.bn.running_var.uniform_(0.5, 2.0)
    dims, sizes = (32, 64, 160, 256), ((20, 24), (10, 12), (5, 6), (3, 3))
    feats = [torch.randn(2, h, w, c) for c, (h, w) in zip(dims, sizes)]
    ups = [F.interpolate(lin(f).permute(0, 3, 1, 2), size=sizes[0], mode="bilinear", align_corners=False)
           for lin, f in zip(head.linear_c, feats)]
    reference = head.linear_pred(F.relu(head.bn(head.linear_fuse(torch.cat(ups, dim=1)))))
    with torch.no_grad():
        torch.testing.assert_close(head(feats), reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("h,w,ws,shifts", [(8, 8, 4, (0, 0)), (8, 8, 4, (2, 2)), (7, 10, 4, (0, 0)),
                                           (7, 10, 4, (2, 2)), (12, 5, 4, (2, 0)), (9, 9, 8, (4, 4))])
def test_window_masks_match_swin_shifted_windows(h: int, w: int, ws: int, shifts: tuple[int, int]) -> None:
    """Two real tokens attend each other iff they share a window of the map whose window borders sit at
    shift + k*ws (Swin's cyclic shift with masking); padding is never attended by real tokens."""
    plan = window_plan(h, w, ws, shifts, batch=1, num_mod=1, available=None, symmetric=False,
                       dtype=torch.float32, device=torch.device("cpu"))
    tokens = plan.s_index.view(plan.num_windows, plan.length)
    real = torch.zeros(plan.num_windows, plan.length, dtype=torch.bool)
    real.view(-1)[plan.s_inverse] = True  # the slot each real token is read back from
    assert sorted(tokens[real].tolist()) == list(range(h * w))  # every token exactly once
    allowed = torch.zeros(h * w, h * w, dtype=torch.bool)
    mask = plan.forward_mask
    for win in range(plan.num_windows):
        ok = torch.ones(plan.length, plan.length, dtype=torch.bool) if mask is None else mask[win, 0] == 0
        for i in range(plan.length):
            for j in range(plan.length):
                if real[win, i] and ok[i, j]:
                    assert real[win, j], "a real token attends padding"
                    allowed[tokens[win, i], tokens[win, j]] = True
    r, c = torch.arange(h * w) // w, torch.arange(h * w) % w
    cell_r = torch.div(r - shifts[0], ws, rounding_mode="floor")
    cell_c = torch.div(c - shifts[1], ws, rounding_mode="floor")
    expected = (cell_r[:, None] == cell_r[None]) & (cell_c[:, None] == cell_c[None])
    assert torch.equal(allowed, expected)


@pytest.mark.parametrize("heads", [1, 2])
def test_mpu_block_matches_a_per_token_reference(heads: int) -> None:
    """Gather/mask bookkeeping vs a plain loop: each query attends the present modalities' tokens
    of its (shifted) window, heads as in the module (one head takes its own path)."""
    torch.manual_seed(0)
    c, h, w, ws, shifts = 64, 6, 7, 4, (2, 2)
    block = MPUBlock(c, heads=heads, mlp_ratio=2.0, symmetric=False).eval()
    s, p = torch.randn(2, h, w, c), torch.randn(2, 2, h, w, c)  # M'=2, B=2
    embed = torch.randn(2, c)
    available = torch.tensor([[True, True], [False, True]])
    plan = window_plan(h, w, ws, shifts, 2, 2, available, False, torch.float32, torch.device("cpu"))
    with torch.no_grad():
        out, _ = block(s, p, embed, plan)
        attn = block.attn
        keys = block.norm_m(p) + embed[:, None, None, None]
        q_all = attn.q(block.norm_s(s))
        k_all, v_all = attn.kv(keys).chunk(2, dim=-1)
        cell = lambda y, x: ((y - shifts[0]) // ws, (x - shifts[1]) // ws)  # noqa: E731
        expected = s.clone()
        d = c // attn.heads
        for b in range(2):
            for y in range(h):
                for x in range(w):
                    ks, vs = [], []
                    for m in range(2):
                        if not available[b, m]:
                            continue
                        for yy in range(h):
                            for xx in range(w):
                                if cell(yy, xx) == cell(y, x):
                                    ks.append(k_all[m, b, yy, xx])
                                    vs.append(v_all[m, b, yy, xx])
                    k, v = torch.stack(ks).view(-1, attn.heads, d), torch.stack(vs).view(-1, attn.heads, d)
                    q = q_all[b, y, x].view(attn.heads, d)
                    weights = torch.einsum("hd,nhd->hn", q, k).mul(d ** -0.5).softmax(dim=-1)
                    expected[b, y, x] += attn.proj(torch.einsum("hn,nhd->hd", weights, v).reshape(c))
        expected = expected + block.mlp(block.norm_mlp(expected))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("inputs,available,message", [
    ({}, None, "non-empty"),
    ({"thermal": torch.zeros(1, 3, 32, 32)}, None, "not modalities"),
    ({"rgb": torch.zeros(1, 1, 32, 32)}, None, r"\[B, 3, H, W\]"),
    ({"rgb": torch.zeros(1, 3, 32, 32), "depth": torch.zeros(1, 3, 32, 16)}, None, "like"),
    ({"rgb": torch.zeros(2, 3, 32, 32)}, torch.ones(2, 3, dtype=torch.bool), "bool tensor"),
    ({"rgb": torch.zeros(2, 3, 32, 32)}, torch.ones(2, 4), "bool tensor"),
    ({"rgb": torch.zeros(2, 3, 32, 32)}, torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool),
     r"samples \[1\] have no available modality"),
])
def test_bad_inputs_raise_clear_errors(inputs: dict, available: torch.Tensor | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _model()(inputs, available)


def test_model_with_a_modality_subset_rejects_others() -> None:
    model = _model(modalities=("lidar", "rgb"))
    assert model.cfg.modalities == ("lidar", "rgb"), "the model's own order, not a global one"
    with pytest.raises(ValueError, match="not modalities of this model"):
        model(_inputs(batch=1, h=32, w=32))
    x = {m: torch.randn(2, 3, 32, 32) for m in ("lidar", "rgb")}
    only_lidar = torch.tensor([[True, False], [True, False]])  # columns in the model's order
    torch.testing.assert_close(model(x, only_lidar), model({"lidar": x["lidar"]}), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match=r"bool tensor \[2, 2\]"):
        model(x, torch.ones(2, 4, dtype=torch.bool))


def test_config_round_trips_through_json_and_validates() -> None:
    cfg = ModelConfig(arch="align", backbone="b0", modalities=("lidar", "depth"), window_size=4,
                      mpu_blocks=1, symmetric_mpu=True, decoder_dim=128, drop_path=0.1)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.modalities == ("lidar", "depth")
    assert ModelConfig(backbone="b2").resolved_decoder_dim == 768
    assert ModelConfig(backbone="b0").resolved_decoder_dim == 256
    for bad, message in [(dict(arch="sum"), "arch"), (dict(backbone="b6"), "backbone"),
                         (dict(modalities=("rgb", "radar")), "unknown modalities"), (dict(modalities=()), "at least"),
                         (dict(window_size=0), "window_size"), (dict(mpu_blocks=-1), "mpu_blocks"),
                         (dict(drop_path=1.0), "drop_path")]:
        with pytest.raises(ValueError, match=message):
            ModelConfig(**bad)
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({"arch": "charm", "heads": 3})
