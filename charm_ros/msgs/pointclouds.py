"""sensor_msgs/PointCloud2 <-> numpy, in sensor_msgs_py's read_points semantics (not installable from PyPI)."""
from __future__ import annotations

from typing import Any

import numpy as np

from charm_ros.msgs.fields import NATIVE_BIG, ConversionError, byte_view, fresh_header, to_byte_array

# sensor_msgs/PointField datatype constants -> numpy base type.
_POINTFIELD_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


def _field_views(msg: Any, names: tuple[str, ...], optional: str | None) -> dict[str, np.ndarray]:
    """HxW strided views (message byte order) of the named PointCloud2 fields; `optional` may be absent."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if height * width <= 0:
        raise ConversionError(f"point cloud is empty (height={height}, width={width})")
    if point_step <= 0:
        raise ConversionError(f"point cloud point_step must be positive, got {point_step}")
    if row_step < width * point_step:
        raise ConversionError(f"point cloud row_step {row_step} is smaller than width*point_step = "
                              f"{width}*{point_step}")
    raw = byte_view(msg.data, "point cloud")
    needed = (height - 1) * row_step + width * point_step
    if raw.size < needed:
        raise ConversionError(f"point cloud data has {raw.size} bytes, expected at least {needed} "
                              f"(height={height}, row_step={row_step}, width={width}, point_step={point_step})")
    fields: dict[str, Any] = {}
    for field in msg.fields:
        fields.setdefault(str(field.name), field)  # a repeated name: the first one wins
    missing = [name for name in names if name not in fields]
    if missing:
        raise ConversionError(f"point cloud has no field(s) {missing}; it has {list(fields)}")
    order = ">" if msg.is_bigendian else "<"
    views = {}
    for name in names + ((optional,) if optional in fields else ()):
        field = fields[name]
        base = _POINTFIELD_TYPES.get(int(field.datatype))
        if base is None:
            raise ConversionError(f"point cloud field {name!r} has unknown datatype {field.datatype}; "
                                  f"expected one of {sorted(_POINTFIELD_TYPES)}")
        dtype = np.dtype(order + base)
        offset = int(field.offset)
        if offset < 0 or offset + dtype.itemsize > point_step:
            raise ConversionError(f"point cloud field {name!r} at offset {offset} ({dtype.itemsize} bytes) "
                                  f"does not fit in point_step {point_step}")
        views[name] = np.ndarray((height, width), dtype=dtype, buffer=raw, offset=offset,
                                 strides=(row_step, point_step))
    return views


def pointcloud2_to_xyzi(msg: Any, intensity_field: str | None = "intensity") -> np.ndarray:
    """sensor_msgs/PointCloud2 of any layout -> Nx4 float32 (x, y, z, intensity), organized clouds flattened.

    Reads fields by name at their offsets (padding, float64, integer types, either byte order,
    row padding); a field with count > 1 contributes its first element. Intensity is 0 where the
    field is absent (or `intensity_field` is None) or not finite; points with a non-finite coordinate
    (no return) are dropped, so a cloud without any return yields a 0x4 array. A cloud with no points
    at all is an error.
    """
    views = _field_views(msg, ("x", "y", "z"), intensity_field)
    height, width = views["x"].shape
    points = np.zeros((height, width, 4), dtype=np.float32)
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf: dropped / zeroed below
        for column, name in enumerate(("x", "y", "z", intensity_field)):
            if name in views:
                points[:, :, column] = views[name]
    points = points.reshape(-1, 4)
    finite = np.isfinite(points)
    if not finite[:, 3].all():
        points[~finite[:, 3], 3] = 0.0
    keep = finite[:, :3].all(axis=1)
    return points if keep.all() else points[keep]


def xyzi_to_pointcloud2(points: np.ndarray, header: Any = None, frame_id: str | None = None) -> Any:
    """Nx4 (or Nx3, intensity 0) points -> PointCloud2 with float32 x, y, z, intensity, point_step 16."""
    values = np.asarray(points)
    if values.ndim != 2 or values.shape[1] not in (3, 4):
        raise ConversionError(f"points must be Nx3 or Nx4, got shape {values.shape}")
    xyzi = np.zeros((values.shape[0], 4), dtype=np.float32)
    xyzi[:, :values.shape[1]] = values
    cloud = xyzi.view(np.dtype([(name, np.float32) for name in ("x", "y", "z", "intensity")])).reshape(-1)
    return records_to_pointcloud2(cloud, header, frame_id)


_POINTFIELD_DATATYPES = {np.dtype(base).newbyteorder("="): datatype for datatype, base in _POINTFIELD_TYPES.items()}


def records_to_pointcloud2(cloud: np.ndarray, header: Any = None, frame_id: str | None = None) -> Any:
    """A 1-D structured array (one named field per PointField, native byte order) -> unorganized
    PointCloud2 (height 1) with the array's own offsets and itemsize as point_step."""
    from sensor_msgs.msg import PointCloud2, PointField

    fields = []
    for name in cloud.dtype.names:
        dtype, offset = cloud.dtype.fields[name][:2]
        datatype = _POINTFIELD_DATATYPES.get(dtype.newbyteorder("="))
        if datatype is None or dtype.shape:
            raise ConversionError(f"field {name!r} of type {dtype} has no PointField datatype")
        fields.append(PointField(name=name, offset=offset, datatype=datatype, count=1))
    msg = PointCloud2()
    msg.header = fresh_header(header, frame_id)
    msg.height, msg.width = 1, cloud.shape[0]
    msg.fields = fields
    msg.is_bigendian = NATIVE_BIG
    msg.point_step, msg.row_step = cloud.dtype.itemsize, cloud.dtype.itemsize * cloud.shape[0]
    msg.is_dense = all(bool(np.isfinite(cloud[name]).all()) for name in cloud.dtype.names)
    msg.data = to_byte_array(np.ascontiguousarray(cloud).view(np.uint8))
    return msg
