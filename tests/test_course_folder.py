"""A course is a folder: a second course, with its own file name (lab.yaml), its own folder
layout (course.yaml ``paths:``) and its own misconceptions, graded, checked, released and
published to otter through ``--course``, from a folder that is not its own."""
from __future__ import annotations

import json
import math
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, grade_json, otter_run, run_grader

from grader.course.load import load_course

ID = "dot_scores"  # the lab's one exercise: attention_scores under another name
LAB_HINT = "Lab hint: you doubled the scores"
DOUBLED = f"import math\n\n\ndef {ID}(Q, K):\n    return 2 * (Q @ K.transpose(-2, -1)) / math.sqrt(Q.size(-1))\n"
LAB_MISCONCEPTIONS = f'''"""The lab's own mistake for {ID}."""
import math

from grader.misconceptions import AnyOf, Misconception


def doubled(Q, K):
    return AnyOf(2 * (Q @ K.transpose(-2, -1)) / math.sqrt(Q.size(-1)))


MISCONCEPTIONS = [Misconception("doubled", "{LAB_HINT}: drop the factor 2.", doubled, r"\\b2\\s*\\*")]
'''
# The lab's folders, none where the attention course keeps its own.
PATHS = {"exercises": "stubs", "solutions": "reference", "suites": "checks"}


def renamed(path: Path) -> str:
    return path.read_text(encoding="utf-8").replace("attention_scores", ID)


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Path:
    """The lab's course file: ``lab.yaml`` with paths:, one exercise, a misconceptions/ folder."""
    folder = tmp_path_factory.mktemp("lab") / "lab"
    for key, source in (("exercises", ROOT / "exercises"), ("solutions", ROOT / "solutions")):
        (folder / PATHS[key]).mkdir(parents=True)
        (folder / PATHS[key] / f"{ID}.py").write_text(renamed(source / "attention_scores.py"))
    (folder / PATHS["solutions"] / "__init__.py").write_text('"""The lab\'s references."""\n')
    (folder / PATHS["suites"]).mkdir()
    (folder / PATHS["suites"] / "conftest.py").write_text(
        (ROOT / "grader" / "suites" / "conftest.py").read_text())
    (folder / PATHS["suites"] / f"test_{ID}.py").write_text(renamed(ROOT / "grader" / "suites" / "test_attention_scores.py"))
    (folder / "misconceptions").mkdir()  # found by default
    (folder / "misconceptions" / f"{ID}.py").write_text(LAB_MISCONCEPTIONS)
    attention = yaml.safe_load((ROOT / "course.yaml").read_text())
    course = {"title": "Lab, one exercise", "seed": 7, "paths": PATHS, "defaults": attention["defaults"],
              "exercises": [{"id": ID, "title": "Scores again", "points": 3.5}]}
    (folder / "lab.yaml").write_text(yaml.safe_dump(course, sort_keys=False))
    return folder / "lab.yaml"


@pytest.fixture(scope="session")
def max_score(lab) -> float:
    return sum(e["points"] for e in yaml.safe_load(lab.read_text())["exercises"])


