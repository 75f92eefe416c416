"""The teaching notebooks (notebooks/*.py, executed into *.ipynb by notebooks/build.py).

For each notebook: the committed .ipynb belongs to the current source (same cells), it shows at least one
figure and no error; executed fresh in a clean kernel it raises nothing (its asserts hold) and prints the
same RESULTS as the committed outputs; the src/ files it tells the reader to read exist; it uses no
private name of archzoo.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("archzoo_notebooks_build", ROOT / "notebooks" / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

SOURCES = build.sources()
DEFAULT_RTOL = 1e-6  # NOTEBOOKS_SPEC: floats not declared in results_rtol must agree to float32-print precision


def _stored(py: Path) -> nbformat.NotebookNode:
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} is missing: run python notebooks/build.py {py.name[:2]}"
    return nbformat.read(ipynb, as_version=4)


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def _outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_the_learning_path_is_numbered_in_order():
    numbers = [int(p.name[:2]) for p in SOURCES]
    assert numbers[:1] == [1] and numbers == sorted(set(numbers)), [p.name for p in SOURCES]
    readme = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    unlisted = [p.with_suffix(".ipynb").name for p in SOURCES if f"]({p.stem}.ipynb)" not in readme]
    assert not unlisted, f"notebooks/README.md does not link {unlisted}"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_stored_outputs_are_from_the_current_source(py):
    stored = _stored(py)
    assert _cells(stored) == _cells(build.from_source(py)), (
        f"{py.with_suffix('.ipynb').name} was built from another version of {py.name}: "
        f"run python notebooks/build.py {py.name[:2]}"
    )
    outputs = _outputs(stored)
    assert not [o for o in outputs if o.get("output_type") == "error"], f"{py.stem}: a stored output is an error"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{py.stem}: no stored figure (image/png)"
    build.results(stored)  # the RESULTS line is there


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_read_beside_it_paths_exist(py):
    first = build.from_source(py).cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# "), "opens with a markdown title"
    assert "What you will learn" in first.source, f"{py.name}: the first cell says what you will learn"
    assert "Read beside it" in first.source, f"{py.name}: the first cell lists the files to read beside it"
    beside = first.source.split("Read beside it", 1)[1]
    paths = re.findall(r"`([\w./-]+/[\w./-]+)`", beside)
    assert paths, f"{py.name}: 'Read beside it' names no file"
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"{py.name}: 'Read beside it' names files that do not exist: {missing}"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_uses_only_public_names(py):
    text = py.read_text(encoding="utf-8")
    private = re.findall(r"archzoo(?:\.\w+)*\._\w+|from archzoo[\w.]* import [^\n]*\b_\w+", text)
    assert not private, f"{py.name} reaches into private archzoo names: {private}"


def _same(fresh, stored, rtol: float | None) -> bool:
    """Bools exactly; ints exactly unless the notebook declares a tolerance for them (a measured peak
    in bytes is an int that varies between runs); floats within the declared or the default rtol."""
    if isinstance(stored, bool) or isinstance(fresh, bool):
        return type(fresh) is type(stored) and fresh == stored
    if isinstance(stored, int) and isinstance(fresh, int) and rtol is None:
        return fresh == stored
    return math.isclose(fresh, stored, rel_tol=DEFAULT_RTOL if rtol is None else rtol, abs_tol=0.0)


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_executes_fresh_and_teaches_the_stored_numbers(py):
    fresh = build.execute(build.from_source(py))  # raises CellExecutionError on any error or failed assert
    assert any("image/png" in o.get("data", {}) for o in _outputs(fresh)), f"{py.stem}: no figure when executed"
    got, rtol = build.results(fresh)
    want, _ = build.results(_stored(py))
    assert set(got) == set(want), f"{py.stem}: RESULTS keys changed: {sorted(set(got) ^ set(want))}"
    for key, value in got.items():
        assert isinstance(value, (int, float, bool)), f"{py.stem}: RESULTS[{key!r}] is not a number or bool"
    differ = {
        k: (got[k], want[k]) for k in got if not _same(got[k], want[k], float(rtol[k]) if k in rtol else None)
    }
    assert not differ, f"{py.stem}: fresh RESULTS differ from the committed outputs (fresh, stored): {differ}"
