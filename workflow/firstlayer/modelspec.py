"""Networks named by a spec: a built-in name (``firstlayer.models``), ``torchvision:NAME``, ``timm:NAME``,
``path/to/file.py:builder`` or ``package.module:builder``. Every spec resolves to a ``ModelSpec`` (``model_spec``)
and is built by one function (``build_model``); user models are checked before any job (``check_grid_model``,
cached by the spec and its file's bytes). Parsing imports no torch (configs are parsed with it); building and
loading weights do. Nothing is downloaded: library weights come from their local caches."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from firstlayer.models import MODELS, ModelSpec, default_kernel, image_size_problem, is_user_model, kernel_problem

if TYPE_CHECKING:
    import torch
    from torch import nn

#: What a model spec may be, for messages.
SPEC_FORMS = (
    f"a built-in name ({', '.join(MODELS)}), torchvision:NAME, timm:NAME, path/to/file.py:builder or "
    "package.module:builder"
)
#: ``--weights`` values that name a library's own weights rather than a file.
LIBRARY_WEIGHTS = "DEFAULT"
#: File suffixes that make a ``--weights`` value a path even when the file is missing (for the error message).
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".tar")


#: The repository root when the package runs from a checkout (workflow/firstlayer/ inside it): a relative model file
#: not found in the working directory is looked for here.
REPOSITORY = Path(__file__).resolve().parents[2]


class ModelSpecError(ValueError):
    """A model spec that cannot be parsed, imported or built, or weights that cannot be found."""


@dataclass(frozen=True)
class ModelSource:
    """A parsed model spec: kind ('builtin', 'torchvision', 'timm', 'file' or 'module'), the model, file or module
    name, and for 'file' and 'module' the builder's name."""

    kind: str
    name: str
    builder: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.kind}:" if self.kind in ("torchvision", "timm") else ""
        return f"{prefix}{self.name}" + (f":{self.builder}" if self.builder else "")


def parse_model_spec(spec: str) -> ModelSource:
    """'resnet20', 'torchvision:resnet18', 'timm:vit_tiny_patch16_224', 'nets/my_net.py:build' or
    'my_pkg.nets:build' -> ModelSource (no import, no file check: ``load_builder`` does those)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"a model spec must be {SPEC_FORMS}; got {spec!r}")
    spec = spec.strip()
    library, _, name = spec.partition(":")
    if library in ("torchvision", "timm"):
        if not name or ":" in name:
            raise ModelSpecError(f"model spec {spec!r}: write {library}:NAME, e.g. {library}:resnet18")
        return ModelSource(library, name)
    if ":" not in spec:
        if spec not in MODELS:
            close = difflib.get_close_matches(spec, MODELS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ModelSpecError(f"unknown model {spec!r}{hint}; a model spec is {SPEC_FORMS}")
        return ModelSource("builtin", spec)
    where, _, builder = spec.rpartition(":")  # rpartition: a Windows path keeps its drive colon
    if not builder.isidentifier():
        raise ModelSpecError(f"model spec {spec!r}: the builder after the last ':' must be a Python name")
    if where.endswith(".py"):
        return ModelSource("file", where, builder)
    if all(part.isidentifier() for part in where.split(".")):
        return ModelSource("module", where, builder)
    raise ModelSpecError(f"model spec {spec!r}: before ':' write a .py file or a dotted module name; {SPEC_FORMS}")


def model_file(name: str | Path) -> Path:
    """The .py file of a 'file' spec: `name` as it is (absolute, or relative to the working directory), else relative
    to the repository this package runs from (the Snakefile's folder, as Snakemake resolves a rule's script: a
    workflow run with --directory elsewhere still finds tests/configs/user_net.py)."""
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [path, REPOSITORY / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = " and ".join(dict.fromkeys(str(c.resolve()) for c in candidates))
    raise ModelSpecError(f"model file {name} does not exist (looked at {looked})")


def source_file(spec: str) -> Path | None:
    """The .py file a 'file' spec builds from (``model_file``), None for any other spec: the workflow makes it an
    input of the architecture's training jobs, so that editing it re-trains."""
    source = parse_model_spec(spec)
    return model_file(source.name) if source.kind == "file" else None


