"""Start a model from published SegFormer / MiT weights or from one of our checkpoints (`init_from`).

File layouts understood, each mapped onto our parameter names (which are NVlabs' for the encoder):
- "nvlabs": NVlabs' MiT ImageNet release (mit_b*.pth: patch_embed1.proj, block1.0.attn.q, ...) and
  the full SegFormer checkpoints of NVlabs' mmseg fork (backbone.* + decode_head.linear_c1..4,
  linear_fuse.conv / .bn, linear_pred).
- "huggingface": what transformers' save_pretrained writes (model.safetensors / pytorch_model.bin)
  for SegformerForImageClassification (nvidia/mit-b0..b5), SegformerModel (encoder.*), a bare
  encoder (block.*, patch_embeddings.*) and SegformerForSemanticSegmentation (decode_head.*).
  Separate query / key / value become our q and stacked kv.
- "mmseg": OpenMMLab mmsegmentation's own MiT (backbone.layers.i.{0,1,2}: PatchEmbed, encoder layers
  with nn.MultiheadAttention's packed in_proj and 1x1-conv Mix-FFN, stage norm). Its SegformerHead
  has a conv + BN + ReLU per stage where SegFormer has a plain linear, so no decoder tensor maps.
- "charm": a checkpoint of this project (fine-tuning on other classes or modalities).

The encoder must load completely (or the file is the wrong variant: the error says which it looks
like). The decoder loads where names and shapes fit; the classifier is re-initialised when the class
count differs; fusion modules only come from "charm" files. NVlabs and HuggingFace decoders
concatenate the stages c4, c3, c2, c1 before the fuse conv, ours in stage order: the fuse weight's
input blocks are reversed on import.

LayerNorm eps differs between the three codebases, all running the same NVlabs-trained weights:
NVlabs (and we) use 1e-6 in the blocks and stage norms and 1e-5 in the patch embeddings and the
attention's spatial-reduction norm; HuggingFace 1e-5 everywhere; mmseg 1e-6 everywhere. We keep
NVlabs' values, the ones the weights were trained with, whatever the file's layout; HuggingFace's
eps moves MiT-B0 stage features by about 1e-6 relative, float32 rounding level (test_mit_weights).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from charm_core.model.mit import BACKBONES
from charm_core.model.segmentor import Segmentor
from charm_core.state_dict_file import load_state_dict_file

_CLASSIFIER = ("decoder.linear_pred.weight", "decoder.linear_pred.bias")


@dataclass
class ImportReport:
    """What init_from did, in our parameter names (file names for tensors without a counterpart)."""

    path: Path
    layout: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: dict[str, str] = field(default_factory=dict)   # ours -> why it kept its fresh values
    skipped: dict[str, str] = field(default_factory=dict)         # tensor -> why it was not used
    not_in_file: list[str] = field(default_factory=list)          # ours, outside the encoder

    def summary(self) -> str:
        def groups(keys) -> str:  # "backbone" (the encoder is all or nothing), decoder / fusion parts
            names = {"backbone" if k.startswith("backbone.") else ".".join(k.split(".")[:2]) for k in keys}
            return ", ".join(sorted(names)) or "-"

        lines = [f"init_from {self.path} ({self.layout} layout): loaded {len(self.loaded)} tensors "
                 f"({groups(self.loaded)})"]
        for key, why in sorted(self.reinitialised.items()):
            lines.append(f"  re-initialised {key}: {why}")
        if self.not_in_file:
            lines.append(f"  fresh (not in the file): {len(self.not_in_file)} tensors ({groups(self.not_in_file)})")
        if self.skipped:
            reasons: dict[str, list[str]] = {}
            for key, why in self.skipped.items():
                reasons.setdefault(why, []).append(key)
            for why, keys in sorted(reasons.items()):
                lines.append(f"  skipped {len(keys)} file tensors ({why}): {', '.join(sorted(keys)[:4])}"
                             + (", ..." if len(keys) > 4 else ""))
        return "\n".join(lines)


def init_from(model: Segmentor, path: str | Path) -> ImportReport:
    """Load the weights of `path` (any layout above; a save_pretrained folder too) into `model` in
    place; returns what was done.

    Raises ValueError when the file's encoder does not fit the model's (naming missing, unexpected
    and mis-shaped tensors, and the MiT variant the file holds when it is a known one)."""
    path = Path(path)
    if path.is_dir():  # a save_pretrained folder
        files = [path / name for name in ("model.safetensors", "pytorch_model.bin") if (path / name).is_file()]
        if not files:
            raise FileNotFoundError(f"{path}: a folder without model.safetensors or pytorch_model.bin")
        path = files[0]
    layout, tensors, skipped = convert(load_state_dict_file(path), path)
    report = ImportReport(path, layout, skipped=skipped)
    own = model.state_dict()
    _check_encoder(own, tensors, model.cfg.backbone, path)
    chosen = {}
    for key, value in tensors.items():
        if key not in own:
            report.skipped[key] = "no such tensor in this model"
        elif value.shape == own[key].shape:
            chosen[key] = value
        elif key in _CLASSIFIER:
            report.reinitialised[key] = f"the file has {value.shape[0]} classes, the model {own[key].shape[0]}"
        else:
            report.skipped[key] = "shape differs from this model's"
    for key in _CLASSIFIER:  # a classifier must come whole: weight and bias of the same class set
        if key in report.reinitialised:
            for other in _CLASSIFIER:
                if other in chosen:
                    del chosen[other]
                    report.reinitialised[other] = report.reinitialised[key]
    model.load_state_dict(chosen, strict=False)
    report.loaded = sorted(chosen)
    report.not_in_file = sorted(k for k in own if k not in tensors)
    return report


def convert(state: dict[str, Tensor], path: Path | str = "weights") -> tuple[str, dict[str, Tensor], dict[str, str]]:
    """A file's state dict -> (layout, tensors under our names, {file key: why it has no place})."""
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from a DDP-wrapped model
    layout = detect_layout(state, path)
    tensors: dict[str, Tensor] = {}
    skipped: dict[str, str] = {}
    for key, value in state.items():
        target = _our_name(key, layout)
        if isinstance(target, Skip):
            skipped[key] = target.reason
        else:
            tensors[target] = value
    _merge_attention(tensors)
    fuse = "decoder.linear_fuse.weight"
    if layout in ("nvlabs", "huggingface") and fuse in tensors:
        weight = tensors[fuse]
        tensors[fuse] = torch.cat(weight.split(weight.shape[0], dim=1)[::-1], dim=1)  # c4..c1 -> c1..c4
    return layout, tensors, skipped


