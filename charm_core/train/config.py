"""TrainConfig: one recipe = one YAML file; command-line `key=value` overrides use the same names."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from charm_core.data.base import EVAL_RESIZES
from charm_core.data.datasets import dataset_class
from charm_core.modalities import DELIVER_MODALITIES, resolve_modalities
from charm_core.model import ModelConfig

INE_MODES = ("softmin", "uniform", "off")


@dataclass
class TrainConfig:
    # data
    dataset: str = "deliver"                     # deliver (real DELIVER or charm-synth output) | mcubes | muses | mfnet
    data_root: str = "data/synthetic"
    train_split: str = "train"
    val_split: str = "val"
    # the model's modalities in its order: names (charm_core.modalities.BUILTIN, or the dataset's own) or
    # specs such as {name: nir2, kind: intensity, range: [0, 1]}; or a spec per name in modality_specs
    modalities: tuple[str, ...] = DELIVER_MODALITIES
    modality_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    size: tuple[int, int] = (256, 256)           # training crop size (H, W)
    eval_size: tuple[int, int] | None = None     # validation and deployment input size (None = size)
    eval_resize: str = "exact"                   # exact: to eval_size | deliver: the DELIVER protocol (short side
                                                 # to eval_size[0], up to multiples of 32; data/deliver.py)
    augment_scale: tuple[float, float] = (0.5, 2.0)  # random-resize factor range; 1 = short side fits the crop
    val_max_samples: int | None = 200            # validation subset for periodic evaluation (None = all)
    # model
    model: dict[str, Any] = field(default_factory=dict)   # ModelConfig fields
    init_from: str | None = None                 # local weights to start from: MiT / SegFormer (NVlabs, HuggingFace,
                                                 # mmseg) or a charm checkpoint; see charm_core.model.weights
    init_checkpoint: str | None = None           # a charm checkpoint to start from where its weights fit
                                                 # (e.g. 4 -> 5 modalities: the new one's parts start fresh)
    # optimisation (DELIVER/CMNeXt recipe)
    batch_size: int = 8
    steps: int = 4000
    lr: float = 6e-5
    head_lr_mult: float = 10.0
    weight_decay: float = 0.01
    warmup_steps: int = 200
    warmup_ratio: float = 0.1
    poly_power: float = 0.9
    grad_clip: float | None = None
    ohem_thresh: float = 0.7
    ohem_min_kept: float = 1 / 16
    class_weights: str = "none"                  # none | sqrt_median (rare classes weigh more, see class_weights.py)
    # dual path
    full_set_prob: float = 0.0                   # extra weight on the all-modalities subset in CoL
    ine: str = "softmin"                         # softmin | uniform | off
    ine_lambda: float = 1.0
    ine_temperature: float = 0.1
    ine_momentum: float = 0.9
    ine_isolated: bool = False                   # (A) InE gradients stop at the shared backbone
    align_weight: float = 0.1                    # weight of the `align` baseline's alignment loss
    # run
    out_dir: str = "runs/charm"
    seed: int = 0
    device: str = "auto"                         # auto | cpu | cuda
    amp: str = "auto"                            # auto (bf16 on CUDA, off on CPU) | off | bf16 | fp16
    workers: int = 1
    threads: int | None = None                   # torch CPU threads (None = torch default)
    log_every: int = 20
    eval_every: int = 500
    checkpoint_every: int = 250
    time_limit_min: float | None = None          # stop (and save) after this much training time, resumes included

    def __post_init__(self) -> None:
        for f in fields(self):  # YAML reads "6e-5" (no dot) as a string: coerce numbers by the field's type
            value = getattr(self, f.name)
            if f.type in ("float", "float | None") and not isinstance(value, bool) and value is not None:
                try:
                    setattr(self, f.name, float(value))
                except (TypeError, ValueError):
                    raise ValueError(f"{f.name} must be a number, got {value!r}") from None
        for name in ("ine", "amp"):  # YAML 1.1 reads a bare `off` as False
            if getattr(self, name) is False:
                setattr(self, name, "off")
        specs = resolve_modalities(self.modalities, self.modality_specs, dataset_class(self.dataset).SPECS)
        self.modalities = tuple(spec.name for spec in specs)
        self.modality_specs = {spec.name: spec.to_dict() for spec in specs}
        self.size = tuple(int(s) for s in self.size)
        self.eval_size = self.size if self.eval_size is None else tuple(int(s) for s in self.eval_size)
        self.augment_scale = tuple(float(x) for x in self.augment_scale)
        if len(self.augment_scale) != 2 or not 0 < self.augment_scale[0] <= self.augment_scale[1]:
            raise ValueError(f"augment_scale must be [low, high] with 0 < low <= high, got {self.augment_scale}")
        for name in ("size", "eval_size"):
            value = getattr(self, name)
            if len(value) != 2 or min(value) < 32:
                raise ValueError(f"{name} must be [height, width] >= 32, got {value}")
        if self.eval_resize not in EVAL_RESIZES:
            raise ValueError(f"eval_resize must be one of {EVAL_RESIZES}, got {self.eval_resize!r}")
        if self.ine not in INE_MODES:
            raise ValueError(f"ine must be one of {INE_MODES}, got {self.ine!r}")
        for name in ("batch_size", "steps", "log_every", "eval_every", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.seed) < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.warmup_steps < 0 or self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps), got {self.warmup_steps}")
        if self.class_weights not in ("none", "sqrt_median"):
            raise ValueError(f"class_weights must be none or sqrt_median, got {self.class_weights!r}")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise ValueError(f"amp must be auto, off, bf16 or fp16, got {self.amp!r}")
        self.model_config()  # validates the model section early

    def model_config(self) -> ModelConfig:
        """The model section on top of the recipe's modalities and the dataset's class count."""
        return ModelConfig.from_dict({"modalities": list(self.modalities), "modality_specs": self.modality_specs,
                                      "num_classes": len(dataset_class(self.dataset).CLASSES), **self.model})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["modalities"] = list(self.modalities)
        d["size"] = list(self.size)
        d["eval_size"] = list(self.eval_size)
        d["augment_scale"] = list(self.augment_scale)
        return d


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Recipe YAML (optional) + `key=value` overrides (YAML-parsed values; `model.arch=mean` for model keys)."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a training recipe is a YAML mapping")
        data.update(loaded)
    known = {f.name for f in fields(TrainConfig)}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        parsed = yaml.safe_load(value)
        if key.startswith("model."):
            data.setdefault("model", {})[key[len("model."):]] = parsed
        else:
            data[key] = parsed
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown training options {unknown}; known: {sorted(known)}")
    return TrainConfig(**data)