def _import_file(path: Path) -> Any:
    """Import a user's .py file as a module (its folder on sys.path meanwhile, so that it can import its siblings)."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"_firstlayer_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(name, None)
        raise ModelSpecError(f"importing {path} failed: {type(error).__name__}: {error}") from error
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise ModelSpecError(
            f"cannot import module {name!r} ({error}); install it or add its folder to PYTHONPATH, or name a "
            "file: path/to/file.py:builder"
        ) from None
    except Exception as error:
        raise ModelSpecError(f"importing {name} failed: {type(error).__name__}: {error}") from error


def _attribute(module: Any, source: ModelSource) -> Callable[..., nn.Module]:
    builder = getattr(module, source.builder, None)
    if builder is None or not callable(builder):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        names = [n for n in names if getattr(vars(module)[n], "__module__", None) == module.__name__]
        what = "is not callable" if builder is not None else "does not exist"
        raise ModelSpecError(f"{source}: {source.builder} {what} in {source.name}; its functions: {', '.join(names)}")
    return builder


def _timm() -> Any:
    try:
        import timm
    except ModuleNotFoundError:
        raise ModelSpecError("timm:NAME models need timm: pip install 'firstlayer[timm]'") from None
    return timm


def load_builder(source: ModelSource | str) -> Callable[..., nn.Module]:
    """The callable that builds the network of a spec: a built-in's registered builder, torchvision's or timm's
    builder, or the user's function (its file or module imported)."""
    source = parse_model_spec(source) if isinstance(source, str) else source
    if source.kind == "builtin":
        return MODELS[source.name].builder
    if source.kind == "torchvision":
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)  # classification models only
        if source.name not in names and source.name in torchvision.models.list_models():
            raise ModelSpecError(
                f"torchvision's {source.name} is not a classification model (it is one of "
                f"torchvision.models.{torchvision.models.get_model_builder(source.name).__module__.split('.')[2]}); "
                "firstlayer trains and profiles classifiers: pick one of torchvision.models.list_models("
                "module=torchvision.models)"
            )
        if source.name not in names:
            close = difflib.get_close_matches(source.name, names, n=3)
            hint = f"; close: {', '.join(close)}" if close else ""
            raise ModelSpecError(f"torchvision has no classification model {source.name!r}{hint}")
        return torchvision.models.get_model_builder(source.name)
    if source.kind == "timm":
        timm = _timm()
        if not timm.is_model(source.name):
            close = difflib.get_close_matches(source.name, timm.list_models(), n=3)
            raise ModelSpecError(f"timm has no model {source.name!r}; close: {', '.join(close) or 'none'}")
        return lambda **kwargs: timm.create_model(source.name, **kwargs)
    module = _import_file(model_file(source.name)) if source.kind == "file" else _import_module(source.name)
    return _attribute(module, source)


# ------------------------------------------------------------------------ every spec as a ModelSpec, one build

#: What firstlayer passes a user's builder, by name and only where its signature names them: the data's number of
#: classes and image side, and the architecture's kernel_size and width when they are given.
GRID_ARGUMENTS = ("num_classes", "kernel_size", "width", "image_size")
#: The number of classes of the network built to validate an architecture (its head does not touch the first layer).
CHECK_CLASSES = 10


class GridModelError(ModelSpecError):
    """A user model that cannot be built or trained in the grid; `key` is the architecture's key to fix: model,
    first_layer, kernel_size or width."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class GridLayer:
    """The first layer of a user model as validation found it: its module path, kernel size and description."""

    name: str
    kernel_size: int
    description: str


def _library_kwargs(source: ModelSource, num_classes: int, image_size: int) -> dict[str, Any]:
    """torchvision's builders get weights=None and num_classes (a ViT its image side too: torchvision's is built
    for one size); timm's pretrained=False and num_classes (and img_size where its config fixes the input size)."""
    if source.kind == "torchvision":
        side = {"image_size": image_size} if source.name.startswith("vit_") else {}
        return {"weights": None, "num_classes": num_classes, **side}
    cfg = _timm().models.get_pretrained_cfg(source.name)
    side = {"img_size": image_size} if cfg is not None and cfg.fixed_input_size else {}
    return {"pretrained": False, "num_classes": num_classes, **side}


