"""CHARM and its fusion baselines on a shared SegFormer MiT backbone (DESIGN.md section 5)."""
from charm_core.model.config import ARCHS, ModelConfig
from charm_core.model.mit import BACKBONES, MiTConfig
from charm_core.model.segmentor import Segmentor, build_model
from charm_core.model.weights import ImportReport, init_from

__all__ = ["ARCHS", "BACKBONES", "ImportReport", "MiTConfig", "ModelConfig", "Segmentor", "build_model",
           "init_from"]
