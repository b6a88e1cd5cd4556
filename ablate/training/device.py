"""Device choice and precision."""

from __future__ import annotations

import contextlib

import torch

# Dense bf16 peak FLOP/s by GPU name fragment, for MFU (vendor data sheets).
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}


def pick_device(requested: str) -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def device_problem(requested: str) -> str | None:
    """Why this torch cannot run on `requested` (one line naming the fix), or None. `auto` always can."""
    build = f"torch {torch.__version__}"
    if requested.startswith("cuda"):
        if torch.version.cuda is None:
            return (f"device={requested}: this torch build has no CUDA ({build}); use device=cpu or install a CUDA "
                    f"build of torch")
        if not torch.cuda.is_available():
            return (f"device={requested}: {build} was built for CUDA {torch.version.cuda} but sees no GPU (check the "
                    f"driver and CUDA_VISIBLE_DEVICES); use device=cpu")
        index, count = requested.partition(":")[2], torch.cuda.device_count()
        if index and not (index.isdigit() and int(index) < count):
            return f"device={requested}: this machine has {count} CUDA device(s); use cuda:0 to cuda:{count - 1}"
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return f"device=mps: MPS (Apple GPU) is not available to {build} on this machine; use device=cpu"
    return None


def enable_tf32(device: str) -> None:
    """On CUDA, float32 matmuls and convolutions may use TF32 tensor cores (Ampere and later): what bf16 autocast
    leaves in float32 (the loss, the optimizer's math) runs several times faster, at a 10-bit mantissa for products
    whose sums stay float32. A no-op elsewhere."""
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device: str):
    """bf16 autocast on CUDA; full precision elsewhere (CPU bf16 is slower than fp32 on most CPUs)."""
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def peak_flops(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)
