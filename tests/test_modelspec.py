"""Unit tests for firstlayer.modelspec: parsing model specs, building networks from them, library weights from the
local caches only (nothing is downloaded), with their input normalisation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from firstlayer.checkpoints import CheckpointError
from firstlayer.modelspec import (
    ModelSource,
    ModelSpecError,
    build_model,
    builder_arguments,
    load_builder,
    load_model,
    parse_model_spec,
)

REPO = Path(__file__).resolve().parents[1]

USER_FILE = """
from torch import nn

def build(num_classes=10, image_size=32):
    return nn.Sequential(nn.Conv2d(3, 8, 5), nn.Flatten(), nn.LazyLinear(num_classes))

def needs_depth(depth):
    return nn.Conv2d(3, 8, 3)

def not_a_module():
    return "a string"

LIMIT = 3
"""


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "nets" / "my_net.py"
    path.parent.mkdir()
    path.write_text(USER_FILE)
    return path


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("resnet20", ModelSource("builtin", "resnet20")),
        ("torchvision:resnet18", ModelSource("torchvision", "resnet18")),
        ("timm:vit_tiny_patch16_224.augreg_in21k", ModelSource("timm", "vit_tiny_patch16_224.augreg_in21k")),
        ("nets/my_net.py:build", ModelSource("file", "nets/my_net.py", "build")),
        ("C:/nets/my_net.py:build", ModelSource("file", "C:/nets/my_net.py", "build")),
        ("my_pkg.nets:build_v2", ModelSource("module", "my_pkg.nets", "build_v2")),
    ],
)
def test_parse_every_form(spec: str, expected: ModelSource) -> None:
    assert parse_model_spec(spec) == expected
    assert str(expected) == spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("resnet2O", r"unknown model 'resnet2O' \(did you mean resnet20\?\); a model spec is a built-in name"),
        ("torchvision:", "write torchvision:NAME"),
        ("nets/my_net.py:", "the builder after the last ':' must be a Python name"),
        ("nets/my net:build", "before ':' write a .py file or a dotted module name"),
        ("", "a model spec must be"),
    ],
)
def test_parse_errors_say_what_to_write(spec: str, message: str) -> None:
    with pytest.raises(ModelSpecError, match=message):
        parse_model_spec(spec)


def test_parsing_imports_no_torch() -> None:
    """Nor does `import firstlayer`: analyze and load_model are imported on first use."""
    code = (
        "import sys, firstlayer, firstlayer.modelspec as m; m.parse_model_spec('timm:x'); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_user_file_builder_gets_the_arguments_it_names(user_file: Path) -> None:
    net = build_model(f"{user_file}:build", num_classes=7, image_size=16)
    assert isinstance(net[0], nn.Conv2d)
    assert net(torch.zeros(1, 3, 16, 16)).shape == (1, 7)


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        ("needs_depth", "needs depth, which the workflow cannot give: it passes only num_classes, kernel_size, width"),
        ("not_a_module", "returned a str, not a torch.nn.Module"),
        ("LIMIT", r"LIMIT is not callable in .*my_net\.py; its functions: build, needs_depth, not_a_module"),
        ("missing", "missing does not exist in"),
    ],
)
def test_user_builder_errors(user_file: Path, builder: str, message: str) -> None:
    with pytest.raises(ModelSpecError, match=message):
        build_model(f"{user_file}:{builder}", num_classes=10)


def test_a_missing_file_and_a_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError, match=r"model file .*nope\.py does not exist \(looked at /"):
        load_builder(f"{tmp_path}/nope.py:build")
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_package_anywhere\n")
    with pytest.raises(ModelSpecError, match=r"importing .*broken\.py failed: ModuleNotFoundError"):
        load_builder(f"{broken}:build")


def test_a_module_builder_and_a_missing_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "user_pkg_for_firstlayer"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(USER_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(build_model("user_pkg_for_firstlayer.nets:build", num_classes=10)[0], nn.Conv2d)
    with pytest.raises(ModelSpecError, match=r"cannot import module 'no_such_pkg_xyz\.nets' \(No module named"):
        load_builder("no_such_pkg_xyz.nets:build")


def test_builtins_and_torchvision_build_at_random_init() -> None:
    assert build_model("vit_tiny", num_classes=4, image_size=32).conv_proj.kernel_size == (4, 4)
    assert build_model("resnet20", num_classes=10).conv1.kernel_size == (3, 3)
    assert isinstance(build_model("torchvision:resnet18", num_classes=10), torchvision.models.ResNet)
    with pytest.raises(ModelSpecError, match=r"torchvision has no classification model 'resnet19'; close: resnet18"):
        load_builder("torchvision:resnet19")
    with pytest.raises(
        ModelSpecError,
        match=r"fcn_resnet50 is not a classification model \(it is one of torchvision.models.segmentation\)",
    ):
        load_builder("torchvision:fcn_resnet50")


def test_the_init_is_seeded() -> None:
    a, b, c = (load_model("small_cnn", seed=s).module.features[0].weight for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_timm_without_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ModelSpecError, match=r"timm:NAME models need timm: pip install 'firstlayer\[timm\]'"):
        load_builder("timm:resnet18")


def test_torchvision_weights_come_from_the_hub_cache_with_their_normalisation(hub_dir: Path) -> None:
    with pytest.raises(ModelSpecError, match=r"ResNet18_Weights\.IMAGENET1K_V1 are not in torch\.hub's cache: "
                       r"looked for .*hub/checkpoints/resnet18-f37072fd\.pth\. Nothing is downloaded"):  # fmt: skip
        load_model("torchvision:resnet18", weights="DEFAULT")
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(state, hub_dir / "checkpoints" / "resnet18-f37072fd.pth")
    for name in ("DEFAULT", "IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1"):
        loaded = load_model("torchvision:resnet18", weights=name)
        assert torch.equal(loaded.state["conv1.weight"], state["conv1.weight"])
        np.testing.assert_allclose(loaded.mean, [0.485, 0.456, 0.406])
        np.testing.assert_allclose(loaded.std, [0.229, 0.224, 0.225])
        assert loaded.normalisation == "the weights' own (torchvision ResNet18_Weights.IMAGENET1K_V1)"
    with pytest.raises(
        ModelSpecError, match=r"resnet18 has no weights .*torchvision.s weights for it: DEFAULT, IMAGENET1K_V1"
    ):
        load_model("torchvision:resnet18", weights="IMAGENET1K_V9")


def test_weights_files_and_names(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint .*missing\.pt does not exist"):
        load_model("small_cnn", weights=tmp_path / "missing.pt")
    with pytest.raises(ModelSpecError, match=r"library weights by name .* exist only for torchvision: and timm:"):
        load_model("small_cnn", weights="DEFAULT")
    path = tmp_path / "DEFAULT"  # a file wins over a weights name
    torch.save(load_model("small_cnn").module.state_dict(), path)
    assert load_model("small_cnn", weights=str(path)).weights == f"from checkpoint {path}"


def test_timm_weights_missing_from_the_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("timm")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        with pytest.raises(ModelSpecError, match=r"timm's weights for resnet18\.a1_in1k are not in the local caches: "
                           r"looked in .*hf .*timm/resnet18\.a1_in1k/model\.safetensors"):  # fmt: skip
            load_model("timm:resnet18.a1_in1k", weights="DEFAULT")
    finally:
        torch.hub.set_dir(previous)


def test_a_builder_gets_only_the_arguments_it_names() -> None:
    """One reading of a builder's signature: a user's builder gets what it names (kernel_size and width when given),
    a library's its own keywords."""

    def build(*, image_size: int, width: int = 4) -> nn.Module:
        return nn.Conv2d(3, width, 3)

    user = ModelSource("module", "nets", "build")
    assert builder_arguments(user, build, num_classes=3, image_size=24) == {"image_size": 24}
    given = builder_arguments(user, build, num_classes=3, image_size=24, kernel_size=5, width=8)
    assert given == {"image_size": 24, "width": 8}
    library = builder_arguments(ModelSource("torchvision", "resnet18"), build, num_classes=3, image_size=24)
    assert library == {"weights": None, "num_classes": 3}


