"""CHARM and its fusion baselines on a shared SegFormer MiT backbone (DESIGN.md section 5)."""
from charm_core.model.config import ARCHS, ModelConfig
from charm_core.model.mit import BACKBONES, MiTConfig, load_imagenet_weights
from charm_core.model.segmentor import Segmentor, build_model

__all__ = ["ARCHS", "BACKBONES", "MiTConfig", "ModelConfig", "Segmentor", "build_model",
           "load_imagenet_weights"]
