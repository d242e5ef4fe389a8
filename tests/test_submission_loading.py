"""Reading submissions: folders, zips, notebooks, batches; bad input becomes words."""
from __future__ import annotations

import zipfile
from pathlib import Path

import nbformat
import pytest

from conftest import IDS, solution_sources
from grader.errors import UsageError
from grader.intake.submission import decode_source, discover, load_submission, strip_magics


def zip_of(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_folder_with_files_at_the_top(tmp_path):
    """Are the .py files at the top of a folder read as the exercise modules?"""
    for name, text in solution_sources().items():
        (tmp_path / f"{name}.py").write_text(text)
    sub = load_submission("s", tmp_path)
    assert set(sub.sources) == set(IDS)
    assert sub.errors == []


def test_zip_with_wrapping_folder_and_mac_debris(tmp_path):
    """Are a wrapping folder, __MACOSX/ and .DS_Store tolerated in a zip?"""
    members = {f"my work/exercises/{n}.py": t for n, t in solution_sources().items()}
    members["__MACOSX/my work/._softmax.py"] = b"\x00\x05junk"
    members["my work/.DS_Store"] = b"Bud1"
    sub = load_submission("s.zip", zip_of(tmp_path / "s.zip", members))
    assert set(sub.sources) == set(IDS)
    assert sub.sources["softmax"].path == "my work/exercises/softmax.py"
    assert sub.errors == []


def test_a_file_beside_exercises_of_the_same_name_is_said_not_graded(tmp_path):
    """exercises/ and a softmax.py at the top too: exercises/ is graded, and the note names the
    file that was not (a student who edited the wrong copy must be told)."""
    members = {f"exercises/{n}.py": t for n, t in solution_sources().items()}
    members["softmax.py"] = "def softmax(x, dim=-1):\n    return x\n"
    members["notes.py"] = "x = 1\n"
    sub = load_submission("s.zip", zip_of(tmp_path / "s.zip", members))
    assert sub.sources["softmax"].path == "exercises/softmax.py" and "notes" not in sub.sources
    assert sub.errors == ["softmax.py was not graded: exercises/softmax.py was (when a submission has an exercises/ "
                          "folder, its files are read from there). Remove one of the two."]


def test_zip_slip_members_are_ignored_and_nothing_written(tmp_path):
    """Are ../ and absolute members rejected without writing anything anywhere?"""
    before = set(tmp_path.parent.iterdir())
    archive = zip_of(tmp_path / "evil.zip", {"../../evil.py": "x = 1", "/etc/evil.py": "x = 1", "softmax.py": "x = 1"})
    sub = load_submission("evil.zip", archive)
    assert set(sub.sources) == {"softmax"}
    assert sum("outside the archive" in e for e in sub.errors) == 2
    assert set(tmp_path.parent.iterdir()) == before


def test_oversized_file_is_refused(tmp_path):
    """Is a huge source file refused by size with a message, not read?"""
    archive = zip_of(tmp_path / "big.zip", {"softmax.py": "#" * (2 << 20), "attention.py": "x = 1"})
    sub = load_submission("big.zip", archive)
    assert "softmax" not in sub.sources and "too large" in sub.unreadable["softmax"]
    assert "attention" in sub.sources


def test_not_a_zip(tmp_path):
    """Is a corrupt zip one error in words?"""
    path = tmp_path / "broken.zip"
    path.write_bytes(b"PK\x03\x04 this is not really a zip")
    sub = load_submission("broken.zip", path)
    assert sub.sources == {} and "not a readable zip" in sub.errors[0]


def test_notebook_cells_and_magics(tmp_path):
    """Are a notebook's code cells read in order, magics and shell lines blanked, a %%bash cell
    left out with a note, each cell named by the number Jupyter shows beside it?"""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# hi"),
                nbformat.v4.new_code_cell("%matplotlib inline\n!pip list\nx = 1", execution_count=1),
                nbformat.v4.new_code_cell("%%bash\necho hi", execution_count=2),
                nbformat.v4.new_code_cell("y = x + 1", execution_count=5)]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    sub = load_submission("n.ipynb", path)
    assert sub.notebook == ["", "\n\nx = 1", "\n", "y = x + 1"]
    assert sub.cell_names == ["", "cell [1]", "cell [2]", "cell [5]"]
    assert sub.errors == ["cell [2] is a %%bash cell, not graded: shell commands, not Python."]
    assert sub.ungraded_cells == {2: ("bash", "%%bash\necho hi")}


@pytest.mark.parametrize("content, words", [(b"{not json", "not valid JSON"), (b'{"hello": 1}', "not a Jupyter notebook"),
                                            (b"\xff\xfe\x00garbage", "not a text file")])
def test_broken_notebook_is_one_error(tmp_path, content, words):
    """Is a notebook that is not JSON, or not a notebook, reported in words?"""
    path = tmp_path / "n.ipynb"
    path.write_bytes(content)
    sub = load_submission("n.ipynb", path)
    assert sub.notebook is None and words in sub.errors[0]


def test_strip_magics_keeps_line_numbers():
    """Do magics become blank lines (``%time``'s statement stays, as IPython runs it) so
    tracebacks keep the student's line numbers?"""
    source = "import torch\n%time x = 1\n!ls\n%timeit f()\ny = 2"
    assert strip_magics(source).split("\n") == ["import torch", "x = 1", "", "", "y = 2"]


def test_source_encodings():
    """Is source decoded as Python does: UTF-8, BOM, a coding cookie, else a clear message?"""
    assert decode_source("x = 'é'\n".encode()) == "x = 'é'\n"
    assert decode_source(b"\xef\xbb\xbfx = 1\n") == "x = 1\n"
    assert decode_source("# -*- coding: latin-1 -*-\nx = 'é'\n".encode("latin-1")).endswith("x = 'é'\n")
    with pytest.raises(ValueError, match="line 2 is not valid utf-8"):
        decode_source("x = 1\ny = 'é'\n".encode("latin-1"))


def test_symlink_outside_is_ignored(tmp_path):
    """Is a symlink leading outside the submission ignored, with a note?"""
    secret = tmp_path / "secret.py"
    secret.write_text("KEY = 1")
    sub_dir = tmp_path / "sub"
    sub_dir.mkdir()
    (sub_dir / "softmax.py").symlink_to(secret)
    (sub_dir / "attention.py").write_text("x = 1")
    sub = load_submission("sub", sub_dir)
    assert "softmax" not in sub.sources and any("outside" in e for e in sub.errors)


def test_batch_discovery(tmp_path):
    """Is a folder of folders, zips and notebooks a batch, and a folder of .py one submission?"""
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "softmax.py").write_text("x = 1")
    zip_of(tmp_path / "bob.zip", {"softmax.py": "x = 1"})
    (tmp_path / "carol.ipynb").write_text("{}")
    (tmp_path / "notes.txt").write_text("not a submission")
    found = discover([str(tmp_path)])
    assert [name for name, _ in found] == ["alice", "bob.zip", "carol.ipynb"]
    assert discover([str(tmp_path / "alice")]) == [(str(tmp_path / "alice"), tmp_path / "alice")]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert discover([str(empty)]) == [(str(empty), empty)]
    with pytest.raises(UsageError, match="no such file"):
        discover([str(tmp_path / "missing")])
