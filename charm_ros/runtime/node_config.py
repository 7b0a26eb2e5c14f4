"""The charm node's parameters: one ParamSpec table (declared by the node, listed by --help and the
README, documented in config/charm.param.yaml; tests keep all three in step) and a ROS-free validator
that turns the values into a NodeConfig, the PipelineConfig included, or a clear error.

The sensors follow the checkpoint: DELIVER's four always have their sections; each further modality
of the checkpoint (a single-channel camera such as thermal) gets one of its own (`camera_params`),
declared from the checkpoint's metadata before the model loads.

Code reads parameters through NodeConfig's typed fields only (config.model.device, config.sync.max_skew,
...); `raw` keeps every checked value for run-time updates.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from charm_core.checkpoint import read_modality_specs
from charm_core.encoders import SensorGeometry
from charm_core.inference import PRECISIONS
from charm_core.runtimes import BACKENDS
from charm_core.modalities import MODALITIES, ModalitySpec, resolve_modalities
from charm_ros.msgs.outputs import OUTPUT_TYPES
from charm_ros.paths import share_path
from charm_ros.runtime.content_health import HEALTH_PARAMETERS, HealthConfig
from charm_ros.runtime.parameters import ConfigError, ParamSpec, check_all
from charm_ros.runtime.pipeline import PipelineConfig
from charm_ros.runtime.sync import ModalityConfig, SyncConfig

DEFAULT_CHECKPOINT = "models/charm_tiny_synthetic.safetensors"
DEVICES = ("auto", "cpu", "cuda")
RELIABILITIES = ("best_effort", "reliable")
OUTPUTS = tuple(OUTPUT_TYPES)
RESOLUTIONS = ("network", "camera")

# REP-103 LiDAR frame (x forward, y left, z up) -> camera optical frame (x right, y down, z forward), no offset.
LIDAR_TO_OPTICAL = [0.0, -1.0, 0.0, 0.0,
                    0.0, 0.0, -1.0, 0.0,
                    1.0, 0.0, 0.0, 0.0,
                    0.0, 0.0, 0.0, 1.0]


# Kinds the node reads beyond DELIVER's four: single-channel cameras, each with its CameraInfo and the
# scale/offset that turn its stored values into the physical units its spec normalises.
CAMERA_KINDS = ("intensity", "angle")
DELIVER_SENSORS: tuple[ModalitySpec, ...] = resolve_modalities(MODALITIES)


def _modality_params(m: str) -> list[ParamSpec]:
    return [
        ParamSpec(f"{m}.enabled", True, f"subscribe to and use the {m} sensor"),
        ParamSpec(f"{m}.topic", f"~/{m}/points" if m == "lidar" else f"~/{m}/image",
                  f"{m} input topic (remapping the default private topic works too)"),
        ParamSpec(f"{m}.time_offset", 0.0, f"seconds added to {m} header stamps (latency calibration)",
                  dynamic=True),
        ParamSpec(f"{m}.stale_timeout", 0.5, f"{m} counts as alive if a valid message arrived within this many s",
                  dynamic=True, minimum=0.01),
    ]


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("autostart", True, "configure and activate at start; false: wait in 'unconfigured' for "
              "~/change_state (lifecycle manager)"),
    *[p for m in MODALITIES for p in _modality_params(m)],
    ParamSpec("rgb.camera_info_topic", "~/rgb/camera_info", "CameraInfo of the RGB camera (defines the mask frame)"),
    ParamSpec("depth.camera_info_topic", "~/depth/camera_info", "CameraInfo of the depth camera"),
    ParamSpec("lidar.intensity_field", "auto",
              "PointCloud2 field read as the return intensity: auto = 'intensity' where the cloud has it; a name "
              "(e.g. reflectivity) must be in every cloud, else it is rejected; empty = none", dynamic=True),
    ParamSpec("lidar.intensity_scale", 0.0,
              "raw intensity that maps to full scale (e.g. 255, or an Ouster's ~3000); 0 = auto: values in 0..1 "
              "kept, a cloud with larger ones taken as 0..255", dynamic=True, minimum=0.0),
    ParamSpec("sync.reference_priority", list(MODALITIES),
              "reference modality priority among the alive ones (first = preferred; enabled sensors not "
              "listed follow)"),
    ParamSpec("sync.max_skew", 0.05, "max |stamp difference| (s) for messages to belong to one frame; at least half "
              "the slowest sensor's period puts that sensor in every frame",
              dynamic=True, minimum=0.0),
    ParamSpec("sync.timeout", 0.1, "after the reference arrives, wait at most this long (s) for the others",
              dynamic=True, minimum=0.0),
    ParamSpec("sync.buffer_size", 10, "messages kept per modality", minimum=1),
    ParamSpec("model.checkpoint", DEFAULT_CHECKPOINT,
              "safetensors checkpoint (absolute, or relative to the package share directory)"),
    ParamSpec("model.device", "auto", "auto (CUDA if present, else CPU), cpu or cuda", choices=DEVICES),
    ParamSpec("model.precision", "fp32", "fp32, or fp16/bf16 on CUDA", choices=PRECISIONS),
    ParamSpec("model.backend", "auto", "inference runtime: auto (onnxruntime on CPU; TensorRT on CUDA when "
              "installed, else torch), torch, onnxruntime or tensorrt; graphs of the enabled sensors' subsets "
              "are built at configure in the background (torch serves a subset until its graph is ready)",
              choices=BACKENDS),
    ParamSpec("model.input_size", [0, 0], "network input [height, width]; [0, 0] = the checkpoint's training size"),
    ParamSpec("geometry.camera_height", 1.6, "camera optical centre above the ground (m), for the depth encoding",
              minimum=0.0),
    ParamSpec("geometry.camera_pitch", 0.0, "camera pitch (rad, positive = looking down)"),
    ParamSpec("geometry.lidar_to_camera", LIDAR_TO_OPTICAL,
              "4x4 row-major transform from the LiDAR frame to the camera optical frame"),
    *[ParamSpec(f"outputs.{name}", True, f"publish ~/{name}", dynamic=True) for name in OUTPUTS],
    ParamSpec("outputs.resolution", "network", "size of ~/mask, ~/confidence, ~/color_mask, ~/overlay and "
              "~/camera_info: network (letterboxed network input, unpadded) or camera (the camera's own "
              "pixels and K, for pixel alignment with the raw image)", dynamic=True, choices=RESOLUTIONS),
    ParamSpec("outputs.overlay_alpha", 0.5, "colour-mask weight in ~/overlay (0..1)", dynamic=True,
              minimum=0.0, maximum=1.0),
    ParamSpec("outputs.min_confidence", 0.0, "pixels below this confidence are 255 (no data) on ~/mask",
              dynamic=True, minimum=0.0, maximum=1.0),
    ParamSpec("outputs.palette", "", "colours of ~/color_mask and ~/overlay: one #RRGGBB per class in class order "
              "(the names are on ~/labels), separated by spaces or commas; empty = the checkpoint's", dynamic=True),
    ParamSpec("qos.input_depth", 5, "history depth of the sensor subscriptions", minimum=1),
    ParamSpec("qos.input_reliability", "best_effort", "best_effort matches every publisher", choices=RELIABILITIES),
    ParamSpec("qos.output_reliability", "reliable", "QoS reliability of the outputs", choices=RELIABILITIES),
    ParamSpec("qos.silent_after", 3.0, "seconds an input topic may have publishers but deliver nothing before "
              "/diagnostics names it (with the QoS or type that does not match)", minimum=0.5),
    ParamSpec("diagnostics.period", 1.0, "seconds between /diagnostics messages (also sent on change)",
              minimum=0.05),
    *HEALTH_PARAMETERS,
)
SPECS = {p.name: p for p in PARAMETERS}


def camera_params(spec: ModalitySpec) -> list[ParamSpec]:
    """The section of a single-channel camera (intensity / angle kind) beyond DELIVER's four."""
    m, unit = spec.name, spec.unit or "physical units"
    stored = "the stored type's full scale is 1" if spec.scale is None else f"{spec.scale:g}"
    return [
        *_modality_params(m),
        ParamSpec(f"{m}.camera_info_topic", f"~/{m}/camera_info",
                  f"CameraInfo of the {m} camera (its own K and size; registered to the RGB camera)"),
        ParamSpec(f"{m}.scale", 0.0, f"{m} in {unit} = stored value (mono8 / mono16 / 16UC1 count, 32FC1 value) "
                  f"* scale + offset; 0 = the checkpoint's ({stored})", dynamic=True),
        ParamSpec(f"{m}.offset", spec.offset, f"added after {m}.scale ({unit})", dynamic=True),
    ]