def detect_layout(state: dict[str, Tensor], path: Path | str = "weights") -> str:
    keys = list(state)
    if any(k.startswith(("fusion.", "decoder.linear_c.")) for k in keys):
        return "charm"
    if any(re.match(r"(backbone\.)?layers\.0\.0\.projection\.", k) for k in keys):
        return "mmseg"
    if any(re.match(r"((segformer\.)?encoder\.)?(patch_embeddings|block)\.0\.", k) for k in keys):
        return "huggingface"
    if any(re.match(r"(backbone\.)?patch_embed1\.", k) for k in keys):
        return "nvlabs"
    raise ValueError(f"{path}: no MiT encoder found (expected NVlabs, HuggingFace, mmseg or charm key names, "
                     f"got e.g. {keys[:3]})")


@dataclass(frozen=True)
class Skip:
    reason: str


_IMAGENET_HEAD = Skip("ImageNet classifier")
_UNUSED = Skip("not part of a SegFormer (auxiliary or unused head)")

# Per layout: (full-match pattern of a file name, our name). Groups: `stage0` counts the encoder's
# stages from 0 (ours from 1), `head1` the decoder's stage linears from 1 (ours from 0), `part` is
# looked up in the layout's block table; the others are copied.
_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "nvlabs": (
        (r"(?:backbone\.)?(?P<rest>(?:patch_embed|block|norm)\d\..+)", "backbone.{rest}"),
        (r"decode_head\.linear_c(?P<head1>\d)\.proj\.(?P<leaf>\w+)", "decoder.linear_c.{head}.{leaf}"),
        (r"decode_head\.linear_fuse\.conv\.(?P<leaf>\w+)", "decoder.linear_fuse.{leaf}"),
        (r"decode_head\.linear_fuse\.bn\.(?P<leaf>\w+)", "decoder.bn.{leaf}"),
        (r"decode_head\.linear_pred\.(?P<leaf>\w+)", "decoder.linear_pred.{leaf}"),
    ),
    "huggingface": (
        (r"(?:segformer\.)?(?:encoder\.)?patch_embeddings\.(?P<stage0>\d)\.proj\.(?P<leaf>\w+)",
         "backbone.patch_embed{stage}.proj.{leaf}"),
        (r"(?:segformer\.)?(?:encoder\.)?patch_embeddings\.(?P<stage0>\d)\.layer_norm\.(?P<leaf>\w+)",
         "backbone.patch_embed{stage}.norm.{leaf}"),
        (r"(?:segformer\.)?(?:encoder\.)?block\.(?P<stage0>\d)\.(?P<i>\d+)\.(?P<part>.+)\.(?P<leaf>\w+)",
         "backbone.block{stage}.{i}.{part}.{leaf}"),
        (r"(?:segformer\.)?(?:encoder\.)?layer_norm\.(?P<stage0>\d)\.(?P<leaf>\w+)", "backbone.norm{stage}.{leaf}"),
        (r"decode_head\.linear_c\.(?P<i>\d)\.proj\.(?P<leaf>\w+)", "decoder.linear_c.{i}.{leaf}"),
        (r"decode_head\.linear_fuse\.(?P<leaf>\w+)", "decoder.linear_fuse.{leaf}"),
        (r"decode_head\.batch_norm\.(?P<leaf>\w+)", "decoder.bn.{leaf}"),
        (r"decode_head\.classifier\.(?P<leaf>\w+)", "decoder.linear_pred.{leaf}"),
    ),
    "mmseg": (
        (r"(?:backbone\.)?layers\.(?P<stage0>\d)\.0\.projection\.(?P<leaf>\w+)",
         "backbone.patch_embed{stage}.proj.{leaf}"),
        (r"(?:backbone\.)?layers\.(?P<stage0>\d)\.0\.norm\.(?P<leaf>\w+)", "backbone.patch_embed{stage}.norm.{leaf}"),
        (r"(?:backbone\.)?layers\.(?P<stage0>\d)\.1\.(?P<i>\d+)\.(?P<part>.+?)[._](?P<leaf>weight|bias)",
         "backbone.block{stage}.{i}.{part}.{leaf}"),
        (r"(?:backbone\.)?layers\.(?P<stage0>\d)\.2\.(?P<leaf>\w+)", "backbone.norm{stage}.{leaf}"),
    ),
    "charm": ((r"(?P<rest>.+)", "{rest}"),),
}
# Block-internal module names -> ours (HuggingFace's k and v, mmseg's packed qkv: see _merge_attention)
_BLOCK_PARTS = {
    "huggingface": {"layer_norm_1": "norm1", "layer_norm_2": "norm2", "attention.self.query": "attn.q",
                    "attention.self.key": "attn.k", "attention.self.value": "attn.v", "attention.self.sr": "attn.sr",
                    "attention.self.layer_norm": "attn.norm", "attention.output.dense": "attn.proj",
                    "mlp.dense1": "mlp.fc1", "mlp.dwconv.dwconv": "mlp.dwconv.dwconv", "mlp.dense2": "mlp.fc2"},
    "mmseg": {"norm1": "norm1", "norm2": "norm2", "attn.attn.in_proj": "attn.qkv", "attn.attn.out_proj": "attn.proj",
              "attn.sr": "attn.sr", "attn.norm": "attn.norm", "ffn.layers.0": "mlp.fc1",
              "ffn.layers.1": "mlp.dwconv.dwconv", "ffn.layers.4": "mlp.fc2"},
}


