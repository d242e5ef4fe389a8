"""The student release: nothing secret in it, check works offline, the notebook runs and grades."""
from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import IDS, ROOT, SOLUTIONS, by_name, grade_json, run_grader, solution_sources
from grader.release.answer_book import AnswerBook
from grader.course.load import ANSWERS_FILE, CourseError, load_course
from grader.release.bundle import ReleaseError, public_suite

SUITES = ROOT / "grader" / "suites"
EXAMPLES = ROOT / "examples" / "submissions"
FUNCTIONS = {"apply_weights": "apply_attention_weights"}  # exercise id -> function name, where they differ
DATA_SUFFIXES = {".pt", ".pth", ".npy", ".npz", ".pkl", ".pickle", ".safetensors"}
WRONG_SOFTMAX = "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n    return e / e.sum(dim=dim, keepdim=True)\n"


# ---------------------------------------------------------------- helpers (test_otter.py uses them too)


def notebook_solutions(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Solution sources as notebook cells: one namespace, so no relative imports."""
    sources = {i: re.sub(r"^from \.\w+ import \w+\n", "", text, flags=re.M) for i, text in solution_sources().items()}
    return dict(sources, **(overrides or {}))


def fill(notebook: Path, target: Path, code: dict[str, str], extra_cells: tuple[str, ...] = ()) -> Path:
    """A copy of a released notebook with the stub cells of ``code``'s exercises replaced."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        for exercise, text in code.items():
            if cell.cell_type == "code" and f"def {FUNCTIONS.get(exercise, exercise)}(" in cell.source:
                cell.source = text
    nb.cells += [nbformat.v4.new_code_cell(c) for c in extra_cells]
    nbformat.write(nb, target)
    return target


def execute(notebook: Path, timeout: int = 300) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a real kernel, in its own folder, as Jupyter does."""
    nbclient = pytest.importorskip("nbclient", reason="the dev extra (nbclient, ipykernel) is not installed")
    nb = nbformat.read(notebook, as_version=4)
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}}).execute()
    return nb


def html_outputs(nb: nbformat.NotebookNode) -> dict[str, str]:
    """The HTML each check cell displayed, by the cell's source."""
    return {c.source: "".join(o["data"]["text/html"] for o in c.outputs if "text/html" in o.get("data", {}))
            for c in nb.cells if c.cell_type == "code" and re.fullmatch(r"(grader\.)?check\(.*\)", c.source)}


def _statements(tree: ast.AST) -> set[str]:
    return {ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.stmt)}


def _body(function: ast.FunctionDef) -> list[ast.stmt]:
    """A function's statements without its docstring."""
    body = function.body
    return body[1:] if ast.get_docstring(function) is not None else body


def _source_lines(source: str, nodes: list[ast.stmt]) -> set[str]:
    """The stripped lines of ``nodes`` (comments included) long enough to be telling: a short
    one such as ``d_k = Q.size(-1)`` is also lesson text."""
    lines = source.splitlines()
    found = set()
    for node in nodes:
        for line in lines[node.lineno - 1:node.end_lineno]:
            if len(line.strip()) >= 25:
                found.add(line.strip())
    return found


