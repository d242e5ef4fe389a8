"""Step 1 of the grading path: load and validate ``course.yaml``.

The course is read once into frozen objects; everything downstream (suites, sandbox,
reports) takes its order, points, limits, tolerances and banned operations from here.
Every validation error is one line naming the file, the key and the fix.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from ..locations import PACKAGE
from ..errors import UsageError

ANSWERS_FILE = "answers.pt"  # a student release's recorded references (grader/release/answer_book.py)

COURSE_FILE = "course.yaml"
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

_TOP_KEYS = {"title", "seed", "sandbox", "feedback", "policy", "defaults", "exercises", "paths"}
# course.yaml ``paths:``: each folder of the course, relative to the folder of the course file.
DEFAULT_PATHS = {"exercises": "exercises", "solutions": "solutions", "suites": "grader/suites"}
MISCONCEPTIONS_FOLDER = "misconceptions"  # the course's own misconception modules, when the folder exists
_PATH_KEYS = {*DEFAULT_PATHS, "misconceptions"}
_FEEDBACK_KEYS = {"blame_earns_points", "hidden_tests"}
# Gradescope's visibility values (its results.json specification), for feedback.hidden_tests.
GRADESCOPE_VISIBILITY = ("hidden", "after_due_date", "after_published", "visible")
_POLICY_KEYS = {"allowed_imports", "blocked", "static_scan"}
_SANDBOX_KEYS = {"memory_mb", "cpu_seconds", "output_kb", "tmpfs_mb", "submission_seconds", "gpu_memory_fraction",
                 "gpu_slots"}
_DEFAULT_KEYS = {"time_limit", "tolerance", "device"}
_EXERCISE_KEYS = {"id", "title", "points", "function", "banned", "banned_kernels", "time_limit", "tolerance", "device", "uses"}
DEVICES = ("cpu", "cuda", "auto")


class CourseError(UsageError):
    """``course.yaml`` is missing or invalid; the message says where and how to fix it."""


@dataclass(frozen=True)
class Tolerance:
    """Element-wise closeness: ``|got - expected| <= atol + rtol * |expected|``."""

    rtol: float
    atol: float


@dataclass(frozen=True)
class Exercise:
    """One exercise: a file ``<id>.py`` defining ``function`` in exercises/ and solutions/."""

    id: str
    title: str
    points: float
    function: str
    banned: tuple[str, ...]
    time_limit: float
    """Seconds allowed for one call of the student's function, and for importing it."""
    tolerance: Mapping[str, Tolerance]
    """Per float dtype name (``"float32"``...)."""
    banned_kernels: tuple[str, ...] = ()
    """aten operators (``_softmax``) that may not run during a call, whatever route reaches them."""
    device: str = "cpu"
    """cpu, cuda or auto in course.yaml; resolved to cpu or cuda before grading (grader.course.devices)."""
    uses: tuple[str, ...] = ()
    """Earlier exercises this one builds on: when it fails, each is replaced by its reference
    in turn to find out whether the error comes from there (feedback)."""

    @property
    def filename(self) -> str:
        return f"{self.id}.py"


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of a worker process (course.yaml ``sandbox:``)."""

    memory_mb: float = 2048
    cpu_seconds: float = 60
    output_kb: float = 1024
    tmpfs_mb: float = 64
    submission_seconds: float = 60
    """Wall time of one submission, all its workers, calls and blame reruns together; past it,
    its remaining tests fail as ``timeout`` without running."""
    gpu_memory_fraction: float = 0.25
    """The share of the GPU's memory one worker may allocate (grading on CUDA)."""
    gpu_slots: float = 2
    """At most this many workers use the GPU at once (each has its own CUDA context)."""


# What a normal attention solution imports; each module with its public submodules. All are
# loaded by the zygote (or built into Python), so a worker can import them after it drops
# its privileges.
DEFAULT_ALLOWED_IMPORTS = ("torch", "numpy", "math", "random", "typing", "functools", "itertools",
                           "collections", "numbers", "warnings", "time", "__future__")