def node_sensors(model: tuple[ModalitySpec, ...]) -> tuple[ModalitySpec, ...]:
    """The sensors a node with this checkpoint declares, in their canonical order: the checkpoint's
    modalities in its order, then those of DELIVER's four it lacks (their parameters always exist).
    ConfigError for a modality the node cannot read."""
    extra = [s for s in model if s.name not in MODALITIES]
    unreadable = [f"{s.name} (kind {s.kind})" for s in extra if s.kind not in CAMERA_KINDS]
    if unreadable:
        raise ConfigError(f"the checkpoint's {', '.join(unreadable)}: beyond rgb, depth, event and lidar the node "
                          f"reads single-channel cameras (kinds {', '.join(CAMERA_KINDS)})")
    own = {s.name for s in model}
    return tuple(model) + tuple(s for s in DELIVER_SENSORS if s.name not in own)


def checkpoint_sensors(checkpoint: str) -> tuple[ModalitySpec, ...]:
    """node_sensors of the checkpoint named by model.checkpoint, from its metadata alone (the node
    declares its parameters before it loads the model)."""
    return node_sensors(read_modality_specs(resolve_checkpoint(checkpoint)))


def parameters(sensors: tuple[ModalitySpec, ...] = DELIVER_SENSORS) -> tuple[ParamSpec, ...]:
    """Every parameter of a node with these sensors: PARAMETERS, then a section per further camera."""
    return PARAMETERS + tuple(p for s in sensors if s.name not in MODALITIES for p in camera_params(s))