def builder_arguments(
    source: ModelSource,
    builder: Callable[..., Any],
    *,
    num_classes: int,
    image_size: int,
    kernel_size: int | None = None,
    width: int | None = None,
) -> dict[str, Any]:
    """The keywords a torchvision:, timm: or user builder is called with (the one reading of its signature):
    the library's own (``_library_kwargs``), or those of ``GRID_ARGUMENTS`` a user's builder names (kernel_size and
    width only when given). GridModelError names the key to fix: a required parameter firstlayer cannot give, a
    required kernel_size or width not given, a width the builder does not take."""
    named: dict[str, bool] = {}  # parameter -> required (no default); none for a library or an unreadable signature
    if source.kind in ("file", "module"):
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        try:
            params = inspect.signature(builder).parameters.values()
        except (TypeError, ValueError):
            params = []
        named = {p.name: p.default is p.empty for p in params if p.kind in kinds}
    if foreign := [n for n, required in named.items() if required and n not in GRID_ARGUMENTS]:
        raise GridModelError(
            "model",
            f"builder {source} needs {', '.join(foreign)}, which the workflow cannot give: it passes only "
            f"{', '.join(GRID_ARGUMENTS)} (each where the builder names it); give the others defaults",
        )
    for key, value in (("kernel_size", kernel_size), ("width", width)):
        if value is None and named.get(key):
            raise GridModelError(key, f"builder {source} requires {key}: set it, or give it a default in the builder")
    if width is not None and "width" not in named:
        raise GridModelError("width", f"the builder of {source} takes no width; remove 'width' (it has its own)")
    if source.kind in ("torchvision", "timm"):
        return _library_kwargs(source, num_classes, image_size)
    given = {"num_classes": num_classes, "kernel_size": kernel_size, "width": width, "image_size": image_size}
    return {k: v for k, v in given.items() if v is not None and k in named}


def _build_library_or_user(
    spec: str, num_classes: int, kernel_size: int | None, width: int | None, image_size: int
) -> nn.Module:
    """The ``Builder`` of every torchvision:, timm:, file and module spec: its builder loaded and called with
    ``builder_arguments``; the result must be an nn.Module."""
    from torch import nn

    source = parse_model_spec(spec)
    builder = load_builder(source)
    kwargs = builder_arguments(
        source, builder, num_classes=num_classes, image_size=image_size, kernel_size=kernel_size, width=width
    )
    network = builder(**kwargs)
    if not isinstance(network, nn.Module):
        raise ModelSpecError(f"builder {source} returned a {type(network).__name__}, not a torch.nn.Module")
    return network


def model_spec(spec: str) -> ModelSpec:
    """The ModelSpec of any model spec: a built-in's registry entry (``firstlayer.models.MODELS``); for
    torchvision:, timm: and user specs one of the same shape whose builder is ``_build_library_or_user``, never
    stacked (nothing is known about its batch statistics), with conservative figures (a ResNet-50 at 32x32 beats
    them) and its first layer found by discovery (validation fills in the architecture's ``first_layer``). Unknown
    names are a ModelSpecError listing the allowed forms; no import, no torch."""
    if spec in MODELS:
        return MODELS[spec]
    if not is_user_model(spec):
        parse_model_spec(spec)  # raises: an unknown built-in name (with the closest one)
    return ModelSpec(
        builder=functools.partial(_build_library_or_user, spec.strip()),
        default_width=0,  # the builder's own
        stackable=False,
        batch_norm=True,  # unknown: assumed, so that no two seeds share a process
        cpu_images_per_second=10,
        activation_mb=16.0,
    )