# Ways around the run-time bans or out of the sandbox inside those modules: torch's dispatcher,
# compilers and loaders, numpy's C and file interfaces, the string evaluators of typing and
# functools, and the reflective builtins.
DEFAULT_BLOCKED = (
    "torch.ops", "torch.library", "torch.overrides", "torch.utils", "torch.classes", "torch.compile",
    "torch.compiler", "torch.jit", "torch.fx", "torch.export", "torch.onnx", "torch.func", "torch.vmap",
    "torch.hub", "torch.package", "torch.multiprocessing", "torch.distributed", "torch.serialization",
    # reflective helpers (a getattr over a dotted string, a member accessor) and quantization
    # copies of the banned layers
    "torch.ao", "torch.quantization", "torch.nn.quantized", "torch.nn.quantizable", "torch.nn.qat",
    "torch.nn.intrinsic", "torch.nn.utils", "torch.autograd.profiler", "torch.autograd.profiler_util",
    "torch.profiler", "torch.testing", "torch.contrib", "torch.monitor", "torch.futures",
    "torch.load", "torch.save", "torch.from_file", "torch.UntypedStorage.from_file", "torch.TypedStorage.from_file",
    "torch.cuda.jiterator", "torch.cuda.set_per_process_memory_fraction",
    "torch.cuda.memory.set_per_process_memory_fraction",
    "numpy.ctypeslib", "numpy.lib", "numpy.f2py", "numpy.testing", "numpy.rec", "numpy.load", "numpy.save",
    "numpy.savez", "numpy.savez_compressed", "numpy.savetxt", "numpy.fromfile", "numpy.fromregex", "numpy.memmap",
    "numpy.loadtxt", "numpy.genfromtxt", "numpy.DataSource", "numpy.ndarray.tofile", "numpy.ndarray.dump",
    "typing.get_type_hints", "typing.ForwardRef", "functools.singledispatch", "functools.singledispatchmethod",
    "functools.update_wrapper", "functools.wraps",  # copy any object's __dict__ (a module's) onto another
    "builtins.getattr", "builtins.setattr", "builtins.delattr", "builtins.vars", "builtins.globals",
    "builtins.locals", "builtins.eval", "builtins.exec", "builtins.compile", "builtins.__import__",
    "builtins.breakpoint", "builtins.open", "builtins.help",
)


@dataclass(frozen=True)
class Policy:
    """What graded code may use (course.yaml ``policy:``), checked by the static scan
    (``grader/intake/allowlist.py``) in every file and notebook cell of a submission."""

    allowed_imports: tuple[str, ...] = DEFAULT_ALLOWED_IMPORTS
    """Modules that may be imported, each with its submodules; the submission's own files
    (``exercises.<name>``, ``<name>``) always may."""
    blocked: tuple[str, ...] = DEFAULT_BLOCKED
    """Dotted names inside those modules (and ``builtins.<name>``) that may not be used,
    each with everything under it."""
    static_scan: bool = True
    """False turns the scan off: only the sandbox and the run-time kernel bans hold. For a
    course that trusts its students' code, or to test the sandbox alone (tests/test_hostile.py)."""


@dataclass(frozen=True)
class CoursePaths:
    """The folders of a course (course.yaml ``paths:``), absolute, each resolved from the folder
    of the course file; the defaults are the attention course's layout."""

    exercises: Path
    """The stubs (``exercises``): what a release hands out and ``check --course`` checks."""
    solutions: Path
    """The reference solutions, ``<id>.py`` each (``solutions``)."""
    suites: Path
    """The test suites, ``test_<id>.py`` each (``grader/suites``)."""
    misconceptions: Path | None = None
    """The course's own misconception modules, ``<id>.py`` each holding ``MISCONCEPTIONS``
    (default: the course's ``misconceptions/`` folder if it has one); an exercise without a
    module there gets no hints."""

    @classmethod
    def default(cls, root: Path) -> "CoursePaths":
        own = root / MISCONCEPTIONS_FOLDER
        return cls(**{key: root / value for key, value in DEFAULT_PATHS.items()},
                   misconceptions=own if own.is_dir() else None)


