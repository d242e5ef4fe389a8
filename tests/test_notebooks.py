"""Notebooks graded as Jupyter runs them: cell magics, and cells named as Jupyter shows them.

Notebooks are built with nbformat and graded in one batch by the real CLI; the kernel's
own view comes from running a notebook through a Jupyter kernel with nbclient, and the
self-check's from ``grader.selfcheck.notebook.grade_cells`` (the kernel's history).
"""
from __future__ import annotations

import re

import nbformat
import pytest

from conftest import ROOT, by_name, exercise_scores, grade_json, max_scores, solution_sources
from grader.course.load import load_course
from grader.intake.allowlist import scan_notebook
from grader.intake.submission import OTHER_CELL_MAGICS, PYTHON_CELL_MAGICS, cell_magic_note, cell_names, load_submission, read_cell

COURSE = load_course(ROOT / "course.yaml")
FUNCTIONS = {e.id: e.function for e in COURSE.exercises}
SOURCES = solution_sources()
# attention calling the earlier cells' functions, as a notebook does (the solution's relative
# imports are the file layout's)
ATTENTION = re.sub(r"^from \.\w+ import \w+\n", "", SOURCES["attention"], flags=re.M)
WRONG_SOFTMAX = "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n    return e / e.sum(dim=dim, keepdim=True)\n"
CODE = dict(SOURCES, softmax=WRONG_SOFTMAX, attention=ATTENTION)  # partial marks: the scores say something


def code(source: str, count: int | None = None) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, execution_count=count)


def markdown(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text)


def write(path, cells: list) -> None:
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


# The kernel's history for the self-check, and the same cells handed in (In [n] saved as n).
HISTORY = [
    "import math\nimport torch",
    "%%time\n" + SOURCES["softmax"],
    "raise ValueError('a broken cell')",
    "%%bash\necho hi",
    "import os",
    "from grader import check\ncheck('softmax')",
    SOURCES["attention_scores"],
]

# How the magics notebook wraps each exercise's cell, in course order (round the list)
MAGIC_WRAPPERS = ("%%capture out\n", "%%time\n",
                  "\n%%capture\n%%time\n",  # nested, after a blank line: IPython reads both
                  "%%prun -q\n")
FIRST_MAGIC_COUNT = 3  # the magics notebook's exercise cells are saved as In [3], In [4]...


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, dict]:
    """Every notebook of this file graded in one batch by the CLI."""
    root = tmp_path_factory.mktemp("notebooks")
    ids = list(FUNCTIONS)
    write(root / "plain.ipynb", [markdown("# Attention")] + [code(CODE[i]) for i in ids])
    write(root / "magics.ipynb",
          [markdown("# Attention"), code("%matplotlib inline\n!pip list\nif True:\n    !echo in a block\n%time ready = 1", 2)]
          + [code(MAGIC_WRAPPERS[n % len(MAGIC_WRAPPERS)] + CODE[i], FIRST_MAGIC_COUNT + n) for n, i in enumerate(ids)])
    write(root / "skipped.ipynb", [
        code("%%bash\npip install torch", 1),
        code(SOURCES["attention_scores"], 2),
        code(SOURCES["softmax"], 3),
        code("%%writefile attention.py\nimport os\n" + ATTENTION, 7),  # not run, so not scanned: no note on os
        code("%%timeit -n1 -r1\n" + SOURCES["apply_weights"], 4),
        code("%%html\n<b>done</b>", 6),
    ])
    write(root / "missing.ipynb", [  # saved without counts: named as Restart & Run All numbers them
        markdown("# Attention"),
        code("import math\n\ndef attention_scores(Q, K)\n    return Q @ K.transpose(-2, -1) / math.sqrt(Q.size(-1))\n"),
        code(SOURCES["softmax"].replace("def softmax(", "def sofmax(")),
        markdown("## weights @ V"),
        code(""),  # blank: Jupyter gives it no number
        code("apply_attention_weights = 3"),
        code("raise ValueError('stop here')\n" + ATTENTION),
    ])
    write(root / "history.ipynb", [x for n, c in enumerate(HISTORY, 1) for x in (markdown(f"step {n}"), code(c, n))])
    return by_name(grade_json(tmp_path_factory.mktemp("out"), root))


def statuses(submission: dict) -> dict[tuple[str, str], tuple[str, float]]:
    return {(e["id"], t["name"]): (t["status"], t["score"]) for e in submission["exercises"] for t in e["tests"]}


def messages(submission: dict, exercise: str) -> set[str]:
    return {t["message"] for e in submission["exercises"] if e["id"] == exercise for t in e["tests"]}


