"""User architectures in the grid: `model: torchvision:NAME`, `timm:NAME`, `path/file.py:builder` and
`package.module:builder` are validated before any job (each problem one message naming its key), get a registry-like
spec, their first layer and kernel size filled in, and train like the built-ins."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from firstlayer import resources
from firstlayer.config import ConfigError, kernel_sizes, validate_config
from firstlayer.datasets import prepare_dataset
from firstlayer.models import first_layer
from firstlayer.modelspec import build_model, model_spec

REPO = Path(__file__).resolve().parents[1]

NETS = '''
from torch import nn


class Net(nn.Module):
    """The first layer, a 5x5 conv, is defined after the head: only running the network finds it."""

    def __init__(self, num_classes, width):
        super().__init__()
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
        self.stem = nn.Conv2d(3, width, 5, padding=2)

    def forward(self, x):
        return self.head(self.stem(x))


def build(num_classes=10, width=4):
    return Net(num_classes, width)


def with_kernel(num_classes, kernel_size=3):
    return nn.Sequential(nn.Conv2d(3, 4, kernel_size), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


def ignores_kernel(num_classes, kernel_size=3):
    return with_kernel(num_classes)


def needs_kernel(num_classes, kernel_size):
    return with_kernel(num_classes, kernel_size)


def needs_depth(depth, num_classes=10):
    return with_kernel(num_classes)


def not_a_module(num_classes=10):
    return "a string"


def raises(num_classes=10):
    raise ValueError("no such variant")


def only_64(num_classes=10):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 62 * 62, num_classes))


class TwoStems(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 5, padding=2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

    def forward(self, x):
        return self.head(self.a(x) + self.b(x))


def two_stems(num_classes=10):
    return TwoStems(num_classes)


LIMIT = 3
'''


@pytest.fixture
def nets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user file nets/user_nets.py in a fresh working directory; returns its path relative to it."""
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "user_nets.py").write_text(NETS)
    (tmp_path / "broken.py").write_text("import a_module_that_is_not_installed\n")
    monkeypatch.chdir(tmp_path)
    return "nets/user_nets.py"


def config(image_size: int = 32, **arch) -> dict:
    """One embedded dataset 'crops' and one architecture 'net' trained on it."""
    return {
        "datasets": {"crops": {"source": "embedded", "image_size": image_size}},
        "architectures": {"net": {"lr": 0.1, "steps": 10, **arch}},
        "grid": [{"datasets": ["crops"], "architectures": ["net"]}],
    }


def problem(cfg: dict) -> str:
    """The one line of the ConfigError that validating `cfg` raises."""
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    lines = [line.strip() for line in str(err.value).splitlines()[1:]]
    assert len(lines) == 1, lines
    return lines[0]


# ------------------------------------------------------------------------ what validation fills in


def test_a_user_file_gets_its_first_layer_and_kernel_size_from_running_it(nets):
    arch = validate_config(config(model=f"{nets}:build", width=6))["architectures"]["net"]
    assert (arch["first_layer"], arch["kernel_size"]) == ("stem", 5)
    cfg = validate_config(config(model=f"{nets}:build"))
    assert kernel_sizes(cfg, "crops") == [3, 5]  # the theory's 3, the network's 5
    assert validate_config(cfg)["architectures"]["net"] == cfg["architectures"]["net"]  # validating again: the same


def test_torchvision_resnet50_validates_with_its_7x7_stem():
    cfg = validate_config(config(model="torchvision:resnet50"))
    assert (cfg["architectures"]["net"]["first_layer"], cfg["architectures"]["net"]["kernel_size"]) == ("conv1", 7)
    assert 7 in kernel_sizes(cfg, "crops")
    cfg = validate_config(config(model="torchvision:resnet50", kernel_size=7))
    assert cfg["architectures"]["net"]["kernel_size"] == 7


def test_a_given_kernel_size_goes_to_a_builder_that_names_it(nets):
    arch = validate_config(config(model=f"{nets}:with_kernel", kernel_size=9))["architectures"]["net"]
    assert arch["kernel_size"] == 9
    net = build_model(arch["model"], num_classes=3, kernel_size=9, width=None)
    assert first_layer(net, arch["model"], arch["first_layer"]).kernel_size == (9, 9)
    assert validate_config(config(model=f"{nets}:with_kernel"))["architectures"]["net"]["kernel_size"] == 3