@dataclass(frozen=True)
class Course:
    title: str
    seed: int
    exercises: tuple[Exercise, ...]
    root: Path = field(compare=False)
    """The folder holding the course file: every relative path of the course starts here."""
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    blame_earns_points: bool = False
    """When a failing test passes with the reference in place of an earlier exercise, does it
    earn its points (the error was already paid for there)? Default: feedback only."""
    policy: Policy = field(default_factory=Policy)
    """Imports and names graded code may use (the static scan's allowlist)."""
    hidden_tests: str = "after_published"
    """When Gradescope shows students the results of hidden tests (a Gradescope visibility);
    public tests are always shown at once."""
    file: Path | None = field(default=None, compare=False)
    """The course file itself, whatever its name (None: ``root/course.yaml``)."""
    paths: CoursePaths | None = field(default=None, compare=False)
    """Its folders (None: the default layout under ``root``)."""

    def __post_init__(self) -> None:
        if self.file is None:
            object.__setattr__(self, "file", self.root / COURSE_FILE)
        if self.paths is None:
            object.__setattr__(self, "paths", CoursePaths.default(self.root))

    @property
    def max_score(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(e.id for e in self.exercises)

    def exercise(self, exercise_id: str) -> Exercise:
        for e in self.exercises:
            if e.id == exercise_id:
                return e
        raise KeyError(exercise_id)

    def solution_path(self, exercise: Exercise) -> Path:
        return self.paths.solutions / exercise.filename

    def stub_path(self, exercise: Exercise) -> Path:
        return self.paths.exercises / exercise.filename

    @property
    def uses_answer_book(self) -> bool:
        """True for a student release, which has no ``solutions/`` folder: the tests then
        compare with the reference's answers recorded in its ``answers.pt``
        (``grader/release/answer_book.py``)."""
        return not self.paths.solutions.is_dir()

    @property
    def answers_path(self) -> Path:
        return self.root / ANSWERS_FILE

    def suite_path(self, exercise: Exercise) -> Path:
        return self.paths.suites / f"test_{exercise.id}.py"

    @functools.cached_property
    def version(self) -> str:
        """A digest of everything a grade depends on besides the submission: the course file,
        the suites folder (conftest included), the solutions (a release: its answer book) and the
        misconceptions. Results and reports carry it, so that a results file is resumed, or
        reports are merged, only with the course (and the version of it) that made them."""
        digest = hashlib.sha256()
        files = [self.file, *sorted(self.paths.suites.glob("*.py"))]
        files += [self.answers_path] if self.uses_answer_book else sorted(self.paths.solutions.rglob("*.py"))
        if self.paths.misconceptions is not None:
            files += sorted(self.paths.misconceptions.glob("*.py"))
        for file in files:
            try:
                data = file.read_bytes()
            except OSError:
                data = b"(unreadable)"
            digest.update(f"{file.relative_to(self.root) if file.is_relative_to(self.root) else file.name}\0{len(data)}\0".encode())
            digest.update(data)
        return digest.hexdigest()[:16]


def default_course_path() -> Path:
    """``./course.yaml`` when there is one, else the one of the repository holding grader/."""
    here = Path.cwd() / COURSE_FILE
    return here if here.is_file() else PACKAGE.parent / COURSE_FILE


def load_course(path: str | Path | None = None, *, check_torch_names: bool = True) -> Course:
    """Read, validate and freeze a course file. Raises CourseError with one clear line.

    ``check_torch_names=False`` skips what needs torch imported (banned names and kernels
    must exist): for a client that only reads ids and paths."""
    path = Path(path) if path is not None else default_course_path()
    if not path.is_file():
        what = "is a folder, not a course file" if path.is_dir() else "no such course file"
        raise CourseError(f"{path}: {what}. Fix: run from the course's folder or pass --course FILE "
                          "(its course.yaml, whatever it is named).")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise CourseError(f"{path}:{line} is not valid YAML ({getattr(exc, 'problem', exc)}). Fix the syntax there.") from None
    return _Validator(path, check_torch_names).course(data)


class _Validator:
    def __init__(self, path: Path, check_torch_names: bool = True):
        self.path = path
        self.check_torch_names = check_torch_names

    def fail(self, key: str, problem: str, fix: str) -> CourseError:
        return CourseError(f"{self.path}: {key}: {problem}. Fix: {fix}.")

    def mapping(self, value: Any, key: str, allowed: set[str]) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}", f"write {key} as 'name: value' lines")
        for name in value:
            if name not in allowed:
                raise self.fail(f"{key}.{name}" if key else str(name), "unknown key",
                                f"remove it or use one of {', '.join(sorted(allowed))}")
        return value

    def paths(self, value: Any, root: Path) -> CoursePaths:
        """``paths:``: folders relative to the course file's folder (or absolute)."""
        paths = CoursePaths.default(root)
        chosen = {}
        for key, folder in self.mapping(value, "paths", _PATH_KEYS).items():
            if not isinstance(folder, str) or not folder.strip():
                raise self.fail(f"paths.{key}", f"expected a folder, got {folder!r}",
                                f"write a folder relative to {self.path.name}'s folder, such as {key}")
            chosen[key] = (root / folder).resolve()
        if "misconceptions" in chosen and not chosen["misconceptions"].is_dir():
            raise self.fail("paths.misconceptions", f"{chosen['misconceptions']} is not a folder",
                            "create it (one <id>.py per exercise, holding MISCONCEPTIONS) or remove the key")
        return replace(paths, **chosen)

    def number(self, value: Any, key: str, *, positive: bool = True) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"expected a number, got {value!r}", "write a number such as 2 or 0.5")
        if positive and value <= 0:
            raise self.fail(key, f"must be positive, got {value!r}", "use a number greater than 0")
        if not positive and value < 0:
            raise self.fail(key, f"must not be negative, got {value!r}", "use 0 or a positive number")
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, got {value!r}", "write some text in quotes")
        return value

    def tolerances(self, value: Any, key: str, inherited: Mapping[str, Tolerance]) -> dict[str, Tolerance]:
        table = dict(inherited)
        for dtype, tol in self.mapping(value, key, set(FLOAT_DTYPES)).items():
            tol = self.mapping(tol, f"{key}.{dtype}", {"rtol", "atol"})
            for part in ("rtol", "atol"):
                if part not in tol:
                    raise self.fail(f"{key}.{dtype}", f"missing '{part}'", f"write {{rtol: 1.0e-5, atol: 1.0e-6}}")
            table[dtype] = Tolerance(rtol=float(self.number(tol["rtol"], f"{key}.{dtype}.rtol", positive=False)),
                                     atol=float(self.number(tol["atol"], f"{key}.{dtype}.atol", positive=False)))
        return table

    def kernel_name(self, name: Any, key: str) -> str:
        if not self.check_torch_names:
            return name
        import torch

        if not isinstance(name, str) or not name.isidentifier() or not hasattr(torch.ops.aten, name):
            raise self.fail(key, f"{name!r} is not an aten operator", "use a name from torch.ops.aten, such as _softmax")
        return name

    def earlier(self, value: Any, key: str, before: list) -> tuple[str, ...]:
        known = [e.id for e in before]
        if not isinstance(value, list) or any(v not in known for v in value):
            raise self.fail(key, f"{value!r} must list ids of exercises that come before this one",
                            f"use some of: {', '.join(known) or '(none yet)'}")
        return tuple(value)

    def device(self, value: Any, key: str) -> str:
        if value not in DEVICES:
            raise self.fail(key, f"{value!r} is not a device", f"use one of {', '.join(DEVICES)}")
        return value

    def dotted_names(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(key, "expected a list", "write one dotted name per '- ' line")
        for index, name in enumerate(value):
            if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
                raise self.fail(f"{key}[{index}]", f"{name!r} is not a dotted module name",
                                "write a name such as torch or torch.nn.functional")
        return tuple(value)

    def policy(self, value: Any) -> Policy:
        policy = dict(self.mapping(value, "policy", _POLICY_KEYS))
        static_scan = policy.pop("static_scan", True)
        if not isinstance(static_scan, bool):
            raise self.fail("policy.static_scan", f"expected true or false, got {static_scan!r}",
                            "write static_scan: true (the default) or false")
        return Policy(**{name: self.dotted_names(entries, f"policy.{name}") for name, entries in policy.items()},
                      static_scan=static_scan)

    def banned_name(self, name: Any, key: str) -> str:
        if self.check_torch_names and not (isinstance(name, str) and _resolves(name)):
            raise self.fail(key, f"{name!r} does not name anything in torch",
                            "use a full dotted name that exists, such as torch.nn.functional.softmax")
        return name

    def course(self, data: Any) -> Course:
        data = self.mapping(data if data is not None else {}, "", _TOP_KEYS)
        for required in ("title", "exercises"):
            if required not in data:
                raise self.fail(required, "missing", f"add a '{required}:' entry")
        title = self.text(data["title"], "title")
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise self.fail("seed", f"expected a non-negative whole number, got {seed!r}", "write a number such as 1234")
        feedback = self.mapping(data.get("feedback", {}), "feedback", _FEEDBACK_KEYS)
        blame_earns_points = feedback.get("blame_earns_points", False)
        if not isinstance(blame_earns_points, bool):
            raise self.fail("feedback.blame_earns_points", f"expected true or false, got {blame_earns_points!r}",
                            "write true or false")
        hidden_tests = feedback.get("hidden_tests", Course.hidden_tests)
        if hidden_tests not in GRADESCOPE_VISIBILITY:
            raise self.fail("feedback.hidden_tests", f"{hidden_tests!r} is not a Gradescope visibility",
                            f"use one of {', '.join(GRADESCOPE_VISIBILITY)}")
        policy = self.policy(data.get("policy", {}))
        sandbox = self.mapping(data.get("sandbox", {}), "sandbox", _SANDBOX_KEYS)
        limits = SandboxLimits(**{k: self.number(v, f"sandbox.{k}") for k, v in sandbox.items()})
        defaults = self.mapping(data.get("defaults", {}), "defaults", _DEFAULT_KEYS)
        time_limit = self.number(defaults.get("time_limit", 2.0), "defaults.time_limit")
        device = self.device(defaults.get("device", "cpu"), "defaults.device")
        tolerance = self.tolerances(defaults.get("tolerance", {}), "defaults.tolerance", {})
        for dtype in FLOAT_DTYPES:
            if dtype not in tolerance:
                raise self.fail("defaults.tolerance", f"no tolerance for {dtype}",
                                f"add '{dtype}: {{rtol: ..., atol: ...}}'")

        entries = data["exercises"]
        if not isinstance(entries, list) or not entries:
            raise self.fail("exercises", "expected a non-empty list", "list the exercises as '- id: ...' entries")
        exercises: list[Exercise] = []
        for index, entry in enumerate(entries):
            key = f"exercises[{index}]"
            entry = self.mapping(entry, key, _EXERCISE_KEYS)
            for required in ("id", "title", "points"):
                if required not in entry:
                    raise self.fail(f"{key}.{required}", "missing", f"add '{required}:' to this exercise")
            ex_id = self.text(entry["id"], f"{key}.id")
            if not ex_id.isidentifier():
                raise self.fail(f"{key}.id", f"{ex_id!r} is not a Python module name", "use letters, digits and _")
            key = f"exercises[{index}] ({ex_id})"
            if any(e.id == ex_id for e in exercises):
                raise self.fail(f"{key}.id", f"duplicate id {ex_id!r}", "give each exercise its own id")
            banned, kernels = entry.get("banned", []), entry.get("banned_kernels", [])
            for name, value in (("banned", banned), ("banned_kernels", kernels)):
                if not isinstance(value, list):
                    raise self.fail(f"{key}.{name}", "expected a list", "write one name per '- ' line")
            exercise = Exercise(
                id=ex_id,
                title=self.text(entry["title"], f"{key}.title"),
                points=self.number(entry["points"], f"{key}.points"),
                function=self.text(entry.get("function", ex_id), f"{key}.function"),
                banned=tuple(self.banned_name(b, f"{key}.banned[{i}]") for i, b in enumerate(banned)),
                banned_kernels=tuple(self.kernel_name(b, f"{key}.banned_kernels[{i}]") for i, b in enumerate(kernels)),
                time_limit=self.number(entry.get("time_limit", time_limit), f"{key}.time_limit"),
                device=self.device(entry.get("device", device), f"{key}.device"),
                uses=self.earlier(entry.get("uses", []), f"{key}.uses", exercises),
                tolerance=MappingProxyType(self.tolerances(entry.get("tolerance", {}), f"{key}.tolerance", tolerance)),
            )
            exercises.append(exercise)
        root = self.path.resolve().parent
        course = Course(title=title, seed=seed, exercises=tuple(exercises), sandbox=limits,
                        blame_earns_points=blame_earns_points, policy=policy, hidden_tests=hidden_tests,
                        root=root, file=self.path.resolve(), paths=self.paths(data.get("paths", {}), root))
        # Without a solutions/ folder (a student release) the references are the answers
        # recorded in answers.pt; with one, every exercise needs its solution file.
        if course.uses_answer_book and not course.answers_path.is_file():
            raise CourseError(f"{course.root}: no {course.paths.solutions.name}/ folder and no {ANSWERS_FILE} (the references' answers of a "
                              "student release). Fix: run from the course repository, or write the release again "
                              "with python -m grader release.")
        for index, exercise in enumerate(course.exercises):
            key = f"exercises[{index}] ({exercise.id})"
            files = [("test suite", course.suite_path(exercise))]
            if not course.uses_answer_book:
                files.insert(0, ("solution", course.solution_path(exercise)))
            for what, file in files:
                if not file.is_file():
                    shown = file.relative_to(course.root) if file.is_relative_to(course.root) else file
                    raise self.fail(key, f"its {what} {file} does not exist", f"create {shown} or correct the id")
        return course


def _resolves(dotted: str) -> bool:
    """Does a dotted name such as ``torch.nn.functional.softmax`` name a real object?"""
    parts = dotted.split(".")
    if parts[0] != "torch" or not all(p.isidentifier() for p in parts):
        return False
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False
