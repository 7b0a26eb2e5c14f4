"""ModelConfig: everything needed to rebuild a model, JSON-able so checkpoints carry it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from charm_core.modalities import DELIVER_MODALITIES, ModalitySpec, resolve_modalities
from charm_core.model.mit import BACKBONES

ARCHS = ("charm", "mean", "align")


@dataclass
class ModelConfig:
    arch: str = "charm"  # "charm" | "mean" | "align" (mean fusion + alignment loss)
    backbone: str = "tiny"  # a key of BACKBONES
    num_classes: int = 25
    # The model's modalities in its own order (availability masks, subset names and reports follow it).
    # Entries may also be {name, kind, ...} specs; after validation they are names, and modality_specs
    # holds the spec (kind, normalisation) of every one of them, so a checkpoint carries its encoding.
    modalities: tuple[str, ...] = DELIVER_MODALITIES
    modality_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    window_size: int = 8  # (A) MPU window
    mpu_blocks: int = 2  # (A) MPU blocks per stage, odd ones shifted; 0 = SP + RE only
    symmetric_mpu: bool = False  # (A) modality tokens also query the semantic feature
    mpu_mlp_ratio: float = 2.0  # (A) hidden width of the MPU MLP (2, not Swin's 4: CPU latency)
    decoder_dim: int | None = None  # None -> SegFormer's width for the backbone
    drop_path: float = 0.0  # stochastic depth of the backbone (max rate, linear over blocks)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch {self.arch!r}: expected one of {ARCHS}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone {self.backbone!r}: expected one of {tuple(BACKBONES)}")
        specs = resolve_modalities(self.modalities, self.modality_specs)
        if not specs:
            raise ValueError("modalities must name at least one modality")
        self.modalities = tuple(s.name for s in specs)
        self.modality_specs = {s.name: s.to_dict() for s in specs}
        for name in ("num_classes", "window_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mpu_blocks < 0:
            raise ValueError(f"mpu_blocks must be >= 0, got {self.mpu_blocks}")
        if self.mpu_mlp_ratio <= 0:
            raise ValueError(f"mpu_mlp_ratio must be > 0, got {self.mpu_mlp_ratio}")
        if self.decoder_dim is not None and self.decoder_dim < 1:
            raise ValueError(f"decoder_dim must be None or >= 1, got {self.decoder_dim}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")

    @property
    def specs(self) -> tuple[ModalitySpec, ...]:
        """The modalities' specs, in the model's order."""
        return tuple(ModalitySpec.from_dict(m, self.modality_specs[m]) for m in self.modalities)

    @property
    def resolved_decoder_dim(self) -> int:
        """The decoder width actually used (decoder_dim, or SegFormer's for the backbone)."""
        return self.decoder_dim or BACKBONES[self.backbone].decoder_dim

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["modalities"] = list(self.modalities)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of to_dict; unknown keys are an error (a config from a different model version)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; expected a subset of {sorted(known)}")
        d = dict(d)
        if "modalities" in d:
            d["modalities"] = tuple(d["modalities"])
        return cls(**d)