def build_model(
    spec: str, *, num_classes: int, kernel_size: int | None = None, width: int | None = None, image_size: int = 32
) -> nn.Module:
    """A freshly initialised network of any model spec, the one build function (init drawn from torch's global
    RNG: seed it around this call). A built-in gets its default kernel size (``models.default_kernel``) and width
    when they are None and is checked as the config checks it; the other specs get `kernel_size` and `width` only
    where their builder names them (``builder_arguments``). ModelSpecError (a ValueError) says what to change."""
    entry = model_spec(spec)
    if is_user_model(spec):
        return entry.builder(num_classes, kernel_size, width, image_size)
    kernel_size = kernel_size or default_kernel(spec, image_size)
    if problem := image_size_problem(spec, image_size) or kernel_problem(spec, kernel_size, image_size):
        raise ModelSpecError(f"{spec}: {problem}")
    if entry.fixed_width and width not in (None, entry.default_width):
        raise ModelSpecError(f"{spec}: the width is fixed at {entry.default_width}, got {width}")
    return entry.builder(num_classes, kernel_size, width or entry.default_width, image_size)


# ------------------------------------------------------------------------ user models checked before any job


def _runs(network: nn.Module, source: ModelSource, image_size: int, where: str) -> None:
    """One training-mode forward and backward of two random images of the data's side (what training does)."""
    import torch

    x = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    try:
        network.train()(x).float().sum().backward()
    except Exception as error:  # a user's network may raise anything on a size it does not take
        cause = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        images = f"the {image_size}x{image_size} images" + (f" of {where}" if where else "")
        raise GridModelError("model", f"{source} does not train on {images} ({cause})") from None


