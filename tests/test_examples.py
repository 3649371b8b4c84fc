"""docs/examples/: the notebook runs top to bottom in a fresh kernel and shows its figure; the example network file
is what the README's commands profile."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "docs" / "examples" / "analyse_your_model.ipynb"


def test_the_notebook_runs_and_shows_the_profile(tmp_path: Path) -> None:
    """Executed with nbclient in a temporary working folder (the checkpoints it writes land there); skips only when
    no Jupyter kernel can start on this machine."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import NoSuchKernel

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    try:  # a missing kernelspec or a kernel that does not start: skip; execute() then reuses the kernel
        client.km = client.create_kernel_manager()
        client.start_new_kernel()
        client.start_new_kernel_client()
    except (NoSuchKernel, RuntimeError, TimeoutError) as error:
        pytest.skip(f"no Jupyter kernel starts here: {error}")
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the profile figure is shown"
    text = "".join(o.get("text", "") for o in outputs)
    assert "first layer    conv1: 64 filters 7x7, stride 2, padding 3" in text
    assert "fit of W-W0" in text
    assert (tmp_path / "resnet18.ckpt").is_file() and (tmp_path / "resnet18_init.pt").is_file()
