"""Build the teaching notebooks: each ``NN_slug.py`` (jupytext py:percent) -> an executed ``NN_slug.ipynb``.

    python notebooks/build.py            # every notebook
    python notebooks/build.py 01 03      # the ones whose names start with these prefixes

Each notebook is converted with jupytext, executed top to bottom in a fresh kernel (nbclient, cwd =
notebooks/) and written whole or not at all (a temporary file, then ``os.replace``). Learners never need
this script; maintainers run it after editing a ``.py``. ``tests/notebooks/test_notebooks.py`` uses the
same functions to re-execute every notebook and compare its RESULTS with the committed outputs.

The kernel is this interpreter (``sys.executable``) with this checkout's ``src/`` first on PYTHONPATH, so
a notebook always runs the code beside it, and with one CPU thread (``OMP_NUM_THREADS=1``): the tiny models
gain nothing from a second thread, a loaded machine makes contended threads many times slower, and a fixed
thread count keeps float reductions, hence RESULTS, the same from run to run.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent
ROOT = NOTEBOOKS.parent
KERNEL_NAME = "archzoo-notebooks"
CELL_TIMEOUT_S = 300  # one cell; a notebook is meant to take <= ~40 s in all


def sources() -> list[Path]:
    """Every notebook source, in learning-path order (the NN_ prefix)."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def from_source(py: Path) -> nbformat.NotebookNode:
    """The unexecuted notebook of a py:percent source."""
    return jupytext.reads(py.read_text(encoding="utf-8"), fmt="py:percent")


def _kernel_spec(folder: Path) -> None:
    """Write a kernelspec into ``folder`` naming this interpreter, this checkout's src/ and one thread."""
    folder.mkdir(parents=True)
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "archzoo notebooks",
        "language": "python",
        "env": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    }
    (folder / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")


def execute(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel (cwd = notebooks/); raises nbclient's CellExecutionError on any error."""
    with tempfile.TemporaryDirectory(prefix="archzoo-kernel-") as kernels:
        _kernel_spec(Path(kernels) / KERNEL_NAME)
        specs = KernelSpecManager(kernel_dirs=[kernels], ensure_native_kernel=False)
        client = NotebookClient(
            nb,
            km=KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs),
            timeout=CELL_TIMEOUT_S,
            resources={"metadata": {"path": str(NOTEBOOKS)}},
            record_timing=False,
        )
        client.execute()
    # readers' Jupyter and GitHub know the standard kernel, not the throw-away one
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.pop("jupytext", None)
    return nb


def results(nb: nbformat.NotebookNode) -> tuple[dict, dict]:
    """The notebook's taught numbers and their tolerances: the ``RESULTS {json}`` line its last code cell
    prints, and the ``results_rtol = {...}`` literal in that cell's source ({} when absent)."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code:
        raise ValueError("the notebook has no code cell")
    last = code[-1]
    found = None
    for out in last.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stdout":
            for line in out["text"].splitlines():
                if line.startswith("RESULTS "):
                    found = json.loads(line[len("RESULTS ") :])
    if found is None:
        raise ValueError("the last code cell printed no 'RESULTS {json}' line")
    rtol: dict = {}
    for node in ast.walk(ast.parse(last.source)):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "results_rtol" for t in node.targets):
            rtol = ast.literal_eval(node.value)
    return found, rtol


def build(py: Path) -> float:
    """Convert, execute and atomically write ``py``'s .ipynb; returns the seconds it took."""
    start = time.perf_counter()
    nb = execute(from_source(py))
    results(nb)  # a notebook without its RESULTS line is not built
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index:02d}"  # jupytext draws random ids; stable ones keep rebuilds' diffs to real changes
    target = py.with_suffix(".ipynb")
    fd, tmp = tempfile.mkstemp(dir=NOTEBOOKS, prefix=f".{py.stem}.", suffix=".ipynb")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a notebook is for everyone
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    chosen = [p for p in sources() if not argv or any(p.name.startswith(a) for a in argv)]
    if not chosen:
        print(f"no notebook matches {' '.join(argv)}", file=sys.stderr)
        return 2
    for py in chosen:
        seconds = build(py)
        print(f"{py.with_suffix('.ipynb').name}: executed in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
