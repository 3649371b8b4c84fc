"""The first layer of any network, found rather than guessed: the Conv2d (a patch embedding is one too) that the
input tensor itself enters, seen by forward hooks on one dummy batch (docs/method.md, Patch statistics)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: How the messages say to name the first layer (the config's validation says it with the key to set).
CHOOSE_HINT = "choose one with first_layer='NAME' (--first-layer NAME)"
#: Image sides tried for the dummy batch after the data's own, when a network refuses it (ViTs fix their size).
FALLBACK_SIZES = (224,)


class FirstLayerError(ValueError):
    """No first layer, several, or a named one that cannot be profiled."""


@dataclass(frozen=True)
class FirstLayer:
    """The first-layer module, its name in ``model.named_modules()`` and how it was found."""

    name: str
    module: nn.Conv2d
    found_by: str

    def describe(self) -> str:
        """'conv1: 64 filters 7x7, stride 2, padding 3' (the filters, not the module's repr)."""
        m = self.module
        return (f"{self.name}: {m.out_channels} filters {m.kernel_size[0]}x{m.kernel_size[1]}, stride "
                f"{_pair(m.stride)}, padding {_pair(m.padding)}")  # fmt: skip


def _pair(value: tuple | str | int) -> str:
    if isinstance(value, tuple) and len(set(value)) == 1:
        return str(value[0])
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def input_convs(model: nn.Module) -> list[str]:
    """Names of the Conv2d layers with 3 input channels, in ``named_modules`` order."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3]


def _choose(model: nn.Module, names: list[str] | None = None) -> str:
    """The candidates (default: every 3-channel Conv2d) and how to choose one."""
    names = names or input_convs(model)
    listed = ", ".join(names[:20]) + (f" (and {len(names) - 20} more)" if len(names) > 20 else "")
    return f"candidates: {listed or 'none (no 3-channel Conv2d)'}; {CHOOSE_HINT}"


def _probe(model: nn.Module, side: int) -> list[str]:
    """Names of the Conv2d modules that a (2, 3, side, side) batch itself enters in one forward pass (eval mode,
    no grad, on the model's device and dtype; a model on the meta device computes nothing)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    names = {m: n for n, m in model.named_modules()}
    seen: list[str] = []

    def is_input(t: object) -> bool:  # the input itself, or a view of it (e.g. x.view(-1, 3, h, w))
        if t is x:
            return True
        same = isinstance(t, torch.Tensor) and t.shape == x.shape and t.device.type != "meta"
        return same and t.data_ptr() == x.data_ptr() and t.stride() == x.stride()

    def hook(module: nn.Module, args: tuple) -> None:
        if args and is_input(args[0]) and names[module] not in seen:
            seen.append(names[module])

    hooks = [m.register_forward_pre_hook(hook) for m in names if isinstance(m, nn.Conv2d)]
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    return seen


def _declared_sides(model: nn.Module) -> list[int]:
    """Input sides the network declares: torchvision's ViT ``image_size``, timm's ``pretrained_cfg['input_size']``."""
    sides = [getattr(model, "image_size", None)]
    cfg = getattr(model, "pretrained_cfg", None) or {}
    sides.append(cfg.get("input_size", (None, None))[-1])
    return [int(s) for s in sides if isinstance(s, int)]


def entered_by_input(model: nn.Module, image_size: int) -> list[str]:
    """The Conv2d layers the input tensor itself enters, at the data's side or, when the network refuses that, at
    the side it declares (or 224)."""
    errors = []
    for side in dict.fromkeys([image_size, *_declared_sides(model), *FALLBACK_SIZES]):
        try:
            return _probe(model, side)
        except Exception as error:  # a user's network may raise anything on a size it does not take
            errors.append(f"{side}x{side}: {type(error).__name__}: {str(error).strip().splitlines()[0]}")
    raise FirstLayerError(
        f"{type(model).__name__} did not run on a dummy batch of 3-channel images ({'; '.join(errors)}), so its "
        f"first layer cannot be found by running it; {_choose(model)}"
    )


def check_first_layer(model: nn.Module, name: str) -> nn.Conv2d:
    """Module `name` (or 'name.weight') of `model`, checked to be a Conv2d whose filters are 3-channel k x k
    patch vectors: square, not dilated, not grouped."""
    name = name.removesuffix(".weight")
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise FirstLayerError(f"{type(model).__name__} has no module {name!r}; {_choose(model)}") from None
    if not isinstance(module, nn.Conv2d):
        raise FirstLayerError(f"{name} is a {type(module).__name__}, not a Conv2d; {_choose(model)}")
    problems = {
        "does not take 3 input channels": module.in_channels != 3,
        "is grouped": module.groups != 1,
        "is dilated (its filters do not act on contiguous patches)": module.dilation != (1, 1),
        "has a non-square kernel": module.kernel_size[0] != module.kernel_size[1],
    }
    if found := [p for p, bad in problems.items() if bad]:
        raise FirstLayerError(f"{name} ({module}) {' and '.join(found)}: its filters are not k x k x 3 patches")
    return module


def _hints(model: nn.Module) -> list[str]:
    """First-layer names a library declares: timm's ``pretrained_cfg['first_conv']``."""
    first = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    return [first] if isinstance(first, str) else list(first or [])


def find_first_layer(model: nn.Module, *, image_size: int = 32, name: str | None = None) -> FirstLayer:
    """The first layer of `model`: module `name` when given; else the one Conv2d that the input tensor itself
    enters in a forward pass of a dummy batch; else, when none or several do, timm's declared ``first_conv``.
    FirstLayerError lists the candidates otherwise."""
    if name is not None:
        return FirstLayer(name.removesuffix(".weight"), check_first_layer(model, name), "named by the caller")
    entered = entered_by_input(model, image_size)
    if len(entered) == 1:
        return FirstLayer(entered[0], check_first_layer(model, entered[0]), "forward hooks: the input enters it")
    declared = [h for h in _hints(model) if h in input_convs(model)]
    if len(declared) == 1 and (not entered or declared[0] in entered):
        return FirstLayer(declared[0], check_first_layer(model, declared[0]), "timm pretrained_cfg['first_conv']")
    if entered:
        raise FirstLayerError(f"the input tensor enters several Conv2d layers; {_choose(model, entered)}")
    raise FirstLayerError(
        f"the input tensor itself enters no Conv2d of {type(model).__name__} (the network transforms it first, or "
        f"its first layer is not a Conv2d); {_choose(model)}"
    )