def test_python_cell_magics_are_graded_as_their_body(graded):
    """Does a notebook whose cells start with %%time, %%capture (nested with %%time) and %%prun,
    with line magics and !shell lines (one inside a block), score test for test what the same
    code in plain cells scores, with nothing noted?"""
    plain, magics = graded["plain.ipynb"], graded["magics.ipynb"]
    assert 0 < plain["score"] < plain["max_score"]  # the wrong softmax costs points, the rest earns them
    assert statuses(magics) == statuses(plain)
    assert magics["score"] == plain["score"]
    assert magics["errors"] == plain["errors"] == []


def test_hints_quote_the_line_where_the_student_sees_it(graded):
    """Does a hint quote the student's line by the cell's number and the line's number in that
    cell as Jupyter shows them (the %%time line counted), split apart for class statistics?"""
    from grader.feedback.stats import split_hint

    line = next(n for n, text in enumerate(WRONG_SOFTMAX.split("\n"), 1) if "torch.exp(x)" in text)
    place = list(FUNCTIONS).index("softmax")
    header = MAGIC_WRAPPERS[place % len(MAGIC_WRAPPERS)].count("\n")  # the %% lines count in the cell's lines
    for name, where in (("plain.ipynb", f"cell [{place + 1}], line {line}"),
                        ("magics.ipynb", f"cell [{FIRST_MAGIC_COUNT + place}], line {line + header}")):
        hints = {h for e in graded[name]["exercises"] if e["id"] == "softmax" for t in e["tests"] for h in t["hints"]}
        assert hints and {split_hint(h)[1:] for h in hints} == {(where, "e = torch.exp(x)")}, name


def test_non_python_cell_magics_are_skipped_with_a_note(graded):
    """Are %%bash, %%writefile, %%timeit and %%html cells left out, each noted by the number
    Jupyter shows beside it, the functions they hold reported where they are, and nothing in
    them scanned or run?"""
    submission = graded["skipped.ipynb"]
    assert submission["errors"] == [cell_magic_note("cell [1]", "bash"), cell_magic_note("cell [7]", "writefile"),
                                    cell_magic_note("cell [4]", "timeit"), cell_magic_note("cell [6]", "html")]
    assert submission["errors"][0] == "cell [1] is a %%bash cell, not graded: shell commands, not Python."
    assert all(re.match(r"cell \[\d\] is a %%\w+ cell, not graded: ", e) for e in submission["errors"])
    full = max_scores(graded["plain.ipynb"])
    assert exercise_scores(submission) == dict(full, apply_weights=0, attention=0)
    assert messages(submission, "attention") == {
        "attention is defined in cell [7], a %%writefile cell, which is not graded (see the note about cell [7]). "
        "Move attention into a plain code cell."}
    assert messages(submission, "apply_weights") == {
        "apply_attention_weights is defined in cell [4], a %%timeit cell, which is not graded (see the note about "
        "cell [4]). Move apply_attention_weights into a plain code cell."}


def test_a_missing_function_gets_notebook_words(graded):
    """Does a notebook missing a function hear which cell holds a close name, which cell assigns a
    non-function, and that the cell defining one has a syntax error or stopped first, its cells
    numbered as Restart & Run All numbers them (Markdown and blank cells not counted)?"""
    submission = graded["missing.ipynb"]
    assert messages(submission, "attention_scores") == {
        "attention_scores is defined in cell [1], but when your notebook was graded that cell did not get that far "
        "(see the note about cell [1]). Fix that cell first."}
    assert messages(submission, "softmax") == {
        "no cell of your notebook defines a function named softmax. Did you mean sofmax (cell [2])? Rename it to softmax."}
    assert messages(submission, "apply_weights") == {
        "apply_attention_weights in your notebook is an int, not a function (cell [3] assigns it last)."}
    assert messages(submission, "attention") == {
        "attention is defined in cell [4], but when your notebook was graded that cell did not get that far "
        "(see the note about cell [4]). Fix that cell first."}
    assert submission["errors"] == [
        "cell [1] line 3: syntax error (expected ':'): def attention_scores(Q, K). Nothing of that cell ran (the cells "
        "after it did): fix that line and run the cell again.",
        "cell [4] raised ValueError: stop here (line 1: raise ValueError('stop here')) (the cells after it still ran)."]


def test_no_message_about_a_notebook_names_a_py_file(graded):
    """Does every message, hint and note of every notebook here name cells, never a .py file?"""
    texts = [(name, text) for name, submission in graded.items() for text in submission["errors"]]
    texts += [(name, text) for name, submission in graded.items() for e in submission["exercises"]
              for t in e["tests"] for text in (t["message"], *t["hints"])]
    assert len(texts) > 50
    assert [(name, text) for name, text in texts if ".py" in text] == []