def _module_source(name: str) -> Path | None:
    """The .py file of module `name` found on sys.path without importing it (None when a finder other than a
    plain folder provides it)."""
    for root in sys.path:
        base = Path(root or ".").joinpath(*name.split("."))
        for candidate in (base.parent / f"{base.name}.py", base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _check_key(spec: str, settings: Mapping[str, Any]) -> str | None:
    """The cache key of a grid-model check: the spec, its `settings`, the bytes of the user's file (a file spec, or
    a module found on sys.path), the checking code's and the libraries' versions. None when the spec cannot be
    keyed (an unparsable spec, a missing file, a module not found without importing it): then it is checked."""
    try:
        source = parse_model_spec(spec)
        path = model_file(source.name) if source.kind == "file" else None
    except ModelSpecError:
        return None
    if source.kind == "module" and (path := _module_source(source.name)) is None:
        return None
    here = Path(__file__).parent
    code = b"".join((here / name).read_bytes() for name in ("modelspec.py", "discovery.py", "models.py"))
    versions = {}
    for package in ("torch", "torchvision", "timm"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    key = {
        "spec": str(source),
        "settings": dict(settings),
        "source": hashlib.sha256(path.read_bytes()).hexdigest() if path else None,
        "code": hashlib.sha256(code).hexdigest(),
        "versions": versions,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def check_grid_model(
    spec: str,
    *,
    image_size: int | None,
    kernel_size: int | None = None,
    width: int | None = None,
    first_layer: str | None = None,
    where: str = "",
    cache: str | Path | None = None,
) -> GridLayer | None:
    """Check a user model of the config before any job (``_check_grid_model``); with a `cache` folder, a check
    that passed before with the same key (``_check_key``: the spec, these settings, the user file's bytes) is
    read from it instead of building the network (no torch), and a check that passes is written there."""
    settings = {"image_size": image_size, "kernel_size": kernel_size, "width": width, "first_layer": first_layer}
    key = _check_key(spec, settings) if cache is not None else None
    path = Path(cache) / f"{key}.json" if key else None
    if path is not None and path.is_file():
        try:
            stored = json.loads(path.read_text())["layer"]
            return None if stored is None else GridLayer(**stored)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable entry: check again
    layer = _check_grid_model(spec, where=where, **settings)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({"spec": spec, **settings, "layer": layer and dataclasses.asdict(layer)}))
        os.replace(partial, path)  # atomic: jobs parsing at once read a whole entry or none
    return layer


def _check_grid_model(
    spec: str,
    *,
    image_size: int | None,
    kernel_size: int | None = None,
    width: int | None = None,
    first_layer: str | None = None,
    where: str = "",
) -> GridLayer | None:
    """Check a user model of the config before any job: it imports, its builder can be called by the workflow, it
    builds and trains at `image_size`, and its first layer (module `first_layer`, else the Conv2d the input enters)
    is a k x k x 3 filter bank of the config's `kernel_size` when that is given. GridModelError names the key to
    fix; `where` says which images in its messages ("dataset 'a' (grid block 0)"). `image_size` None checks the
    import and the signature only (an architecture the grid does not train)."""
    import torch

    from firstlayer.discovery import CHOOSE_HINT, FirstLayerError, find_first_layer

    try:
        source = parse_model_spec(spec)
        builder = load_builder(source)
    except ModelSpecError as error:
        raise GridModelError("model", str(error)) from None
    kwargs = {"num_classes": CHECK_CLASSES, "kernel_size": kernel_size, "width": width}
    passed = builder_arguments(source, builder, image_size=image_size or 32, **kwargs)  # GridModelError: the key
    if image_size is None:
        return None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two tiny images: more threads only wait on each other (100x slower on a busy CPU)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            network = build_model(str(source), image_size=image_size, **kwargs)
        _runs(network, source, image_size, where)
        found = find_first_layer(network, image_size=image_size, name=first_layer)
    except GridModelError:
        raise
    except ModelSpecError as error:
        raise GridModelError("model", str(error)) from None
    except FirstLayerError as error:
        hint = "name it with this key" if first_layer else "name one with this key"
        raise GridModelError("first_layer", str(error).replace(CHOOSE_HINT, hint)) from None
    except Exception as error:  # the user's code
        raise GridModelError("model", f"building {source} failed: {type(error).__name__}: {error}") from None
    finally:
        torch.set_num_threads(threads)
    k = found.module.kernel_size[0]
    if kernel_size is not None and k != kernel_size:
        named = "kernel_size" in passed
        raise GridModelError(
            "kernel_size",
            f"{kernel_size}, but the first layer of {source} is {found.describe()}: its builder "
            f"{'ignored kernel_size' if named else 'takes no kernel_size'}; remove 'kernel_size' (it is then read "
            f"from the network) or set it to {k}",
        )
    return GridLayer(found.name, k, found.describe())


# ------------------------------------------------------------------------ weights and their input normalisation


@dataclass(frozen=True)
class LoadedModel:
    """A network to profile: the module (its architecture: the first layer is found by running it), the
    state_dict its first layer is read from (None: the module's own weights), where the weights came from, and
    the input normalisation they were trained with when their library records it."""

    spec: str
    module: nn.Module
    state: Mapping[str, torch.Tensor] | None = None
    weights: str = "as given"
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    normalisation: str | None = None


def _names_library_weights(text: str) -> bool:
    """'DEFAULT', 'IMAGENET1K_V1', 'ResNet18_Weights.IMAGENET1K_V1' name library weights; a path names a file."""
    return (
        re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)?", text) is not None
        and Path(text).suffix not in CHECKPOINT_SUFFIXES
    )


class FirstLayerWeight(NamedTuple):
    """Where a torchvision model keeps its first layer: the state_dict key of its weight, and its kernel size."""

    key: str
    kernel_size: int


@cache
def first_layer_weight(name: str) -> FirstLayerWeight:
    """The first-layer key and kernel size of torchvision model `name` (one of the config schema's
    ``pretrained_model`` names: GoogLeNet and Inception-v3 are left out, their ImageNet weights re-normalise the input
    inside the network), found by forward hooks on the model built on the meta device (no memory, no weights: a
    fraction of a second, once per process)."""
    import torch
    import torchvision

    from firstlayer.discovery import find_first_layer

    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None)
    found = find_first_layer(model, image_size=224)
    return FirstLayerWeight(f"{found.name}.weight", found.module.kernel_size[0])


def torchvision_weights(name: str, weights: str) -> Any:
    """torchvision's weights enum member of model `name`: 'DEFAULT', 'IMAGENET1K_V1' or 'ResNet18_Weights.X'."""
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    member = weights.rpartition(".")[2] if weights.startswith(enum.__name__ + ".") else weights
    if member not in enum.__members__:
        allowed = ", ".join(["DEFAULT", *enum.__members__])
        raise ModelSpecError(
            f"{name} has no weights {weights!r} (and no file has that name); torchvision's weights for it: {allowed}"
        )
    return enum[member]