def test_first_layer_names_the_layer_when_several_take_the_input(nets):
    arch = validate_config(config(model=f"{nets}:two_stems", first_layer="b"))["architectures"]["net"]
    assert (arch["first_layer"], arch["kernel_size"]) == ("b", 5)


def test_a_package_module_builder(nets, monkeypatch):
    monkeypatch.syspath_prepend(str(Path.cwd() / "nets"))
    arch = validate_config(config(model="user_nets:build"))["architectures"]["net"]
    assert (arch["first_layer"], arch["kernel_size"]) == ("stem", 5)


def test_a_relative_file_is_also_found_from_the_repository_root(tmp_path, monkeypatch):
    """The smoke configuration's tests/configs/user_net.py:build, from a working directory elsewhere (as the
    workflow's jobs run with --directory)."""
    monkeypatch.chdir(tmp_path)
    arch = validate_config(config(model="tests/configs/user_net.py:build"))["architectures"]["net"]
    assert (arch["first_layer"], arch["kernel_size"]) == ("stem", 7)


def test_user_models_get_a_registry_like_spec():
    spec = model_spec("torchvision:resnet18")
    assert not spec.stackable and spec.batch_norm and spec.first_layer is None  # no pin: found by discovery
    net = spec.builder(3, None, None, 32)  # the one builder signature
    assert first_layer(net, "torchvision:resnet18") is net.conv1
    cfg = validate_config(config(model="torchvision:resnet18"))
    cfg["training"]["device"] = "cpu"
    # 10 steps x 64 images at 10 images/s: 64 s x 3 / 60 + 10 minutes
    assert resources.train_runtime(cfg, "crops", "net", "0", "none") == 14
    assert resources.train_mem_mb(cfg, "crops", "net", "0", "none") > 1500 + 16 * 64


# ------------------------------------------------------------------------ one message per problem, naming its key


@pytest.mark.parametrize(
    ("arch", "key", "message"),
    [
        ({"model": "broken.py:build"}, "model", "importing broken.py failed: ModuleNotFoundError"),
        ({"model": "missing.py:build"}, "model", "model file missing.py does not exist (looked at "),
        ({"model": "NETS:nothing"}, "model", "nothing does not exist in nets/user_nets.py; its functions: "),
        ({"model": "NETS:LIMIT"}, "model", "LIMIT is not callable"),
        (
            {"model": "NETS:needs_depth"},
            "model",
            "needs depth, which the workflow cannot give: it passes only num_classes, kernel_size, width, image_size",
        ),
        ({"model": "NETS:not_a_module"}, "model", "returned a str, not a torch.nn.Module"),
        ({"model": "NETS:raises"}, "model", "building NETS:raises failed: ValueError: no such variant"),
        ({"model": "NETS:only_64"}, "model", "does not train on the 32x32 images of dataset 'crops' (grid block 0)"),
        ({"model": "no_such_package.nets:build"}, "model", "cannot import module 'no_such_package.nets'"),
        (
            {"model": "torchvision:fcn_resnet50"},
            "model",
            "fcn_resnet50 is not a classification model (it is one of torchvision.models.segmentation)",
        ),
        ({"model": "torchvision:resnet19"}, "model", "torchvision has no classification model 'resnet19'"),
        ({"model": "resnet21"}, "model", "'resnet21' is not a model; a model is a built-in name (linear, "),
        ({"model": "NETS"}, "model", "is not a model; a model is a built-in name"),
        (
            {"model": "NETS:two_stems"},
            "first_layer",
            "the input tensor enters several Conv2d layers; candidates: a, b; name one with this key",
        ),
        ({"model": "NETS:build", "first_layer": "conv1"}, "first_layer", "Net has no module 'conv1'"),
        ({"model": "NETS:build", "first_layer": "head.3"}, "first_layer", "head.3 is a Linear, not a Conv2d"),
        (
            {"model": "NETS:ignores_kernel", "kernel_size": 5},
            "kernel_size",
            "5, but the first layer of NETS:ignores_kernel is 0: 4 filters 3x3, stride 1, padding 0: its builder "
            "ignored kernel_size",
        ),
        (
            {"model": "torchvision:resnet18", "kernel_size": 3},
            "kernel_size",
            "3, but the first layer of torchvision:resnet18 is conv1: 64 filters 7x7, stride 2, padding 3: its "
            "builder takes no kernel_size; remove "
            "'kernel_size' (it is then read from the network) or set it to 7",
        ),
        ({"model": "NETS:needs_kernel"}, "kernel_size", "requires kernel_size: set it, or give it a default"),
        ({"model": "NETS:with_kernel", "width": 8}, "width", "takes no width; remove 'width'"),
        ({"model": "torchvision:resnet18", "width": 64}, "width", "the builder of torchvision:resnet18 takes no width"),
        ({"model": "resnet20", "first_layer": "conv1"}, "first_layer", "resnet20 is a built-in model"),
        ({"model": "NETS:build", "seeds_per_job": 2}, "seeds_per_job", "trains one seed per job"),
    ],
)
def test_each_problem_is_one_message_naming_its_key(nets, arch, key, message):
    arch = {k: v.replace("NETS", nets) if isinstance(v, str) else v for k, v in arch.items()}
    line = problem(config(**arch))
    assert line.startswith(f"config key 'architectures.net.{key}': "), line
    assert message.replace("NETS", nets) in line, line