def test_cells_are_named_alike_by_check_and_grade(graded):
    """Does the notebook self-check (the kernel's history, entry n being In [n]) name every cell
    as grading the handed-in notebook does (saved execution counts, Markdown cells between)?"""
    from grader.selfcheck.notebook import grade_cells

    checked = grade_cells(HISTORY, ["softmax"], ROOT / "course.yaml")
    handed_in = graded["history.ipynb"]
    assert checked.errors == handed_in["errors"]
    assert sorted(re.match(r"cell \[(\d+)\]", e).group(1) for e in checked.errors) == ["3", "4", "5"]
    assert any(e.startswith("cell [5] line 1 imports os, which graded code may not import") for e in checked.errors)
    softmax = next(e for e in checked.exercises if e.id == "softmax")
    assert softmax.score == softmax.max_score  # the %%time cell's softmax is graded


def test_the_kernel_and_the_grade_agree_on_what_cells_define(tmp_path):
    """Run in a real Jupyter kernel (nbclient), does a notebook define exactly the functions the
    grade finds (%%time and %%capture bodies and a %time line do; %%timeit and %%python bodies
    do not), and do the notes name the cells by the numbers the kernel gave them?"""
    pytest.importorskip("ipykernel")
    nbclient = pytest.importorskip("nbclient")
    names = ", ".join(f"'{f}'" for f in (*FUNCTIONS.values(), "scale"))
    cells = [
        code("%%time\n" + SOURCES["softmax"]),
        code("%%capture captured\nimport math\n\ndef attention_scores(Q, K):\n"
             "    return Q @ K.transpose(-2, -1) / math.sqrt(Q.size(-1)) * scale\n"),
        code("%%timeit -n1 -r1\n" + SOURCES["apply_weights"]),
        code("%%bash\necho hi"),
        code("%time scale = 1.0"),
        code("%%python\n" + ATTENTION),
        code(f"here = dir()\nprint(sorted(n for n in [{names}] if n in here))"),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True).execute()
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.get("name") == "stdout")
    in_kernel = set(eval(printed))  # noqa: S307 - our own cell's printed list of names
    assert in_kernel == {"softmax", "attention_scores", "scale"}
    nbformat.write(notebook, tmp_path / "executed.ipynb")

    submission = grade_json(tmp_path, tmp_path / "executed.ipynb")["submissions"][0]
    defined = {e["id"] for e in submission["exercises"] if "not_implemented" not in {t["status"] for t in e["tests"]}}
    assert {FUNCTIONS[i] for i in defined} == in_kernel - {"scale"}
    assert all(e["score"] == e["max_score"] for e in submission["exercises"] if e["id"] in defined)  # scale was set
    counts = [c.execution_count for c in notebook.cells]
    assert submission["errors"] == [cell_magic_note(f"cell [{counts[2]}]", "timeit"),
                                    cell_magic_note(f"cell [{counts[3]}]", "bash"),
                                    cell_magic_note(f"cell [{counts[5]}]", "python")]


# ---------------------------------------------------------------- reading cells, without the CLI


@pytest.mark.parametrize("source, python", [
    ("%%time\ndef f(x):\n    return x", "\ndef f(x):\n    return x"),
    ("%%time --no-raise-error\nx = 1", "\nx = 1"),
    ("\n%%capture out --no-stderr\n%%time\nx = 1", "\n\n\nx = 1"),
    ("%%prun -s cumulative -q\nx = 1", "\nx = 1"),
    ("%%debug\nx = 1", "\nx = 1"),
    ("%time x = f()\n%time --no-raise-error y = 2", "x = f()\ny = 2"),
    ("%prun -s cumulative -q x = f()", "x = f()"),
    ("%debug -b a.py:3 x = f()", "x = f()"),
    ("%timeit x = f()\n%debug\n%time", "\n\n"),  # %timeit binds inside a function; nothing else to run
    ("import torch\n%matplotlib inline\n!pip install x\nfiles = !ls\ntorch.softmax?\n??torch", "import torch\n\n\n\n\n"),
    ("for i in range(2):\n    !echo $i\n    %time y = i", "for i in range(2):\n    pass\n    y = i"),
    ("y = 1  # a comment that asks?\nz = '?'", "y = 1  # a comment that asks?\nz = '?'"),
])
def test_python_cells_read_as_ipython_runs_them(source, python):
    """Is a cell read as the Python IPython runs in the notebook's namespace, line numbers kept?"""
    assert read_cell(source) == (python, None)


