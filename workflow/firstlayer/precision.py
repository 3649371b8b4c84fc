"""Where and in what a run computes: its device, bfloat16 autocast above the first layer where the device computes
it natively, and a first layer that always computes in float32 (docs/method.md, Training precision)."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from firstlayer.modelspec import model_spec

#: ``TrainSettings.precision`` values: bfloat16 autocast above the first layer where the device computes it natively
#: (a CUDA GPU with bfloat16, a CPU with AVX512-BF16 or AMX), else float32; float32 throughout; bfloat16 always.
PRECISIONS = ("auto", "float32", "bfloat16")

#: Flags that let CUDA substitute TF32 (10-bit mantissa) for float32: cuDNN convolutions and cuBLAS matmuls.
_TF32_FLAGS = ((torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32"))


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error a user can fix."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but no GPU is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX
    (elsewhere oneDNN emulates bfloat16, slower than float32)."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.3 had no emulation to exclude
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


def resolve_precision(name: str, device: torch.device, model_name: str) -> torch.dtype | None:
    """``TrainSettings.precision`` -> the autocast dtype above the first layer (None: float32 throughout).

    The linear CNN always trains in float32: everything it computes is its first layer (it steps in input space,
    its readout folded into the filters), so there is nothing above it to round."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; allowed: {', '.join(PRECISIONS)}")
    if model_spec(model_name).linear or name == "float32" or (name == "auto" and not native_bfloat16(device)):
        return None
    return torch.bfloat16


def precision_name(amp: torch.dtype | None) -> str:
    """What ``resolve_precision`` gave, in words: "float32" or "bfloat16"."""
    return "float32" if amp is None else str(amp).removeprefix("torch.")


def describe_precision(amp: torch.dtype | None) -> str:
    """What a run computes in, in words, for its log."""
    return "float32 throughout" if amp is None else f"{precision_name(amp)} above a float32 first layer"


def autocast(device: torch.device, amp: torch.dtype | None) -> torch.autocast:
    """The autocast of a training step: to `amp` where ``resolve_precision`` gave one, else off."""
    return torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None)


@contextlib.contextmanager
def float32_first_layer(conv: nn.Module | None) -> Iterator[None]:
    """Inside, `conv` computes in float32 with autocast off, and CUDA substitutes no TF32 for float32 (cuDNN
    convolutions, cuBLAS matmuls): the layer whose filters are measured is never rounded below float32. Layers
    above it keep whatever autocast the caller set. The backward of a convolution reads the TF32 flags when it runs,
    so they stay off for the whole scope. The forward is wrapped as a method bound to `conv` (a copy made inside
    the scope wraps the copy) and whatever instance forward it had before is put back on exit, as are the flags.
    With `conv` None only the TF32 flags are set."""
    saved_flags = [(owner, name, getattr(owner, name)) for owner, name in _TF32_FLAGS]
    previous = vars(conv).get("forward") if conv is not None else None  # an instance forward set before
    try:
        for owner, name, _ in saved_flags:
            setattr(owner, name, False)
        if conv is not None:
            inner = previous if previous is not None else type(conv).forward.__get__(conv)

            def forward(self: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
                with torch.autocast(x.device.type, enabled=False):
                    return (inner if self is conv else type(self).forward.__get__(self))(x.float(), *args, **kwargs)

            conv.forward = types.MethodType(forward, conv)  # type: ignore[method-assign]
        yield
    finally:
        try:
            if conv is not None:
                if previous is not None:
                    conv.forward = previous  # type: ignore[method-assign]
                else:
                    vars(conv).pop("forward", None)
        finally:
            for owner, name, value in saved_flags:
                setattr(owner, name, value)
