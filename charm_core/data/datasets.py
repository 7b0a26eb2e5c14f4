"""The dataset loaders by recipe name (`dataset:` in a training recipe, `--dataset` of charm-eval)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from charm_core.data.augment import AugmentConfig
from charm_core.data.base import ModalDataset
from charm_core.data.deliver import DeliverDataset
from charm_core.data.mcubes import MCubeSDataset
from charm_core.data.mfnet import MFNetDataset
from charm_core.data.muses import MusesDataset
from charm_core.modalities import ModalityEntry

DATASETS: dict[str, type[ModalDataset]] = {
    "deliver": DeliverDataset,   # real DELIVER and charm-synth output
    "mcubes": MCubeSDataset,
    "muses": MusesDataset,
    "mfnet": MFNetDataset,
}


def dataset_class(name: str) -> type[ModalDataset]:
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r}: expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def build_dataset(name: str, root: str | Path, split: str, modalities: Iterable[ModalityEntry],
                  size: tuple[int, int], augment: bool = False, seed: int = 0,
                  augment_config: AugmentConfig = AugmentConfig(), eval_resize: str = "exact") -> ModalDataset:
    """A loader of dataset `name` for one split, with the model's modalities (names or specs)."""
    return dataset_class(name)(root, split, modalities, size, augment=augment, seed=seed,
                               augment_config=augment_config, eval_resize=eval_resize)