def _our_name(key: str, layout: str) -> str | Skip:
    """Our name for a file tensor of `layout`, or why it has none."""
    if key.startswith(("head.", "classifier.")) and layout in ("nvlabs", "huggingface"):
        return _IMAGENET_HEAD
    if key.startswith(("auxiliary_head.", "decode_head.conv_seg.")):
        return _UNUSED  # mmseg's BaseDecodeHead creates conv_seg even where SegFormer's head never uses it
    if layout == "mmseg" and key.startswith("decode_head."):
        return Skip("mmseg SegformerHead: conv + BN + ReLU per stage, no SegFormer MLP counterpart")
    for pattern, template in _RULES[layout]:
        m = re.fullmatch(pattern, key)
        if m is None:
            continue
        groups = m.groupdict()
        if "part" in groups:
            groups["part"] = _BLOCK_PARTS[layout].get(groups["part"])
            if groups["part"] is None:
                continue
        if "stage0" in groups:
            groups["stage"] = int(groups["stage0"]) + 1
        if "head1" in groups:
            groups["head"] = int(groups["head1"]) - 1
        return template.format(**groups)
    return Skip("unknown name")


def _merge_attention(tensors: dict[str, Tensor]) -> None:
    """In place: HuggingFace's separate k, v -> our stacked kv; mmseg's packed qkv -> q and kv;
    mmseg's 1x1-conv Mix-FFN linears [out, in, 1, 1] -> [out, in]."""
    for key in [k for k in tensors if ".attn.k." in k]:
        value_key = key.replace(".attn.k.", ".attn.v.")
        if value_key in tensors:
            tensors[key.replace(".attn.k.", ".attn.kv.")] = torch.cat([tensors.pop(key), tensors.pop(value_key)])
    for key in [k for k in tensors if ".attn.qkv." in k]:
        qkv = tensors.pop(key)
        dim = qkv.shape[0] // 3
        tensors[key.replace(".qkv.", ".q.")], tensors[key.replace(".qkv.", ".kv.")] = qkv[:dim], qkv[dim:]
    for key in [k for k in tensors if re.search(r"\.mlp\.fc[12]\.weight$", k)]:
        if tensors[key].ndim == 4:
            tensors[key] = tensors[key].flatten(1)


