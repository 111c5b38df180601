"""Execute every notebook in notebooks/ and fail on any cell error.

The kernel is the interpreter running pytest (``sys.executable``), not
whatever ``python3`` kernel spec happens to be installed for the user: the
test writes a private kernel spec pointing at ``sys.executable`` into a
temporary directory and starts the kernel from it. Notebooks run with their
working directory set to a temporary directory, so files they write land
there.

Notebooks are committed without outputs; a second test checks that.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

#: Per-cell timeout (s) for notebook execution.
CELL_TIMEOUT = 300


def _kernel_manager(spec_root: Path):
    """A KernelManager whose ``python3`` kernel runs ``sys.executable``."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = spec_root / "kernels"
    kernels.mkdir(parents=True, exist_ok=True)
    spec_dir = write_kernel_spec(path=str(kernels / "python3"))
    with open(os.path.join(spec_dir, "kernel.json")) as fh:
        spec = json.load(fh)
    assert spec["argv"][0] == sys.executable, spec["argv"]
    ksm = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=ksm)


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks in notebooks/")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    # the notebooks use pydicom-data's files; without it pydicom would try to download them
    pytest.importorskip("data_store", reason="pydicom-data is not installed")

    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    nb = nbformat.read(path, as_version=4)
    workdir = tmp_path / "run"
    workdir.mkdir()
    client = nbclient.NotebookClient(
        nb,
        km=_kernel_manager(tmp_path / "jupyter"),
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    t0 = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        # keep the executed notebook for inspection, then fail with the cell's traceback
        out = tmp_path / f"executed-{path.name}"
        nbformat.write(nb, out)
        pytest.fail(f"{path.name}: a cell raised (executed copy: {out})\n{exc}", pytrace=False)
    elapsed = time.perf_counter() - t0
    print(f"{path.name}: executed in {elapsed:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks in notebooks/")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_committed_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"]) if c.get("cell_type") == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: clear the outputs of code cells {dirty} before committing"
