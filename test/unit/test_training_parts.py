"""Training building blocks: subset sampling, SoftMin, OHEM, parameter groups and the schedule."""
import math

import numpy as np
import pytest
import torch

from charm_core.modalities import MODALITIES
from charm_core.train.class_weights import sqrt_median_weights
from charm_core.train.losses import OhemCrossEntropy
from charm_core.train.modality_sampling import SoftMinSampler, random_subset_masks
from charm_core.train.optim import parameter_groups, warmup_poly


def test_random_subsets_are_non_empty_uniform_one_column_per_model_modality():
    g = torch.Generator().manual_seed(0)
    masks = random_subset_masks(15000, MODALITIES, g)
    assert masks.any(1).all()
    codes = (masks.long() * torch.tensor([1, 2, 4, 8])).sum(1)
    counts = torch.bincount(codes, minlength=16)[1:]
    assert counts.min() > 850 and counts.max() < 1150      # ~1000 each of the 15 subsets
    only = random_subset_masks(3000, ("depth", "lidar"), g)
    codes = (only.long() * torch.tensor([1, 2])).sum(1)
    assert only.shape == (3000, 2) and 900 < torch.bincount(codes, minlength=4)[1:].min()
    six = random_subset_masks(63000, ("rgb", "thermal", "nir", "aolp", "dolp", "lidar"), g)
    codes = (six.long() * (2 ** torch.arange(6))).sum(1)
    counts = torch.bincount(codes, minlength=64)[1:]
    assert six.shape == (63000, 6) and counts.min() > 850 and counts.max() < 1150  # ~1000 each of 63
    full = random_subset_masks(2000, MODALITIES, g, full_set_prob=0.5)
    assert 0.5 < full.all(1).float().mean() < 0.6          # 0.5 + 0.5/15


def test_softmin_picks_the_weakest_modality_most_often():
    sampler = SoftMinSampler(MODALITIES, temperature=0.1)
    g = torch.Generator().manual_seed(1)
    accuracy = {"rgb": 0.9, "depth": 0.7, "event": 0.4, "lidar": 0.6}
    for _ in range(2000):
        m = sampler.sample(g)
        sampler.update(m, accuracy[m])
    counts = dict(zip(MODALITIES, sampler.counts.tolist()))
    assert max(counts, key=counts.get) == "event"
    assert counts["event"] > counts["lidar"] > counts["depth"] > counts["rgb"]
    uniform = SoftMinSampler(MODALITIES, mode="uniform")
    for m in MODALITIES:
        uniform.update(m, accuracy[m])
    assert torch.allclose(uniform.probabilities(), torch.full((4,), 0.25, dtype=torch.float64))


def test_softmin_state_round_trip():
    a = SoftMinSampler(MODALITIES)
    a.update("rgb", 0.5)
    b = SoftMinSampler(MODALITIES)
    b.load_state_dict(a.state_dict())
    assert torch.allclose(a.probabilities(), b.probabilities())


def test_ohem_keeps_hard_pixels_and_at_least_min_kept():
    loss_fn = OhemCrossEntropy(thresh=0.7, min_kept_fraction=0.25)
    logits = torch.zeros(1, 2, 2, 4)
    logits[0, 0] = 10.0                                     # class 0 confidently everywhere
    labels = torch.zeros(1, 2, 4, dtype=torch.long)
    labels[0, 0, 0] = 1                                     # one hard pixel (wrong), seven easy
    labels[0, 1, 3] = 255
    per_pixel_hard = 10.0 + math.log1p(math.exp(-10.0))
    assert loss_fn(logits, labels).item() == pytest.approx(per_pixel_hard, rel=1e-4)
    easy = torch.zeros(1, 2, 4, dtype=torch.long)           # nothing above the threshold -> top 25% (2 px)
    assert loss_fn(logits, easy).item() == pytest.approx(math.log1p(math.exp(-10.0)), rel=1e-3)
    assert loss_fn(logits, torch.full((1, 2, 4), 255)).item() == 0.0


def test_parameter_groups_head_lr_and_no_decay_on_norms_and_biases():
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.LayerNorm(4))
            self.decoder = torch.nn.Conv2d(4, 2, 1)

    groups = {g["name"]: g for g in parameter_groups(Tiny(), lr=1e-3, weight_decay=0.01)}
    assert groups["head_decay"]["lr"] == pytest.approx(1e-2) and groups["head_no_decay"]["weight_decay"] == 0
    assert groups["body_decay"]["lr"] == pytest.approx(1e-3) and groups["body_decay"]["weight_decay"] == 0.01
    assert len(groups["body_no_decay"]["params"]) == 3      # conv bias, norm weight, norm bias


def test_warmup_then_poly():
    f = warmup_poly(total_steps=110, warmup_steps=10, warmup_ratio=0.1, power=1.0)
    assert f(0) == pytest.approx(0.1) and f(5) == pytest.approx(0.55)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == 0.0


def test_sqrt_median_class_weights():
    pixels = np.zeros(25)
    pixels[:5] = [900, 100, 100, 25, 1]       # median frequency 100/1126
    w = sqrt_median_weights(pixels, lo=0.5, hi=4.0)
    assert w[1] == pytest.approx(1.0) and w[3] == pytest.approx(2.0)     # sqrt(100 / 25)
    assert w[0] == pytest.approx(0.5) and w[4] == pytest.approx(4.0)     # clipped
    assert (w[5:] == 1).all()                                            # absent classes untouched
    loss = OhemCrossEntropy(thresh=0.99, min_kept_fraction=1.0, class_weights=w)
    logits = torch.zeros(1, 25, 1, 2)
    plain = OhemCrossEntropy(thresh=0.99, min_kept_fraction=1.0)
    labels = torch.tensor([[[3, 3]]])
    assert loss(logits, labels).item() == pytest.approx(2.0 * plain(logits, labels).item())