def _torchvision_library(name: str, weights: str) -> tuple[nn.Module, dict, str, Path, np.ndarray, np.ndarray]:
    """(the network as these torchvision weights configure it, its state_dict from torch.hub's cache, their name, the
    file, mean, std); never downloads."""

    from firstlayer.checkpoints import read_checkpoint

    entry = torchvision_weights(name, weights)
    path = hub_checkpoint(entry)
    if not path.is_file():
        raise ModelSpecError(
            f"torchvision weights {entry} are not in torch.hub's cache: looked for {path}. Nothing is downloaded: "
            f'copy the file there (on a machine with a network: python -c "import torchvision; '
            f"torchvision.models.get_model('{name}', weights='{entry.name}')\"), or pass it with --weights FILE"
        )
    state = read_checkpoint(path)
    return (
        weights_model(name, entry, state, str(path)),
        state,
        f"torchvision {entry}",
        path,
        *weights_normalisation(entry),
    )


def weights_model(name: str, entry: Any, state: Mapping[str, torch.Tensor], where: str = "the checkpoint") -> nn.Module:
    """torchvision's model `name` built as its weights `entry` configure it (GoogLeNet's and Inception-v3's builders
    switch on ``transform_input`` with weights, for one), holding the tensors of `state`: torchvision's own builder
    with the weights, handed `state` in place of its download (nothing is downloaded)."""
    from unittest import mock

    import torchvision

    from firstlayer.checkpoints import CheckpointError, strip_wrappers

    plain = strip_wrappers(state)

    def handed(*args: Any, **kwargs: Any) -> dict:
        copy = type(plain)(plain)  # a builder may rename keys in place (DenseNet's)
        copy._metadata = getattr(plain, "_metadata", {})  # module versions (MNASNet reads them)
        return copy

    with mock.patch.object(type(entry), "get_state_dict", handed):
        try:
            return torchvision.models.get_model(name, weights=entry)
        except (RuntimeError, ValueError) as error:  # load_state_dict: missing, unexpected or mis-shaped keys
            detail = str(error).strip().splitlines()
            raise CheckpointError(
                f"{where} is not a whole torchvision {name} state_dict, so the network its weights {entry} configure "
                f"cannot be built from it: {' '.join(line.strip() for line in detail[:3])[:400]}"
            ) from None


def hub_checkpoint(entry: Any) -> Path:
    """Where torchvision keeps the checkpoint of weights `entry` once downloaded (nothing is downloaded here)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name


def weights_normalisation(entry: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (in [0, 1] pixel units) of torchvision weights' own preprocessing."""
    preprocess = entry.transforms()
    return np.asarray(preprocess.mean, dtype=np.float64), np.asarray(preprocess.std, dtype=np.float64)


#: Relative residual above which the first layer's input is not a per-channel affine map of the model's input.
AFFINE_TOLERANCE = 1e-4
#: Images in the batch that probes a network's input transform.
PROBE_IMAGES = 2


class InputTransformError(ModelSpecError):
    """A network that transforms its input before the first layer in a way no per-channel mean and std express."""


