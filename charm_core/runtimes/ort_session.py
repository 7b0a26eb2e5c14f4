"""ONNX Runtime sessions as every graph user opens them: the execution-provider names and the session
options. The export check and the backend both open sessions here, so the check runs what the node runs.

CPU sessions use the process's thread budget (torch.get_num_threads(), which follows OMP_NUM_THREADS
and the node's settings) with spinning off: a spinning pool steals the cores the sensor callbacks
and other nodes need, and on a shared machine makes latency erratic.
"""
from __future__ import annotations

import torch

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TENSORRT_EP = "TensorrtExecutionProvider"


def available_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def session_options(threads: int | None = None):
    """Intra-op threads = the process's thread budget, one inter-op thread, no spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options