def test_the_example_network_file_is_a_valid_spec() -> None:
    net = build_model(f"{REPO}/docs/examples/my_net.py:build", num_classes=10)
    assert type(net).__name__ == "MyNet"


def test_timm_models_and_their_cached_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """timm:NAME builds at random init; weights=DEFAULT reads the Hugging Face cache's file (here a stand-in that
    ``try_to_load_from_cache`` returns) with the config's mean and std."""
    timm = pytest.importorskip("timm")
    safetensors = pytest.importorskip("safetensors.torch")
    import huggingface_hub

    assert isinstance(load_model("timm:resnet18").module, timm.models.ResNet)
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    safetensors.save_file(state, tmp_path / "model.safetensors")
    seen = []

    def cached(repo_id: str, filename: str, **_) -> str | None:
        seen.append((repo_id, filename))
        return str(tmp_path / filename) if filename == "model.safetensors" else None

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", cached)
    loaded = load_model("timm:resnet18.a1_in1k", weights="DEFAULT")
    assert seen == [("timm/resnet18.a1_in1k", "model.safetensors")]
    assert torch.equal(loaded.state["conv1.weight"], state["conv1.weight"])
    np.testing.assert_allclose(loaded.mean, [0.485, 0.456, 0.406])
    assert loaded.normalisation == "the weights' own (timm resnet18.a1_in1k)"