def submission(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{ID}.py").write_text(source)
    return folder


def lab_hints(document: dict) -> list[str]:
    (result,) = document["submissions"]
    return [h for e in result["exercises"] for t in e["tests"] for h in t["hints"] if LAB_HINT in h]


def test_the_course_file_sets_every_folder(lab):
    """Do lab.yaml's paths: and its misconceptions/ folder resolve from the lab's folder?"""
    course = load_course(lab)
    assert course.file == lab.resolve() and course.root == lab.parent.resolve()
    for key, folder in PATHS.items():
        assert getattr(course.paths, key) == (lab.parent / folder).resolve()
    assert course.paths.misconceptions == lab.parent / "misconceptions"
    default = load_course(ROOT / "course.yaml")
    assert default.paths.suites == ROOT / "grader" / "suites" and default.paths.misconceptions == ROOT / "misconceptions"


def test_a_bad_paths_entry_is_one_clear_line(lab, tmp_path):
    """Is an unknown paths: key, or a misconceptions folder that is missing, a course error?"""
    for paths, expected in (({"stubs": "x"}, "paths.stubs: unknown key"),
                            ({"misconceptions": "nowhere"}, "paths.misconceptions")):
        broken = lab.parent / f"broken_{len(expected)}.yaml"
        data = yaml.safe_load(lab.read_text())
        data["paths"] = dict(PATHS, **paths)
        broken.write_text(yaml.safe_dump(data))
        proc = run_grader("grade", str(tmp_path), "--course", str(broken))
        assert proc.returncode == 2 and expected in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_suites_without_the_grader_plugin_say_the_fix(lab, tmp_path):
    """A suites folder without its conftest.py (the grader's pytest plugin): one line saying
    which file to add, and where."""
    course = tmp_path / "lab"
    shutil.copytree(lab.parent, course)
    (course / PATHS["suites"] / "conftest.py").unlink()
    proc = run_grader("grade", str(submission(tmp_path / "student", "x = 1\n")), "--course", str(course / lab.name))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f'pytest_plugins = ["grader.pytest_plugin"] in {course / PATHS["suites"]}' in proc.stderr


def test_grade_through_course(lab, max_score, tmp_path):
    """Does the lab grade its reference at full marks, and a doubled score with the lab's own hint?"""
    reference = lab.parent / PATHS["solutions"]
    document = grade_json(tmp_path / "ok", reference, extra=("--course", str(lab)))
    (result,) = document["submissions"]
    assert [e["id"] for e in result["exercises"]] == [ID]
    assert result["max_score"] == max_score and result["score"] == max_score
    wrong = submission(tmp_path / "wrong", DOUBLED)
    (tmp_path / "report").mkdir()
    document = grade_json(tmp_path / "report", wrong, extra=("--course", str(lab)))
    assert document["submissions"][0]["score"] < max_score
    hints = lab_hints(document)
    assert hints and "return 2 * (Q @ K" in hints[0]  # the student's line, quoted


def test_check_through_course(lab, max_score, tmp_path):
    """Does check --course check the lab's stubs from anywhere, and a folder given with --dir?"""
    proc = run_grader("check", "--course", str(lab), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ID in proc.stdout
    wrong = submission(tmp_path / "mine", DOUBLED)
    proc = run_grader("check", "--course", str(lab), "--dir", str(wrong), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert LAB_HINT in proc.stdout


@pytest.fixture(scope="session")
def bundle(lab, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lab_release") / "bundle"
    proc = run_grader("release", "--course", str(lab), "--out", str(out), cwd=tmp_path_factory.mktemp("elsewhere"))
    assert proc.returncode == 0, proc.stderr
    return out


def test_release_through_course(lab, bundle, max_score, tmp_path):
    """Does the lab's release load without --course, hold none of its solution or misconception
    code, and still give the lab's hint (from its answer book) in its check?"""
    course = load_course(bundle / "course.yaml")
    assert course.ids == (ID,) and course.max_score == max_score and course.uses_answer_book
    assert "paths" not in yaml.safe_load((bundle / "course.yaml").read_text())
    assert (bundle / "exercises" / f"{ID}.py").read_text() == (lab.parent / PATHS["exercises"] / f"{ID}.py").read_text()
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert f"grader/suites/test_{ID}.py" in names
    assert not {n for n in names if n.startswith((PATHS["solutions"], "misconceptions/", "solutions/"))}
    solution_line = "return scores / math.sqrt(d_k)"
    for path in bundle.rglob("*.py"):
        text = path.read_text()
        assert solution_line not in text and "def doubled(" not in text and LAB_HINT not in text, path
    proc = run_grader("check", cwd=bundle)
    assert proc.returncode == 0, proc.stderr
    assert ID in proc.stdout
    wrong = submission(tmp_path / "mine", DOUBLED)
    proc = run_grader("check", "--dir", str(wrong), cwd=bundle)
    assert proc.returncode == 0, proc.stderr
    assert LAB_HINT in proc.stdout


def test_otter_through_course(lab, max_score, tmp_path):
    """Does the lab's autograder.zip carry the lab (its file as course.yaml, its references,
    suites and misconceptions) and name that file to the plugin, and does otter run give the
    reference notebook full marks?"""
    pytest.importorskip("otter", reason="the lms extra is not installed: pip install -e '.[lms]'")
    out = tmp_path / "assignment"
    proc = run_grader("otter", "--course", str(lab), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(out / "autograder.zip") as archive:
        names = set(archive.namelist())
        config = json.loads(archive.read("otter_config.json"))
        carried = yaml.safe_load(archive.read("files/course/course.yaml"))
    assert {"files/course/course.yaml", f"files/course/solutions/{ID}.py", f"files/course/misconceptions/{ID}.py",
            f"files/course/grader/suites/test_{ID}.py"} <= names
    assert carried["title"] == yaml.safe_load(lab.read_text())["title"] and "paths" not in carried
    (plugin,) = config["plugins"]
    assert plugin["grader.lms.otter_plugin.GraderPlugin"]["course"] == "files/course/course.yaml"
    assert math.isclose(config["points_possible"], max_score)

    import nbformat

    (student,) = (out / "student").glob("*.ipynb")
    notebook = nbformat.read(student, as_version=4)
    reference = (lab.parent / PATHS["solutions"] / f"{ID}.py").read_text()
    for cell in notebook.cells:
        if cell.cell_type == "code" and f"def {ID}(" in cell.source:
            cell.source = reference
    handed_in = tmp_path / "handed_in.ipynb"
    nbformat.write(notebook, handed_in)
    graded = otter_run(out / "autograder.zip", handed_in, tmp_path / "otter_out")
    assert math.isclose(graded["score"], max_score), graded.get("output")
    assert {t["name"].split(" ")[0] for t in graded["tests"]} and all(
        re.search(ID, t["name"]) for t in graded["tests"])


@pytest.mark.parametrize("command", [("check",), ("grade", "."), ("merge", "r.json"), ("stats", "r.json"),
                                     ("release", "--out", "x"), ("otter", "--out", "x")])
def test_a_missing_course_file_is_one_line(lab, tmp_path, command):
    """Does every command answer a misnamed --course with one line and exit 2, never a traceback?"""
    (tmp_path / "r.json").write_text('{"submissions": []}')
    for wrong in (lab.parent / "course.yaml", lab.parent):  # the usual name, absent; a folder
        proc = run_grader(command[0], "--course", str(wrong), *command[1:], cwd=tmp_path)
        assert proc.returncode == 2, (command, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert str(wrong) in proc.stderr and "--course" in proc.stderr