def secrets() -> dict[str, set[str]]:
    """What must never reach students, from the sources themselves: the solutions' function
    bodies (statements and lines), and the hidden tests (names, docstrings, and statements).
    Statements the public tests also hold (``return output, weights``) are public already."""
    solution_statements, solution_lines = set(), set()
    for path in SOLUTIONS.glob("*.py"):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef):
                body = _body(node)
                solution_statements |= _statements(ast.Module(body=body, type_ignores=[]))
                solution_lines |= _source_lines(source, body)
    misconception_statements = set()
    for path in (ROOT / "misconceptions").glob("*.py"):  # wrong code, computed with the right algorithm
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                misconception_statements |= _statements(ast.Module(body=_body(node), type_ignores=[]))
    names, docstrings, hidden, public = set(), set(), set(), set()
    for path in SUITES.glob("test_*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and any("hidden" in ast.unparse(d) for d in node.decorator_list):
                names.add(node.name)
                docstrings.add(ast.get_docstring(node) or "")
                hidden |= _statements(ast.Module(body=_body(node), type_ignores=[]))
            else:
                public |= _statements(node)
    return {"solution statements": solution_statements - public, "solution lines": solution_lines,
            "misconception statements": misconception_statements - public,
            "hidden test names": names, "hidden test docstrings": docstrings - {""},
            "hidden test statements": hidden - public}


def leaks(bundle: Path) -> list[str]:
    """Everything secret found in ``bundle``, as sentences (empty: nothing leaks)."""
    found, secret = [], secrets()
    if (bundle / "solutions").exists():
        found.append("a solutions/ folder")
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        where = path.relative_to(bundle)
        if where == Path(ANSWERS_FILE):  # the answer book: recorded tensors, and hints as text
            found += _book_leaks(path, secret)
            continue
        if path.suffix in DATA_SUFFIXES:
            found.append(f"{where}: a saved data file (reference output?)")
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            found.append(f"{where}: a binary file")
            continue
        code = [text] if path.suffix == ".py" else []
        if path.suffix == ".ipynb":
            nb = nbformat.reads(text, as_version=4)
            text = "\n".join(c.source for c in nb.cells)
            code = [c.source for c in nb.cells if c.cell_type == "code"]
            if any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
                found.append(f"{where}: a notebook with saved outputs")
        statements = set()
        for source in code:
            try:
                statements |= _statements(ast.parse(source))
            except SyntaxError:
                found.append(f"{where}: code that does not parse")
        for kind in ("solution statements", "misconception statements", "hidden test statements"):
            found += [f"{where}: {kind[:-1]} {s!r}" for s in sorted(secret[kind] & statements)]
        found += [f"{where}: solution line {line!r}" for line in sorted(secret["solution lines"]) if line in text]
        found += [f"{where}: hidden test name {n}" for n in sorted(secret["hidden test names"])
                  if re.search(rf"\b{n}\b", text)]
        found += [f"{where}: hidden test docstring {d!r}" for d in sorted(secret["hidden test docstrings"]) if d in text]
    return found


def _book_leaks(path: Path, secret: dict[str, set[str]]) -> list[str]:
    """What of the secrets the answer book holds: a tensor zip whose only text is the
    misconceptions' names, hints and patterns (never code, a test name or a docstring)."""
    import zipfile

    found = []
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if any(n.endswith((".py", ".so")) for n in names):
            found.append(f"{path.name}: code inside")
        text = b"".join(archive.read(n) for n in names if n.endswith(".pkl")).decode("latin-1")
    found += [f"{path.name}: hidden test name {n}" for n in sorted(secret["hidden test names"])
              if re.search(rf"\b{n}\b", text)]
    found += [f"{path.name}: solution line {line!r}" for line in sorted(secret["solution lines"]) if line in text]
    book = AnswerBook.load(path)
    if set(book.misconception_data) != set(IDS):
        found.append(f"{path.name}: misconceptions of {sorted(book.misconception_data)}, not of every exercise")
    return found


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release") / "bundle"
    proc = run_grader("release", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


SAMPLES = [SOLUTIONS, EXAMPLES / "bob.zip", EXAMPLES / "carol.ipynb"]  # right, and 60 failures with 40 hints


@pytest.fixture(scope="session")
def with_solutions(bundle, tmp_path_factory) -> dict:
    """One grading run (against the solutions): the samples, and the released notebook filled
    in (a wrong softmax) next to the same code as .py files."""
    folder = tmp_path_factory.mktemp("filled")
    notebook = fill(bundle / "attention_step_by_step.ipynb", folder / "filled.ipynb",
                    notebook_solutions({"softmax": WRONG_SOFTMAX}))
    files = folder / "files"
    files.mkdir()
    for exercise_id, text in dict(solution_sources(), softmax=WRONG_SOFTMAX).items():
        (files / f"{exercise_id}.py").write_text(text)
    report = by_name(grade_json(folder / "out", *SAMPLES, notebook, files))
    return dict(report, notebook=report[str(notebook)], files=report[str(files)])


# ---------------------------------------------------------------- what is in it


def test_the_bundle_holds_what_students_need(bundle):
    """Stubs, public suites, a course file, a README, the notebook, and the grader to run them?"""
    assert sorted(p.name for p in (bundle / "exercises").glob("*.py")) == sorted(["__init__.py", *(f"{i}.py" for i in IDS)])
    for exercise_id in IDS:
        stub = (bundle / "exercises" / f"{exercise_id}.py").read_text()
        assert stub == (ROOT / "exercises" / f"{exercise_id}.py").read_text() and "NotImplementedError" in stub
    assert (bundle / "course.yaml").read_text() == (ROOT / "course.yaml").read_text()
    assert (bundle / "answers.pt").is_file() and (bundle / "grader" / "sandbox" / "worker.py").is_file()
    readme = (bundle / "README.md").read_text()
    assert "python -m grader check" in readme and "attention_step_by_step.ipynb" in readme
    assert "torch==2.13.0" in readme and "hidden tests" in readme
    policy = load_course(ROOT / "course.yaml").policy  # what graded code may use, from course.yaml
    assert "may import only " + ", ".join(f"`{m}`" for m in policy.allowed_imports) in readme
    assert "`getattr`" in readme and "`open`" in readme and "`torch.ops`" in readme


def test_nothing_secret_is_in_the_bundle(bundle):
    """No solution code, no hidden test (name, docstring or code), no saved reference output, anywhere?"""
    secret = secrets()
    assert len(secret["hidden test names"]) >= 4 and secret["solution statements"] and secret["hidden test statements"]
    assert len(secret["misconception statements"]) >= 10
    assert leaks(bundle) == []


def test_the_scan_finds_what_it_looks_for(bundle, tmp_path):
    """Would the scan notice a solution, a misconception module, a hidden test or a saved output?"""
    planted = tmp_path / "planted"
    shutil.copytree(bundle, planted)
    shutil.copy(SOLUTIONS / "softmax.py", planted / "exercises" / "softmax.py")
    shutil.copy(ROOT / "misconceptions" / "attention.py", planted / "grader" / "misconceptions")
    shutil.copy(SUITES / "test_attention.py", planted / "grader" / "suites" / "test_attention.py")
    nb = nbformat.read(bundle / "attention_step_by_step.ipynb", as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="tensor([0.0900, 0.2447, 0.6652])")]
    nbformat.write(nb, planted / "attention_step_by_step.ipynb")
    (planted / "expected.pt").write_bytes(b"\x80\x02")
    found = "\n".join(leaks(planted))
    for words in ("exercises/softmax.py: solution statement", "misconceptions/attention.py: solution",
                  "misconceptions/attention.py: misconception statement",
                  "test_attention.py: hidden test name test_heads_with_causal_mask", "saved outputs", "expected.pt"):
        assert words in found


def test_suites_keep_every_public_test_and_no_hidden_one(bundle):
    """Does each released suite hold exactly the public tests, as pytest collects them?"""
    for path in SUITES.glob("test_*.py"):
        tree = ast.parse(path.read_text())
        tests = {n.name: any("hidden" in ast.unparse(d) for d in n.decorator_list)
                 for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
        released = {n.name for n in ast.parse((bundle / "grader" / "suites" / path.name).read_text()).body
                    if isinstance(n, ast.FunctionDef)}
        assert {t for t, hidden in tests.items() if not hidden} <= released
        assert not released & {t for t, hidden in tests.items() if hidden}


def test_public_suite_removes_decorators_and_comments_and_refuses_what_it_cannot_strip():
    source = ('import pytest\n\n\ndef test_a():\n    pass\n\n\n# about the secret test\n@pytest.mark.points(2)\n'
              '@pytest.mark.hidden\ndef test_secret():\n    """The secret question?"""\n    assert 1\n\n\n'
              '@pytest.mark.hidden\nclass TestHidden:\n    def test_x(self):\n        pass\n\n\ndef test_b():\n    pass\n')
    public = public_suite(source)
    assert "secret" not in public and "TestHidden" not in public and "points(2)" not in public
    assert "def test_a" in public and "def test_b" in public and "\n\n\n\n" not in public
    for leftover in ("pytestmark = pytest.mark.hidden\n\ndef test_a():\n    pass\n",
                     "import pytest\n\n@pytest.mark.parametrize('x', [1, pytest.param(2, marks=pytest.mark.hidden)])\n"
                     "def test_a(x):\n    pass\n"):
        with pytest.raises(ReleaseError, match="hidden mark"):
            public_suite(leftover)


def test_release_refuses_a_folder_in_use(tmp_path):
    """A stale solutions/ in the output folder would change what check compares with: refused."""
    (tmp_path / "solutions").mkdir()
    proc = run_grader("release", "--out", str(tmp_path))
    assert proc.returncode == 2 and "not an empty folder" in proc.stderr


# ---------------------------------------------------------------- the course without solutions/


def test_a_course_without_solutions_needs_its_answer_book(bundle, tmp_path):
    """Does course.yaml load without solutions/ (a release) from its answers.pt, and say what to
    do when both are missing? A release cannot be written from a release."""
    course = load_course(bundle / "course.yaml")
    assert course.uses_answer_book and not load_course(ROOT / "course.yaml").uses_answer_book
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns(ANSWERS_FILE))
    with pytest.raises(CourseError, match=rf"no solutions/ folder and no {ANSWERS_FILE}.*Fix:"):
        load_course(copy / "course.yaml")
    proc = run_grader("release", "--course", str(bundle / "course.yaml"), "--out", str(tmp_path / "again"))
    assert proc.returncode == 2 and "cannot be recorded" in proc.stderr


def test_the_answer_book_gives_the_solutions_verdicts(bundle, with_solutions, tmp_path):
    """Graded by the release (public tests, against its recorded answers), does each sample get
    the status and message it gets against the solutions, and the same misconception hints?
    (A release gives no blame hint: the book has no answers for the student's own values.)"""
    in_release = by_name(grade_json(tmp_path / "out", *SAMPLES, extra=("--course", str(bundle / "course.yaml"))))
    compared = 0
    for path in map(str, SAMPLES):
        for ours, theirs in zip(with_solutions[path]["exercises"], in_release[path]["exercises"]):
            public = {t["name"]: t for t in ours["tests"] if not t["hidden"]}
            assert [t["name"] for t in theirs["tests"]] == list(public), (path, ours["id"])
            for test in theirs["tests"]:
                want = public[test["name"]]
                assert (test["status"], test["message"]) == (want["status"], want["message"]), (path, test["name"])
                if not any("itself is right" in h for h in want["hints"]):
                    assert test["hints"] == want["hints"], (path, test["name"])
                    compared += bool(want["hints"])
    assert compared >= 10  # misconception hints, from the book


def test_the_answer_book_answers_no_hidden_test(bundle, tmp_path):
    """The release's suites with the hidden tests put back: every public test of the reference
    passes, and every hidden one that asks the reference finds no answer in the book (its
    inputs were never recorded)."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    asking = set()
    for suite in SUITES.glob("test_*.py"):
        shutil.copy(suite, copy / "grader" / "suites" / suite.name)
        asking |= {n.name for n in ast.parse(suite.read_text()).body if isinstance(n, ast.FunctionDef)
                   and "reference" in [a.arg for a in n.args.args]}
    (result,) = grade_json(tmp_path / "out", SOLUTIONS, extra=("--course", str(copy / "course.yaml")))["submissions"]
    tests = [t for e in result["exercises"] for t in e["tests"]]
    hidden_asking = [t for t in tests if t["hidden"] and t["name"].split("[")[0] in asking]
    assert len(hidden_asking) >= 4
    for test in hidden_asking:
        assert test["status"] == "error" and "NotRecorded" in test["message"], test["name"]
    assert all(t["status"] == "passed" for t in tests if not t["hidden"])


def test_check_works_offline_in_the_bundle(bundle, tmp_path):
    """In a copy of the bundle, does `check` grade the exercises with the public tests only?"""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "exercises" / "softmax.py").write_text(WRONG_SOFTMAX)
    shutil.copy(SOLUTIONS / "attention_scores.py", copy / "exercises" / "attention_scores.py")
    proc = run_grader("check", cwd=copy)  # the bundle's grader and course.yaml: no solutions/ there
    assert proc.returncode == 0, proc.stderr
    assert "attention_scores  2/2" in proc.stdout and "not implemented yet" in proc.stdout
    assert "✗ test_large_logits_do_not_overflow" in proc.stdout and "NaN" in proc.stdout
    assert "test_repeated_calls_with_new_values" not in proc.stdout


# ---------------------------------------------------------------- the notebook


def test_the_notebook_follows_the_course(bundle):
    """Lesson, stub and check cell per exercise, in course.yaml order, and no outputs?"""
    nb = nbformat.read(bundle / "attention_step_by_step.ipynb", as_version=4)
    sources = [c.source for c in nb.cells]
    assert sources[1].endswith("from grader import check")
    positions = [sources.index(f'check("{i}")') for i in IDS]
    assert positions == sorted(positions)
    for exercise_id, position in zip(IDS, positions):
        assert f"def {FUNCTIONS.get(exercise_id, exercise_id)}(" in sources[position - 1]
        assert nb.cells[position - 2].cell_type == "markdown"
    assert "subtract the maximum" in sources[positions[1] - 2] and "``" not in sources[positions[1] - 2]


def test_the_released_notebook_runs_in_a_kernel_and_checks_its_functions(bundle, tmp_path):
    """Run top to bottom in a real kernel with two exercises done (one right, one wrong) and
    two as shipped, does every check cell show its table: passed, the failure's message, not
    implemented?"""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    notebook = fill(copy / "attention_step_by_step.ipynb", copy / "mine.ipynb",
                    {"attention_scores": notebook_solutions()["attention_scores"], "softmax": WRONG_SOFTMAX})
    nb = execute(notebook)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    shown = html_outputs(nb)
    assert sorted(shown) == sorted(f'check("{i}")' for i in IDS)
    assert all("<table>" in table and "score so far (public tests)" in table for table in shown.values())
    assert "✗" not in shown['check("attention_scores")'] and "attention_scores 2/2" in shown['check("attention_scores")']
    softmax = shown['check("softmax")']
    assert "✗" in softmax and "test_large_logits_do_not_overflow" in softmax and "NaN" in softmax
    assert "test_large_negative_logits" not in softmax  # a hidden test
    for exercise_id in ("apply_weights", "attention"):
        assert "not implemented yet" in shown[f'check("{exercise_id}")'] and exercise_id in shown[f'check("{exercise_id}")']


def test_self_check_lines_are_left_out_of_a_graded_notebook():
    """Are the check lines blanked (line numbers kept), and the student's code around them kept?"""
    from grader.intake.submission import strip_self_checks

    cell = ('from grader import check\nimport otter\ngrader = otter.Notebook("a.ipynb")\ndef f(x):\n'
            '    return check(x)\ncheck("softmax")\ngrader.check("softmax")\nx = 1; check("softmax")\n'
            'import torch, otter\n')
    assert strip_self_checks(cell).split("\n") == [
        "", "", "", "def f(x):", "    return check(x)", "", "", 'x = 1; check("softmax")', "import torch, otter", ""]
    assert strip_self_checks("check(\n") == "check(\n"  # does not parse: left for the grader to report


def test_the_check_table_shows_messages_and_hints_escaped():
    """Does the table show each failure's message and hints, as text (a student's exception
    message is not HTML), and one line for an exercise not started?"""
    from grader.selfcheck.notebook import CheckResult
    from grader.outputs.results import CaseResult, ExerciseResult, SubmissionResult

    softmax = ExerciseResult("softmax", "Softmax", 3, [
        CaseResult("test_worked_example", 2, "passed", False),
        CaseResult("test_large_logits", 1, "failed", False, "contains NaN <b>", ["subtract the max & retry"])])
    untouched = ExerciseResult("attention", "Attention", 3, [
        CaseResult(f"test_{n}", 1, "not_implemented", False, "attention is not implemented yet") for n in range(3)])
    shown = CheckResult(SubmissionResult("nb", [softmax, untouched], ["notebook cell 3 raised <oops>"]))._repr_html_()
    assert "contains NaN &lt;b&gt;" in shown and "<i>hint:</i> subtract the max &amp; retry" in shown
    assert "softmax 2/3" in shown and "test_worked_example" in shown and "✓" in shown and "✗" in shown
    assert shown.count("attention is not implemented yet") == 1 and "test_0" not in shown
    assert "<li>notebook cell 3 raised &lt;oops&gt;</li>" in shown and "score so far (public tests): 2/6" in shown


def test_a_filled_in_notebook_grades_like_the_same_files(with_solutions):
    """Does the released notebook, filled in, get exactly what the same code in .py files gets,
    with no note about its check cells?"""
    as_notebook, as_files = with_solutions["notebook"], with_solutions["files"]
    assert as_notebook["errors"] == [] and as_notebook["score"] < as_notebook["max_score"]

    def same_place(submission: dict) -> list:  # a hint quotes "cell [7], line 4" in a notebook, "line 4" in a file
        return [dict(t, hints=[re.sub(r"\(cell \[\d+\], line", "(line", h) for h in t["hints"]])
                for e in submission["exercises"] for t in e["tests"]]

    assert same_place(as_notebook) == same_place(as_files)
    assert [e["score"] for e in as_notebook["exercises"]] == [e["score"] for e in as_files["exercises"]]