def test_timm_not_installed_is_one_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ModuleNotFoundError
    assert problem(config(model="timm:resnet18")) == (
        "config key 'architectures.net.model': timm:NAME models need timm: pip install 'firstlayer[timm]'"
    )


def test_an_architecture_the_grid_does_not_train_is_imported_but_not_built(nets):
    cfg = config(model="linear")
    cfg["architectures"]["spare"] = {"model": f"{nets}:only_64", "lr": 0.1, "steps": 1}
    assert "first_layer" not in validate_config(cfg)["architectures"]["spare"]
    cfg["architectures"]["spare"]["model"] = f"{nets}:needs_depth"
    assert problem(cfg).startswith("config key 'architectures.spare.model': builder ")


def test_timm_models_validate():
    pytest.importorskip("timm")
    arch = validate_config(config(model="timm:resnet18"))["architectures"]["net"]
    assert (arch["first_layer"], arch["kernel_size"]) == ("conv1", 7)
    arch = validate_config(config(model="timm:vit_tiny_patch16_224"))["architectures"]["net"]  # fixed input: 32x32
    assert (arch["first_layer"], arch["kernel_size"]) == ("patch_embed.proj", 16)
    assert "no model 'resnet_19'" in problem(config(model="timm:resnet_19"))


def test_validation_imports_torch_only_for_a_user_model():
    code = (
        "import sys, yaml; from firstlayer.config import validate_config; "
        "c = yaml.safe_load(open('config.yaml')); validate_config(c); a = 'torch' in sys.modules; "
        "c['architectures']['linear']['model'] = 'torchvision:resnet18'; c['architectures']['linear'].pop('width'); "
        "c['architectures']['linear'].pop('kernel_size'); c['architectures']['linear']['seeds_per_job'] = 1; "
        "validate_config(c); print(a, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]


# ------------------------------------------------------------------------ checks cached across parses


def test_a_cache_hit_does_not_build_the_network(nets, tmp_path, monkeypatch):
    """The workflow parses the Snakefile again in every job: a check that passed is read back, without building the
    network or importing torch, with what validation fills in."""
    from firstlayer import modelspec

    cache = tmp_path / "checks"
    first = validate_config(config(model=f"{nets}:build"), model_checks=cache)
    assert len(list(cache.glob("*.json"))) == 1
    code = (
        "import sys; from firstlayer.config import validate_config; "
        f"c = validate_config({config(model=f'{nets}:build')!r}, model_checks={str(cache)!r}); "
        "print(c['architectures']['net']['first_layer'], 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["stem", "False"], out.stderr[-2000:]

    def no_build(*args, **kwargs):
        raise AssertionError("a cache hit built the network")

    monkeypatch.setattr(modelspec, "_check_grid_model", no_build)
    assert validate_config(config(model=f"{nets}:build"), model_checks=cache) == first
    with pytest.raises(AssertionError, match="built the network"):  # another setting: another key, checked
        validate_config(config(model=f"{nets}:build", width=6), model_checks=cache)


def test_an_edited_file_is_checked_again_with_the_same_message(nets, tmp_path):
    cache = tmp_path / "checks"
    assert (
        validate_config(config(model=f"{nets}:build"), model_checks=cache)["architectures"]["net"]["kernel_size"] == 5
    )
    path = Path(nets)
    path.write_text(
        path.read_text().replace(
            "def build(num_classes=10, width=4):",
            "def build(num_classes=10, width=4):\n    raise ValueError('no such variant')",
        )
    )
    with pytest.raises(ConfigError) as cached:
        validate_config(config(model=f"{nets}:build"), model_checks=cache)
    assert str(cached.value) == (
        "invalid configuration:\n  config key 'architectures.net.model': building nets/user_nets.py:build failed: "
        "ValueError: no such variant"
    )
    with pytest.raises(ConfigError) as uncached:
        validate_config(config(model=f"{nets}:build"))
    assert str(uncached.value) == str(cached.value)
    assert len(list(cache.glob("*.json"))) == 1  # only checks that pass are kept


# ------------------------------------------------------------------------ training


def job(cfg: dict, **run) -> dict:
    """A training job's settings as the workflow's train rule gives them (workflow/rules/common.smk)."""
    keys = {"dataset": "crops", "arch": "net", "labels": "true", "seeds": [0]}
    return {**keys, "architecture": cfg["architectures"]["net"], "snapshots": cfg["snapshots"],
            "training": cfg["training"], "data": cfg["datasets"]["crops"], **run}  # fmt: skip


@pytest.mark.parametrize(("model", "shape"), [("torchvision:resnet18", (64, 3, 7, 7)),
                                              ("tests/configs/user_net.py:build", (6, 3, 7, 7))])  # fmt: skip
def test_user_models_train_on_32x32_images(model, shape, monkeypatch):
    """torchvision's ResNet-18 (7x7 stride-2 stem, max-pool: 1x1 maps after layer4) and the smoke config's own
    network train on 32x32 crops; the first layer they snapshot is the validated one."""
    from firstlayer.datasets import channel_stats
    from firstlayer.runs import run_job

    monkeypatch.chdir(REPO)
    width = {"width": 6} if model.startswith("tests/") else {}
    raw = config(model=model, batch_size=8, steps=2, eval_points=0, **width)
    raw["datasets"]["crops"].update(photos=["astronaut", "coffee"], train_per_class=8, test_per_class=4)
    raw["training"] = {"device": "cpu", "train_eval_size": 8, "precision": "float32"}
    cfg = validate_config(raw)
    data = prepare_dataset(cfg["datasets"]["crops"])
    [result] = run_job(job(cfg), data, channel_stats(data.split("train")[0]), log=lambda _: None)
    w0, w = result.snapshots[0], result.snapshots[2]
    assert w0.shape == w.shape == shape and not torch.equal(w0, w)
    arch = cfg["architectures"]["net"]
    fresh = build_model(model, num_classes=2, kernel_size=arch["kernel_size"], width=arch.get("width"))
    assert first_layer(fresh, model, arch["first_layer"]).weight.shape == shape
    assert set(result.metrics["metric"]) >= {"loss", "train_accuracy", "test_accuracy"}


def test_a_torchvision_architecture_dry_runs(tmp_path):
    """torchvision:resnet50 in a grid: validated, and the plan trains it and computes the 7x7 patch PCA it needs."""
    cfg = yaml.safe_load((REPO / "tests" / "configs" / "smoke.yaml").read_text())
    cfg["architectures"] = {"r50": {"model": "torchvision:resnet50", "lr": 0.01, "batch_size": 8, "steps": 2}}
    cfg["grid"] = [{"datasets": ["rotations"], "architectures": ["r50"], "labels": ["true"], "seeds": [0]}]
    path = tmp_path / "r50.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(path), "--cores", "1", "--dry-run"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "results/train/rotations/r50/true/seed0/snapshots.parquet" in proc.stdout
    assert "results/patches/rotations/k7/pca.parquet" in proc.stdout