@dataclass(frozen=True)
class ModelSettings:
    checkpoint: str            # resolved path
    device: str
    precision: str
    backend: str


@dataclass(frozen=True)
class QosSettings:
    input_depth: int
    input_reliability: str
    output_reliability: str
    silent_after: float        # s an input may have publishers yet deliver nothing before it is named


@dataclass
class NodeConfig:
    enabled: tuple[str, ...]
    topics: dict[str, str]
    camera_info_topics: dict[str, str]
    sync: SyncConfig
    pipeline: PipelineConfig   # input_size None = the checkpoint's (Pipeline.for_node resolves it)
    model: ModelSettings
    qos: QosSettings
    outputs: dict[str, bool]
    overlay_alpha: float
    palette: np.ndarray | None  # Nx3 uint8, or None for the checkpoint's
    diagnostics_period: float
    autostart: bool
    health: HealthConfig = HealthConfig()  # content-health thresholds and policy (health.*)
    raw: dict[str, Any] = field(default_factory=dict)  # every parameter, defaults filled in, checked
    sensors: tuple[ModalitySpec, ...] = DELIVER_SENSORS  # declared (node_sensors), enabled or not
    specs: dict[str, ParamSpec] = field(default_factory=lambda: dict(SPECS))  # their parameters by name

    @property
    def checkpoint(self) -> str:
        return self.model.checkpoint

    @property
    def geometry(self) -> SensorGeometry:
        return self.pipeline.geometry

    def updated(self, changes: dict[str, Any]) -> NodeConfig:
        """This config with run-time changes (ros2 param set); raises ConfigError, changing nothing, for
        a parameter that can only be set at start or a value its spec refuses. Names that are not the
        node's parameters (use_sim_time, ...) are ignored."""
        ours = {name: value for name, value in changes.items() if name in self.specs}
        for name, value in ours.items():
            if not self.specs[name].dynamic:
                raise ConfigError(f"{name} can only be set at start")
            self.specs[name].check(value)
        return validate({**self.raw, **ours}, self.sensors)


def validate(values: dict[str, Any], sensors: tuple[ModalitySpec, ...] = DELIVER_SENSORS) -> NodeConfig:
    """Check every parameter (defaults filled in) of a node with `sensors` (node_sensors) and build the
    NodeConfig; raise ConfigError if invalid."""
    specs = parameters(sensors)
    names = tuple(s.name for s in sensors)
    unknown = sorted(set(values) - {p.name for p in specs})
    if unknown:
        raise ConfigError(f"unknown parameters {unknown}")
    v = check_all(specs, values)

    enabled = tuple(m for m in names if v[f"{m}.enabled"])
    if not enabled:
        raise ConfigError("every modality is disabled: enable at least one of " + ", ".join(names))
    priority = list(v["sync.reference_priority"])
    bad = sorted(set(priority) - set(names))
    if bad or len(set(priority)) != len(priority):
        raise ConfigError(f"sync.reference_priority must list distinct modalities of {list(names)}, got {priority}")
    ordered = [m for m in priority if m in enabled] + [m for m in enabled if m not in priority]
    sync = SyncConfig(
        modalities=[ModalityConfig(m, time_offset=float(v[f"{m}.time_offset"]),
                                   stale_timeout=float(v[f"{m}.stale_timeout"])) for m in ordered],
        max_skew=float(v["sync.max_skew"]), timeout=float(v["sync.timeout"]),
        buffer_size=int(v["sync.buffer_size"]), order=names)

    size = [int(x) for x in v["model.input_size"]]
    if len(size) != 2 or (size != [0, 0] and min(size) < 32):
        raise ConfigError(f"model.input_size must be [height, width] >= 32 (or [0, 0]), got {size}")
    transform = np.asarray(v["geometry.lidar_to_camera"], dtype=np.float64)
    if transform.size != 16:
        raise ConfigError(f"geometry.lidar_to_camera needs 16 numbers (4x4 row-major), got {transform.size}")
    transform = transform.reshape(4, 4)
    rotation = transform[:3, :3]
    if not np.allclose(transform[3], [0, 0, 0, 1]) or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3):
        raise ConfigError("geometry.lidar_to_camera must be a rigid transform (orthonormal rotation, last row 0 0 0 1)")
    pipeline = PipelineConfig(
        input_size=None if size == [0, 0] else (size[0], size[1]),
        geometry=SensorGeometry(camera_height=float(v["geometry.camera_height"]),
                                camera_pitch=float(v["geometry.camera_pitch"]), T_cam_lidar=transform),
        min_confidence=float(v["outputs.min_confidence"]),
        lidar_intensity_field=v["lidar.intensity_field"].strip(),
        lidar_intensity_scale=float(v["lidar.intensity_scale"]),
        output_resolution=v["outputs.resolution"],
        units={s.name: _units(s, v) for s in sensors if s.kind in CAMERA_KINDS})

    return NodeConfig(
        enabled=enabled,
        topics={m: v[f"{m}.topic"] for m in names},
        camera_info_topics={m: v[f"{m}.camera_info_topic"] for m in names if f"{m}.camera_info_topic" in v},
        sync=sync, pipeline=pipeline,
        model=ModelSettings(checkpoint=resolve_checkpoint(v["model.checkpoint"]), device=v["model.device"],
                            precision=v["model.precision"], backend=v["model.backend"]),
        qos=QosSettings(input_depth=v["qos.input_depth"], input_reliability=v["qos.input_reliability"],
                        output_reliability=v["qos.output_reliability"], silent_after=v["qos.silent_after"]),
        outputs={name: bool(v[f"outputs.{name}"]) for name in OUTPUTS},
        overlay_alpha=v["outputs.overlay_alpha"],
        palette=parse_palette(v["outputs.palette"]),
        diagnostics_period=v["diagnostics.period"],
        autostart=v["autostart"],
        health=HealthConfig.from_params(v),
        raw=v, sensors=tuple(sensors), specs={p.name: p for p in specs},
    )


