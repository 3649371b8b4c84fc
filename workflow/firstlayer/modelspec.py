"""Networks named by a spec: a built-in name (``firstlayer.models``), ``torchvision:NAME``, ``timm:NAME``,
``path/to/file.py:builder`` or ``package.module:builder``. Parsing imports no torch (configs are parsed with it);
building and loading weights do. Nothing is downloaded: library weights come from their local caches."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from firstlayer.models import MODELS, build_model, kernel_problem

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
    """The callable that builds the network of a spec: ``build_model`` for a built-in, torchvision's or timm's
    builder, or the user's function (its file or module imported)."""
    source = parse_model_spec(source) if isinstance(source, str) else source
    if source.kind == "builtin":
        return lambda **kwargs: build_model(source.name, **kwargs)
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


def call_builder(builder: Callable[..., nn.Module], available: Mapping[str, Any], what: str) -> nn.Module:
    """Call a user's builder with those of the `available` keyword arguments its signature names; a required
    parameter not among them is a ModelSpecError. The result must be an nn.Module."""
    from torch import nn

    params = inspect.signature(builder).parameters
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    missing = [n for n, p in params.items() if p.default is p.empty and p.kind in named and n not in available]
    if missing:
        raise ModelSpecError(
            f"{what} needs {', '.join(missing)}, which firstlayer cannot give: it passes only "
            f"{', '.join(available)} (by name); give the others defaults"
        )
    kwargs = {k: v for k, v in available.items() if k in params}
    model = builder(**kwargs)
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"{what} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _builtin_kernel(name: str, image_size: int) -> int:
    """A kernel size the built-in can take at this image size (3, else a patch size 4 or 8 that divides it, else
    any); only the module path matters when a checkpoint then supplies the first layer."""
    for k in (3, 4, 8, *range(2, image_size + 1)):
        if kernel_problem(name, k, image_size) is None:
            return k
    raise ModelSpecError(f"{name} cannot take {image_size}x{image_size} images")


def build_network(source: ModelSource | str, *, num_classes: int = 10, image_size: int = 32) -> nn.Module:
    """A freshly initialised network of a spec: built-ins at kernel size 3 (4 for vit_tiny at 32x32), torchvision
    models with ``weights=None``, timm models with ``pretrained=False``, a user's builder with the keywords it
    names among num_classes and image_size."""
    source = parse_model_spec(source) if isinstance(source, str) else source
    builder = load_builder(source)
    if source.kind == "builtin":
        kernel = _builtin_kernel(source.name, image_size)
        try:
            return builder(num_classes=num_classes, kernel_size=kernel, image_size=image_size)
        except ValueError as error:  # e.g. images smaller than the network takes
            raise ModelSpecError(str(error)) from None
    if source.kind == "torchvision":
        return builder(weights=None)
    if source.kind == "timm":
        return builder(pretrained=False)
    return call_builder(builder, {"num_classes": num_classes, "image_size": image_size}, f"builder {source}")


# ------------------------------------------------------------------------ user models in the workflow's grid

#: What the workflow passes a user's builder, by name and only where its signature names them: the data's number of
#: classes and image side, and the architecture's kernel_size and width when the config gives them.
GRID_ARGUMENTS = ("num_classes", "kernel_size", "width", "image_size")
#: The number of classes of the network built to validate an architecture (its head does not touch the first layer).
CHECK_CLASSES = 10


class GridModelError(ModelSpecError):
    """A user model that cannot train in the grid; `key` is the architecture's key to fix: model, first_layer,
    kernel_size or width."""

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