@pytest.mark.parametrize("magic", sorted(OTHER_CELL_MAGICS) + ["sql", "timeitt"])
def test_other_cell_magics_are_not_graded(magic):
    """Is a cell under any other cell magic (a known one or not) left out, line count kept?"""
    python, found = read_cell(f"%%{magic} some args\nimport os\ndef softmax(x): return x\n")
    assert (python, found) == ("\n\n\n", magic)
    assert magic not in PYTHON_CELL_MAGICS and f"%%{magic} cell, not graded: " in cell_magic_note("cell [2]", magic)


def test_a_statement_on_the_time_line_is_refused_as_jupyter_refuses_it():
    """Is ``%%time x = 1`` over a body left out, as IPython refuses it (UsageError)?"""
    assert read_cell("%%time x = 1\ny = 2") == ("\n", "time")
    assert "refuses" in cell_magic_note("cell [3]", "time")


def test_cell_names_follow_the_numbers_jupyter_shows():
    """Is a cell named by its saved count; in a notebook saved without counts by Restart & Run
    All's number (blank and Markdown cells skipped); by its place among code cells when it
    shows [ ] among numbered cells or shares its number with another?"""
    md = ("markdown", "# hi", None)
    assert cell_names([md, ("code", "x = 1", 5), ("code", "y = 2", 2)]) == ["", "cell [5]", "cell [2]"]
    assert cell_names([md, ("code", "x", None), ("code", " \n", None), md, ("code", "y", None)]) == [
        "", "cell [1]", "code cell 2", "", "cell [2]"]
    assert cell_names([("code", "x", 1), ("code", "y", None), ("code", "z", 1), ("code", "w", 2)]) == [
        "code cell 1", "code cell 2", "code cell 3", "cell [2]"]
    assert cell_names([("code", "x", True), ("code", "y", "3"), ("code", "z", None)]) == [
        "cell [1]", "cell [2]", "cell [3]"]  # counts that are not counts are no counts


def test_a_python_cell_magic_body_is_scanned(tmp_path):
    """Is the body of a %%capture cell scanned like any cell (a bad line stops it, the note
    naming it by its number), and a %%bash cell's never?"""
    write(tmp_path / "n.ipynb", [markdown("# hi"), code("%%capture\nimport os", 4), code("%%bash\nimport os", 5)])
    sub = load_submission("n.ipynb", tmp_path / "n.ipynb")
    assert sub.notebook == ["", "\nimport os", "\n"] and sub.cell_names == ["", "cell [4]", "cell [5]"]
    assert sub.errors == [cell_magic_note("cell [5]", "bash")]
    skipped = scan_notebook(tuple(sub.notebook), COURSE.policy, tuple(sub.cell_names)).skipped()
    assert list(skipped) == [1] and skipped[1].startswith("cell [4] line 2 imports os, which graded code may not import")
    assert "can be imported in a notebook" in skipped[1]


def test_every_kind_of_worker_error_names_cells_in_a_notebook(tmp_path):
    """Whatever the worker reports (each kind ``_describe`` knows, and any other), do the words
    for a notebook name the cell Jupyter numbers, never a .py file, and the words for a folder
    still name the file?"""
    from grader.run.worker_errors import describe_error as _describe

    write(tmp_path / "n.ipynb", [markdown("# hi"), code("import torch", 3), code("def sofmax(x):\n    return x", 7)])
    notebook = load_submission("n.ipynb", tmp_path / "n.ipynb")
    softmax = COURSE.exercise("softmax")
    place = {"file": "<cell 3>", "line": 2, "code": "return x"}
    reports = [{"kind": "missing_function", "available": ["sofmax"]}, {"kind": "not_callable", "type": "int"},
               {"kind": "import_error", "module": "scipy", **place}, {"kind": "forbidden", "kernel": "_softmax", **place},
               {"kind": "exception", "type": "SyntaxError", "message": "invalid syntax (<cell 3>, line 2)", **place},
               *({"kind": kind, **place} for kind in ("not_implemented", "exit", "not_differentiable", "bad_output"))]
    for report in reports:
        for op in ("load", "call"):
            words = _describe(softmax, report, op, COURSE.policy.allowed_imports, notebook).message
            assert ".py" not in words and "<cell" not in words, words
            if report.get("file"):
                assert "(cell [7] line 2: return x)" in words or report["kind"] in ("not_differentiable", "bad_output")
            in_a_file = _describe(softmax, dict(report, file="softmax.py"), op, COURSE.policy.allowed_imports).message
            assert report["kind"] not in ("missing_function", "not_callable", "import_error") or softmax.filename in in_a_file
    assert _describe(softmax, reports[0], "load", notebook=notebook).message == (
        "no cell of your notebook defines a function named softmax. Did you mean sofmax (cell [7])? Rename it to softmax.")
    assert "invalid syntax (cell [7], line 2)" in _describe(softmax, reports[4], "call", notebook=notebook).message
