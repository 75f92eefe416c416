"""``archzoo mask``: the printed tables and grids equal the worked examples of
docs/glm.md (§1.4 (a) and (b), §2.5), written out by hand here."""

from __future__ import annotations

import json
import sys

from archzoo.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["mask", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def table_row(out: str, label: str) -> list[str]:
    for line in out.splitlines():
        if line.split()[:1] == [label]:
            return line.split()[1:]
    raise AssertionError(f"no {label!r} row in:\n{out}")


def grid_rows(out: str) -> list[tuple[str, str]]:
    """(token, '1111100000') for every grid line: an index, a token, then 0/1 cells."""
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0].isdigit() and set(parts[2:]) <= {"0", "1"}:
            rows.append((parts[1], "".join(parts[2:])))
    return rows


def test_glm_example_without_cls(capsys):
    code, out, _ = run(capsys, "glm", "--length", "6", "--spans", "2:3,4:6")
    assert code == 0
    # §1.4(b), x3 first
    assert table_row(out, "token") == "x1 x2 [M] x4 [M] [S] x3 [S] x5 x6".split()
    assert table_row(out, "target") == "- - - - - x3 [E] x5 x6 [E]".split()
    assert table_row(out, "position") == "0 1 2 3 4 2 2 4 4 4".split()
    assert table_row(out, "block") == "0 0 0 0 0 1 2 1 2 3".split()
    expected = ["1111100000"] * 5 + ["1111110000", "1111111000", "1111111100", "1111111110", "1111111111"]
    assert [cells for _, cells in grid_rows(out)] == expected
    assert [token for token, _ in grid_rows(out)] == table_row(out, "token")
    assert "sep = 5" in out


def test_glm_example_with_cls_paper_order(capsys):
    code, out, _ = run(capsys, "glm", "--length", "6", "--spans", "4:6,2:3", "--cls")
    assert code == 0
    # §1.4(a), [x5, x6] first: the paper's Fig. 2 numbers
    assert table_row(out, "token") == "[CLS] x1 x2 [M] x4 [M] [S] x5 x6 [S] x3".split()
    assert table_row(out, "position") == "0 1 2 3 4 5 5 5 5 3 3".split()
    assert table_row(out, "block") == "0 0 0 0 0 0 1 2 3 1 2".split()
    expected = ["11111100000"] * 6 + ["11111110000", "11111111000", "11111111100", "11111111110", "11111111111"]
    assert [cells for _, cells in grid_rows(out)] == expected


def test_chatglm_prefix_example(capsys):
    code, out, _ = run(capsys, "chatglm", "--prompt-length", "3", "--generated", "3")
    assert code == 0
    # §2.5
    assert table_row(out, "token") == "p1 p2 p3 [gMASK] <sop> g1 g2 g3".split()
    assert table_row(out, "position") == "0 1 2 3 3 3 3 3".split()
    assert table_row(out, "block") == "0 0 0 0 1 2 3 4".split()
    expected = ["11110000"] * 4 + ["11111000", "11111100", "11111110", "11111111"]
    assert [cells for _, cells in grid_rows(out)] == expected


def test_json_and_shuffle(capsys):
    code, out, _ = run(capsys, "glm", "--length", "10", "--spans", "1:2,3:5,6:9", "--shuffle", "0", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["sep"] == 7 and len(data["mask"]) == 7 + 2 + 3 + 4
    assert sorted(t for t in data["tokens"][7:] if t != "[S]") == sorted(["x2", "x4", "x5", "x7", "x8", "x9"])


def test_png_is_written_atomically(capsys, tmp_path):
    target = tmp_path / "out" / "mask.png"
    code, out, _ = run(capsys, "glm", "--length", "6", "--spans", "2:3,4:6", "--png", str(target))
    assert code == 0 and f"wrote {target}" in out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in target.parent.iterdir()] == ["mask.png"]  # no temp file left behind


def test_png_without_matplotlib_says_what_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(capsys, "glm", "--length", "3", "--png", str(tmp_path / "m.png"))
    assert code == 2 and "archzoo[plot]" in err
    assert not (tmp_path / "m.png").exists()


def test_bad_input_names_the_argument(capsys):
    code, _, err = run(capsys, "glm", "--length", "6", "--spans", "2-3")
    assert code == 2 and "--spans" in err and "start:end" in err
    code, _, err = run(capsys, "glm", "--length", "6", "--spans", "2:4,3:5")
    assert code == 2 and "overlap" in err
    code, _, err = run(capsys, "glm")
    assert code == 2 and "--length" in err
    code, _, err = run(capsys, "chatglm")
    assert code == 2 and "--prompt-length" in err