def _check_encoder(own: dict[str, Tensor], tensors: dict[str, Tensor], backbone: str, path: Path) -> None:
    mine = [k for k in own if k.startswith("backbone.")]  # in module order: the first stage first
    theirs = [k for k in tensors if k.startswith("backbone.")]
    missing, unexpected = [k for k in mine if k not in tensors], [k for k in theirs if k not in own]
    shapes = [f"{k.removeprefix('backbone.')}: file {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
              for k in mine if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def short(keys):
            return [k.removeprefix("backbone.") for k in keys[:8]]
        variant = encoder_variant(tensors)
        wrong = variant and variant != backbone
        hint = f"; the file holds MiT-{variant}: set model.backbone={variant}" if wrong else ""
        raise ValueError(
            f"{path} does not match this MiT-{backbone} encoder: {len(missing)} missing {short(missing)}, "
            f"{len(unexpected)} unexpected {short(unexpected)}, {len(shapes)} shape mismatches {shapes[:8]}{hint}")


def encoder_variant(tensors: dict[str, Tensor]) -> str | None:
    """The BACKBONES entry whose widths and depths the encoder tensors (our names) have, if any."""
    try:
        dims = tuple(int(tensors[f"backbone.norm{i}.weight"].shape[0]) for i in range(1, 5))
    except KeyError:
        return None
    depths = tuple(len({k.split(".")[2] for k in tensors if k.startswith(f"backbone.block{i}.")}) for i in range(1, 5))
    return next((name for name, cfg in BACKBONES.items() if cfg.embed_dims == dims and cfg.depths == depths), None)