def _named(builder: Callable[..., Any]) -> dict[str, bool]:
    """The parameters a builder takes by name, each with whether it is required (no default); none when Python
    cannot read its signature (building it then says what is wrong)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    try:
        params = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default is p.empty for p in params if p.kind in kinds}


def build_grid_network(
    spec: str, *, num_classes: int, image_size: int, kernel_size: int | None = None, width: int | None = None
) -> nn.Module:
    """A freshly initialised user model for the grid (init from torch's global RNG: seed it around this call):
    torchvision's and timm's with their own first layer (``_library_kwargs``), a user's builder called with those of
    ``GRID_ARGUMENTS`` it names (kernel_size and width only when given)."""
    source = parse_model_spec(spec)
    if source.kind == "builtin":
        raise ValueError(f"{spec} is a built-in model: firstlayer.models.build_model builds it")
    builder = load_builder(source)
    if source.kind in ("torchvision", "timm"):
        return builder(**_library_kwargs(source, num_classes, image_size))
    given = {"num_classes": num_classes, "image_size": image_size, "kernel_size": kernel_size, "width": width}
    return call_builder(builder, {k: v for k, v in given.items() if v is not None}, f"builder {source}")


def _check_arguments(
    source: ModelSource, builder: Callable[..., Any], kernel_size: int | None, width: int | None
) -> None:
    """A builder whose required parameters the workflow cannot give, or a config key it does not take."""
    named = {} if source.kind in ("torchvision", "timm") else _named(builder)
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


def check_grid_model(
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
    _check_arguments(source, builder, kernel_size, width)
    if image_size is None:
        return None
    kwargs = {"num_classes": CHECK_CLASSES, "image_size": image_size, "kernel_size": kernel_size, "width": width}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two tiny images: more threads only wait on each other (100x slower on a busy CPU)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            network = build_grid_network(spec, **kwargs)
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
        named = source.kind in ("file", "module") and "kernel_size" in _named(builder)
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


def _torchvision_library(name: str, weights: str) -> tuple[dict, str, Path, np.ndarray, np.ndarray]:
    """(state_dict from torch.hub's cache, their name, the file, mean, std) of torchvision weights; never downloads."""

    from firstlayer.checkpoints import read_checkpoint

    entry = torchvision_weights(name, weights)
    path = hub_checkpoint(entry)
    if not path.is_file():
        raise ModelSpecError(
            f"torchvision weights {entry} are not in torch.hub's cache: looked for {path}. Nothing is downloaded: "
            f'copy the file there (on a machine with a network: python -c "import torchvision; '
            f"torchvision.models.get_model('{name}', weights='{entry.name}')\"), or pass it with --weights FILE"
        )
    return read_checkpoint(path), f"torchvision {entry}", path, *weights_normalisation(entry)


def hub_checkpoint(entry: Any) -> Path:
    """Where torchvision keeps the checkpoint of weights `entry` once downloaded (nothing is downloaded here)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name


def weights_normalisation(entry: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (in [0, 1] pixel units) of torchvision weights' own preprocessing."""
    preprocess = entry.transforms()
    return np.asarray(preprocess.mean, dtype=np.float64), np.asarray(preprocess.std, dtype=np.float64)


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
    weights were trained with."""
    import torch

    from firstlayer.checkpoints import read_checkpoint

    source = parse_model_spec(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_network(source, num_classes=num_classes, image_size=image_size)
    if weights is None:
        return LoadedModel(str(source), module, weights=f"at random init (seed {seed})")
    text = str(weights)
    path = Path(text).expanduser()
    if path.is_file() or not _names_library_weights(text):
        return LoadedModel(str(source), module, read_checkpoint(path), f"from checkpoint {path}")
    if source.kind == "torchvision":
        state, label, path, mean, std = _torchvision_library(source.name, text)
    elif source.kind == "timm" and text == LIBRARY_WEIGHTS:
        state, label, path, mean, std = _timm_library(source.name)
    else:
        raise ModelSpecError(
            f"no checkpoint file {path.resolve()}; library weights by name ({LIBRARY_WEIGHTS}) exist only for "
            "torchvision: and timm: models"
        )
    return LoadedModel(str(source), module, state, f"{label} ({path})", mean, std, f"the weights' own ({label})")