class InputTransform(NamedTuple):
    """Per channel, the first layer sees ``scale * x + offset`` of the network's (normalised) input x."""

    scale: np.ndarray
    offset: np.ndarray

    def normalisation(self, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mean and std (pixel units) that the first layer's input is normalised by, when the network's input
        is normalised by `mean` and `std`: scale * (p - mean) / std + offset = (p - mean') / std'."""
        std_seen = np.asarray(std, dtype=np.float64) / self.scale
        return np.asarray(mean, dtype=np.float64) - self.offset * std_seen, std_seen


class _ReachedLayer(Exception):
    """Raised by a forward pre-hook to stop the probe at the first layer, carrying that layer's input."""

    def __init__(self, seen: torch.Tensor) -> None:
        super().__init__()
        self.seen = seen


def _input_of_layer(module: nn.Module, layer: str, x: torch.Tensor, tensors: Mapping[str, torch.Tensor]) -> Any:
    """What module `layer` of `module` receives when `module` (eval mode, no grad, `tensors` in place of its own
    where given) runs on `x`; the pass stops there."""
    import torch

    def stop(_: nn.Module, args: tuple) -> None:
        raise _ReachedLayer(args[0])

    handle = module.get_submodule(layer).register_forward_pre_hook(stop)
    training = module.training
    try:
        with torch.no_grad():
            torch.func.functional_call(module.eval(), dict(tensors), (x,))
    except _ReachedLayer as reached:
        return reached.seen
    finally:
        module.train(training)
        handle.remove()
    raise InputTransformError(f"a forward pass of {type(module).__name__} never reached its first layer {layer}")


def _overlay(module: nn.Module, state: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The tensors of checkpoint `state` that fit `module` (same key under wrapper prefixes, same shape), as the
    module's dtype and device: the probe runs the network with the checkpoint's weights, e.g. a learned input
    normalisation, while the module itself keeps its own."""
    from firstlayer.checkpoints import strip_wrappers

    if state is None:
        return {}
    plain = strip_wrappers(state)
    own = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    return {
        key: plain[key].to(device=value.device, dtype=value.dtype)
        for key, value in own.items()
        if key in plain and plain[key].shape == value.shape
    }


def input_transform(
    module: nn.Module,
    layer: str,
    mean: Any,
    std: Any,
    *,
    sides: tuple[int, ...] = (32,),
    state: Mapping[str, torch.Tensor] | None = None,
) -> InputTransform | None:
    """How `module` transforms its input before its first layer `layer`, found by running it (eval mode) on a few
    random images normalised by `mean` and `std` up to that layer: None when the layer sees the input itself, else
    the per-channel affine map fitted by least squares. InputTransformError when the layer's input is not such a
    map of the model's input (channels mixed, resized, clipped). `sides` are tried first, then the side the network
    declares and 224; `state` (a checkpoint) lends the network its tensors for the probe."""
    import torch

    param = next(module.parameters(), None)
    device = param.device if param is not None and param.device.type != "meta" else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    mean64, std64 = (torch.as_tensor(np.asarray(v, dtype=np.float64)).view(1, 3, 1, 1) for v in (mean, std))
    tensors, errors = _overlay(module, state), []
    declared = getattr(module, "image_size", None)
    for side in dict.fromkeys([*sides, *([declared] if isinstance(declared, int) else []), 224]):
        pixels = torch.rand(
            PROBE_IMAGES, 3, side, side, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
        x = ((pixels - mean64) / std64).to(device=device, dtype=dtype)
        try:
            seen = _input_of_layer(module, layer, x, tensors)
        except InputTransformError:
            raise
        except Exception as error:  # a network may refuse a size before its first layer (a ViT's fixed side)
            errors.append(f"{side}x{side}: {type(error).__name__}: {str(error).strip().splitlines()[0][:200]}")
            continue
        return _fitted_transform(x, seen, layer, dtype)
    raise InputTransformError(
        f"{type(module).__name__} did not run up to {layer} on random images ({'; '.join(errors)})"
    )


def _fitted_transform(x: torch.Tensor, seen: Any, layer: str, dtype: torch.dtype) -> InputTransform | None:
    """The per-channel affine map from the model's input `x` to what `layer` sees (None: the identity)."""
    import torch

    not_affine = f"the network transforms its input before its first layer {layer} in a way that is not a " \
        "per-channel affine map (x -> a x + b, channel by channel)"  # fmt: skip
    if not isinstance(seen, torch.Tensor) or seen.shape != x.shape:
        shape = tuple(seen.shape) if isinstance(seen, torch.Tensor) else type(seen).__name__
        raise InputTransformError(f"{not_affine}: it sees {shape} from input {tuple(x.shape)}; no mean and std "
                                  "describe its input, so its profile cannot be computed from the patches")  # fmt: skip
    if seen.device.type == "meta":
        raise InputTransformError(f"the network computes its input to {layer} on the meta device: load its weights")
    if seen is x or (seen.data_ptr() == x.data_ptr() and seen.stride() == x.stride()):
        return None
    tolerance = max(AFFINE_TOLERANCE, 100 * torch.finfo(dtype).eps)
    scale, offset = np.empty(3), np.empty(3)
    for c in range(3):
        xc = x[:, c].reshape(-1).to("cpu", torch.float64).numpy()
        yc = seen[:, c].reshape(-1).to("cpu", torch.float64).numpy()
        (scale[c], offset[c]), *_ = np.linalg.lstsq(np.stack([xc, np.ones_like(xc)], 1), yc, rcond=None)
        spread = np.linalg.norm(yc - yc.mean())
        residual = np.linalg.norm(yc - scale[c] * xc - offset[c]) / max(spread, 1e-300)
        if not np.isfinite(residual) or residual > tolerance or scale[c] <= 0:
            why = "a sign flip" if scale[c] <= 0 and residual <= tolerance else f"relative residual {residual:.2g}"
            raise InputTransformError(f"{not_affine}: channel {c} ({why} of the least-squares fit)")
    if np.allclose(scale, 1, rtol=0, atol=tolerance) and np.allclose(offset, 0, rtol=0, atol=tolerance):
        return None
    return InputTransform(scale, offset)


def _timm_library(name: str) -> tuple[dict, str, Path, np.ndarray, np.ndarray]:
    """(state_dict from the Hugging Face or torch.hub cache, their name, the file, mean, std) of timm's pretrained
    weights for model `name` (a tag such as resnet18.a1_in1k picks them); never downloads."""
    import torch

    from firstlayer.checkpoints import read_checkpoint

    cfg = _timm().models.get_pretrained_cfg(name)
    if cfg is None:
        raise ModelSpecError(f"timm has no pretrained weights for {name}")
    looked = []
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.constants import HF_HUB_CACHE

        repo, _, revision = cfg.hf_hub_id.partition("@")
        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(found, str):
                return read_checkpoint(found), f"timm {name}", Path(found), np.asarray(cfg.mean), np.asarray(cfg.std)
            looked.append(f"{HF_HUB_CACHE} ({repo}/{filename})")
    if cfg.url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if path.is_file():
            return read_checkpoint(path), f"timm {name}", path, np.asarray(cfg.mean), np.asarray(cfg.std)
        looked.append(str(path))
    raise ModelSpecError(
        f"timm's weights for {name} are not in the local caches: looked in {'; '.join(looked) or 'none'}. "
        "Nothing is downloaded: create the model once with pretrained=True where there is a network and copy the "
        "cache, or pass a checkpoint file with --weights FILE"
    )


def load_model(
    spec: str, *, weights: str | Path | None = None, num_classes: int = 10, image_size: int = 32, seed: int = 0
) -> LoadedModel:
    """The network of `spec` (its init drawn with `seed`), with `weights`: None (that random init), a checkpoint
    file (any layout of ``firstlayer.checkpoints``; only its first layer is read), or 'DEFAULT' / a torchvision
    weights name (torchvision:, timm: specs) from the library's local cache, with the input normalisation those
    weights were trained with (torchvision's: the network built as those weights configure it, e.g. GoogLeNet's
    transform_input, with num_classes theirs)."""
    import torch

    from firstlayer.checkpoints import read_checkpoint

    source = parse_model_spec(spec)
    text, path = str(weights), Path(str(weights)).expanduser()
    by_name = weights is not None and not path.is_file() and _names_library_weights(text)
    if by_name and source.kind == "torchvision":  # the network as its weights configure it (their input transform)
        load_builder(source)  # a name torchvision has no classifier for: ModelSpecError, as for a build
        module, state, label, path, mean, std = _torchvision_library(source.name, text)
        return LoadedModel(str(source), module, state, f"{label} ({path})", mean, std, f"the weights' own ({label})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_model(str(source), num_classes=num_classes, image_size=image_size)
    if weights is None:
        return LoadedModel(str(source), module, weights=f"at random init (seed {seed})")
    if not by_name:
        return LoadedModel(str(source), module, read_checkpoint(path), f"from checkpoint {path}")
    if source.kind == "timm" and text == LIBRARY_WEIGHTS:
        state, label, path, mean, std = _timm_library(source.name)
    else:
        raise ModelSpecError(
            f"no checkpoint file {path.resolve()}; library weights by name ({LIBRARY_WEIGHTS}) exist only for "
            "torchvision: and timm: models"
        )
    return LoadedModel(str(source), module, state, f"{label} ({path})", mean, std, f"the weights' own ({label})")