def _units(spec: ModalitySpec, v: dict[str, Any]) -> ModalitySpec:
    """The camera's spec with its configured scale (0 = the spec's) and offset."""
    scale = v[f"{spec.name}.scale"]
    try:
        return replace(spec, scale=scale or spec.scale, offset=v[f"{spec.name}.offset"])
    except ValueError as exc:
        raise ConfigError(f"{spec.name}.scale / {spec.name}.offset: {exc}") from None


_HEX_COLOUR = re.compile(r"^#?([0-9a-fA-F]{6})$")


def parse_palette(text: str) -> np.ndarray | None:
    """'#804080 #f423e8 ...' -> Nx3 uint8 (None for an empty string); ConfigError naming a bad entry."""
    entries = [e for e in re.split(r"[\s,]+", text.strip()) if e]
    if not entries:
        return None
    colours = []
    for i, entry in enumerate(entries):
        match = _HEX_COLOUR.match(entry)
        if match is None:
            raise ConfigError(f"outputs.palette entry {i} is {entry!r}: expected a colour such as #804080")
        colours.append([int(match.group(1)[k:k + 2], 16) for k in (0, 2, 4)])
    return np.array(colours, dtype=np.uint8)


def resolve_palette(configured: np.ndarray | None, checkpoint: np.ndarray) -> np.ndarray:
    """The palette to draw with: the configured one, which must give every class of the checkpoint a
    colour, else the checkpoint's."""
    if configured is None:
        return np.asarray(checkpoint, dtype=np.uint8)
    if len(configured) != len(checkpoint):
        raise ConfigError(f"outputs.palette has {len(configured)} colours, the checkpoint {len(checkpoint)} "
                          "classes: give one colour per class (or none for the checkpoint's)")
    return configured


def topics_help() -> str:
    """The node's topics for --help: inputs (remap them, or set <sensor>.topic) and outputs."""
    inputs = [f"  {SPECS[n].default:<24} {SPECS[n].description}" for n in SPECS if n.endswith("topic")] + [
        f"  {'~/<name>/image':<24} each further camera of the checkpoint (e.g. thermal), with ~/<name>/camera_info"]
    outputs = [f"  ~/{name:<22} {kind.__name__}" for name, kind in OUTPUT_TYPES.items()]
    return "\n".join(["subscribed topics:", *inputs, "published topics:", *outputs,
                      f"  {'~/labels':<24} String (latched JSON: classes, palette)",
                      f"  {'/diagnostics':<24} DiagnosticArray"])


def resolve_checkpoint(path: str) -> str:
    """Absolute paths and existing relative ones are kept; other relative paths are looked up under the
    package share directory (where models/ is installed)."""
    if not path:
        raise ConfigError("model.checkpoint is empty")
    if Path(path).is_absolute() or Path(path).exists():
        return str(Path(path).resolve())
    return str(share_path(path))
