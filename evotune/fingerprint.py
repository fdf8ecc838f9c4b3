"""The environment fingerprint: where a trial ran (GPU, driver, CUDA, torch, Triton, kernel).

Every study, and so every published best, belongs to the fingerprint it was measured on
(docs/how-evotune-measures.md, "The kernel fingerprint"). The worker
computes the fingerprint inside its own process, so that it describes the GPU the trials
really ran on. Imports only the standard library at module level (torch and triton lazily).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import platform
import shutil
import subprocess
from typing import Any

from evotune.source_hash import kernel_source_hash

__all__ = [
    "FINGERPRINT_KEYS",
    "device_environment",
    "driver_version",
    "environment",
    "fingerprint_hash",
]

# What identifies an environment; device_capability and sm_count describe it further (and
# are implied by the GPU name, except on partitioned GPUs, so they are hashed too).
FINGERPRINT_KEYS = (
    "gpu",
    "driver",
    "cuda",
    "torch",
    "triton",
    "kernel_source_hash",
    "interpreted",
    "device_capability",
    "sm_count",
)


def environment(kernel_module: str, *, interpreted: bool) -> dict[str, Any]:
    """The fingerprint of this process's device: call it where the trials run.

    GPU mode describes CUDA device 0 of this process (the worker sets CUDA_VISIBLE_DEVICES).
    """
    return device_environment(kernel_source_hash(kernel_module), interpreted=interpreted)


def device_environment(source_hash: str, *, interpreted: bool, device: int = 0) -> dict[str, Any]:
    """The fingerprint of CUDA device `device` of this process (or the interpreter), for a
    kernel whose source hashes to `source_hash` (a plug-in's, or a decorated kernel's)."""
    import torch
    import triton

    env: dict[str, Any] = {
        "gpu": "cpu (triton interpreter)",
        "driver": None,
        "cuda": None,
        "torch": str(torch.__version__),
        "triton": str(triton.__version__),
        "kernel_source_hash": source_hash,
        "interpreted": bool(interpreted),
        "device_capability": None,
        "sm_count": 0,
    }
    if interpreted:
        env["gpu"] = f"cpu (triton interpreter, {platform.machine()})"
        return env
    props = torch.cuda.get_device_properties(device)
    env["gpu"] = str(props.name)
    env["driver"] = driver_version()
    env["cuda"] = torch.version.cuda
    env["device_capability"] = [int(props.major), int(props.minor)]
    env["sm_count"] = int(props.multi_processor_count)
    return env


def fingerprint_hash(env: dict[str, Any]) -> str:
    """Stable short hash of the identifying keys of an environment (missing keys count as None)."""
    ident = {key: env.get(key) for key in FINGERPRINT_KEYS}
    if isinstance(ident["device_capability"], tuple):
        ident["device_capability"] = list(ident["device_capability"])
    canonical = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def driver_version() -> str | None:
    """The NVIDIA driver version: NVML through ctypes, else nvidia-smi; None when neither works."""
    return _nvml_driver_version() or _nvidia_smi_driver_version()


def _nvml_driver_version() -> str | None:
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    try:
        if nvml.nvmlInit_v2() != 0:
            return None
        try:
            buf = ctypes.create_string_buffer(96)
            if nvml.nvmlSystemGetDriverVersion(buf, ctypes.c_uint(len(buf))) != 0:
                return None
            return buf.value.decode() or None
        finally:
            nvml.nvmlShutdown()
    except (AttributeError, OSError):
        return None


def _nvidia_smi_driver_version() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = proc.stdout.strip().splitlines()
    return lines[0].strip() if proc.returncode == 0 and lines else None
