"""The ``firstlayer`` command line: the README's commands work as written, ``profile`` writes its tables, figure
and summary, and a user's mistake is one line and exit status 2."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from firstlayer.cli import OUTPUTS, main
from firstlayer.datasets import make_embedded_dataset
from firstlayer.io import save_dataset

REPO = Path(__file__).resolve().parents[1]

USER_FILE = """
from torch import nn

def build(num_classes=10):
    return nn.Sequential(nn.Conv2d(3, 6, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, num_classes))
"""


def readme_commands() -> list[str]:
    """The indented command lines of the README's section "Analyse your own model" (continuations joined)."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Analyse your own model", 1)[1].split("\n## ", 1)[0]
    lines = re.findall(r"^    (firstlayer profile .*|python docs/examples/.*)$", section.replace("\\\n    ", ""), re.M)
    return lines


def test_the_console_script_is_declared() -> None:
    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
    assert scripts.get("firstlayer") == "firstlayer.cli:main"


def test_the_readme_commands_work_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Run from a copy of the files they name; `firstlayer` in-process (the same as the console script), `python`
    as a subprocess."""
    commands = readme_commands()
    assert len(commands) == 3, commands
    (tmp_path / "docs").mkdir()
    shutil.copytree(REPO / "docs" / "examples", tmp_path / "docs" / "examples")
    monkeypatch.chdir(tmp_path)
    for command in commands:
        words = shlex.split(command)
        if words[0] == "python":
            subprocess.run([sys.executable, *words[1:]], check=True, capture_output=True, timeout=600)
        else:
            assert main(words[1:]) == 0, command
            out = capsys.readouterr().out
            assert "first layer" in out and "flatness" in out
            folder = tmp_path / (words[words.index("--out") + 1] if "--out" in words else "firstlayer_profile")
            assert all((folder / name).is_file() for name in OUTPUTS), command
    fits = pd.read_parquet(tmp_path / "results" / "my_net" / "fits.parquet")
    assert set(fits.kind) == {"W", "W-W0"} and set(fits.formula) == {"one_parameter", "init_aware"}
    assert (fits.first_layer == "stem").all()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small prepared dataset on disk, as the workflow writes one."""
    folder = tmp_path_factory.mktemp("data") / "tiny"
    dataset = make_embedded_dataset(labels="rotation", train_per_class=8, test_per_class=2, seed=0)
    save_dataset(dataset, folder / "images.npy", folder / "manifest.parquet")
    return folder


def test_profile_of_a_user_file_with_checkpoints(tmp_path: Path, data_dir: Path, capsys) -> None:
    (tmp_path / "net.py").write_text(USER_FILE)
    torch.manual_seed(0)
    w0 = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2))
    w = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2))
    torch.save({"model": w0.state_dict()}, tmp_path / "init.pt")
    torch.save({f"module.{k}": v for k, v in w.state_dict().items()}, tmp_path / "trained.pt")
    out = tmp_path / "out"
    argv = ["profile", f"{tmp_path}/net.py:build", "--data", str(data_dir), "--weights", str(tmp_path / "trained.pt"),
            "--init", str(tmp_path / "init.pt"), "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "first layer    0: 6 filters 3x3, stride 2, padding 0 (found by forward hooks" in printed.out
    assert "normalisation  mean [0.5, 0.5, 0.5], std [0.25, 0.25, 0.25]: given" in printed.out
    assert "exact moments of the 3x3 patches of 32 images" in printed.err  # progress goes to stderr
    assert (out / "summary.txt").read_text() in printed.out
    energy = pd.read_parquet(out / "energy.parquet")
    assert len(energy) == 2 * 27 and {"config_hash", "firstlayer_version", "torch_version"} <= set(energy.columns)
    assert (pd.read_parquet(out / "whitening.parquet").stage.tolist()) == ["data", "init", "trained"]
    assert (out / "profile.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "resnet2O", "--data", "embedded:photos"], "unknown model 'resnet2O' (did you mean resnet20?)"),
        (["profile", "small_cnn", "--data", "embedded:photos", "--weights", "gone.pt"], "checkpoint gone.pt does not"),
        (["profile", "small_cnn", "--data", "embedded:cifar"], "unknown embedded dataset 'cifar'"),
        (["profile", "small_cnn", "--data", "DATA", "--first-layer", "trunk"], "has no module 'trunk'"),
    ],
)
def test_user_errors_are_one_line_and_status_2(argv, message, data_dir: Path, capsys) -> None:
    argv = [str(data_dir) if a == "DATA" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("firstlayer profile: error: ") and message in err


def test_mean_without_std_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", "small_cnn", "--data", "embedded:photos", "--mean", "0.5", "0.5", "0.5"])
    assert exit_info.value.code == 2 and "give --mean and --std together" in capsys.readouterr().err
