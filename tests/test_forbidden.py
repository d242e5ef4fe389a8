"""The static scan (grader/intake/allowlist.py): course.yaml's allowlist, checked in the grader on
every file and notebook cell of a submission before any of it runs."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, SOLUTIONS, by_name, exercise_scores, grade_json, make_submission, max_scores
from test_course import course_copy, edit  # noqa: F401 - fixture
from test_grading import ATTENTION_INLINE, WRONG
from test_misconceptions import CORPUS
from grader.course.load import CourseError, Policy, load_course
from grader.intake.allowlist import LEFT_OUT, MODULE_ATTRIBUTES, exercise_violations, scan_notebook
from grader.release.bundle import course_notebook
from grader.intake.submission import load_submission

COURSE = load_course()
SOFTMAX_BANNED = COURSE.exercise("softmax").banned
ONLY = "Only torch, numpy, math, random, typing, functools, itertools, collections, numbers, " \
       "warnings, time, __future__ and your own exercise files can be imported"
ONLY_IN_A_NOTEBOOK = f"Only {', '.join(COURSE.policy.allowed_imports)} can be imported in a notebook"


def violations(source: str, banned=SOFTMAX_BANNED, policy: Policy = COURSE.policy, file: str = "softmax.py"):
    """The violations of one file scanned alone, as the exercise of its name."""
    name = Path(file).stem
    return exercise_violations({name: (file, source)}, name, banned, policy)


def only(source: str, **kwargs):
    """The one violation of a source (failing the test if there is none)."""
    found = violations(source, **kwargs)
    assert found, source
    return found[0]


# ---------------------------------------------------------------- an exercise's banned names


@pytest.mark.parametrize("source", [
    "import torch\ndef softmax(x, dim=-1):\n    return torch.softmax(x, dim)\n",
    "import torch.nn.functional as F\ndef softmax(x, dim=-1):\n    return F.softmax(x, dim=dim)\n",
    "from torch.nn.functional import softmax as sm\ndef softmax(x, dim=-1):\n    return sm(x, dim)\n",
    "def softmax(x, dim=-1):\n    return x.softmax(dim)\n",
    "import torch\ndef softmax(x, dim=-1):\n    return torch.nn.Softmax(dim=dim)(x)\n",
    "import torch\ndef softmax(x, dim=-1):\n    return x.log_softmax(dim).exp()\n",
    "import torch\ndef softmax(x, dim=-1):\n    return torch.nn.functional.softmin(-x, dim)\n",
    "import torch\nF = torch.nn.functional\ndef softmax(x, dim=-1):\n    return F.softmax(x, dim)\n",
    "from torch.nn.functional import *\ndef softmax(x, dim=-1):\n    return log_softmax(x, dim).exp()\n",
    "import torch\ndef softmax(x, dim=-1):\n    return getattr(torch, 'softmax')(x, dim)\n",
    "import torch\ndef softmax(x, dim=-1):\n    return eval('torch.soft' + 'max')(x, dim)\n",
    "import torch\ndef softmax(x, dim=-1):\n    return torch._softmax(x, dim, False)\n",
    "import torch\ndef softmax(x, dim=-1):\n    return torch.ops.aten._softmax(x, dim, False)\n",
    # the same object under another module's name, and a module reached through another one
    "from torch.nn.modules.activation import Softmax\ndef softmax(x, dim=-1):\n    return Softmax(dim)(x)\n",
    "import torch.nn.modules.activation as a\ndef softmax(x, dim=-1):\n    return a.F.softmax(x, dim)\n",
    "import torch\ndef softmax(x, dim=-1):\n    return torch.nn.functional.torch.softmax(x, dim)\n",
])
def test_every_route_is_caught(source):
    """Is each way of calling a library softmax flagged, with its line?"""
    found = violations(source)
    assert found, source
    assert found[0].line >= 1 and found[0].code


@pytest.mark.parametrize("source", [
    "import torch\n# torch.softmax would be cheating\ndef softmax(x, dim=-1):\n    '''not torch.softmax'''\n"
    "    e = torch.exp(x - x.amax(dim=dim, keepdim=True))\n    return e / e.sum(dim=dim, keepdim=True)\n",
    "def softmax(x, dim=-1):\n    softmax = 'torch.nn.functional.softmax'\n    return x\n",
    "import torch\ndef softmax(x, dim=-1):\n    return x\nif __name__ == '__main__':\n    print(torch.softmax(torch.ones(3), 0))\n",
    "from exercises.softmax import softmax\nimport exercises.softmax\ny = exercises.softmax.softmax\n",
    "import torch\ndef softmax(x, dim=-1):\n    return x\nif __name__ == '__main__':\n"
    "    import os\n    print(open(os.devnull).read(), getattr(torch, 'exp'))\n",
])
def test_comments_strings_own_names_and_main_block_are_fine(source):
    """Are comments, strings, the student's own names and the __main__ block left alone?"""
    assert violations(source) == []


def test_nothing_banned_means_nothing_flagged():
    """Does an exercise without a banned list allow every library function?"""
    assert violations("import torch\ny = torch.softmax(torch.ones(2), 0)\n", banned=()) == []


def test_banned_message_names_the_file_line_and_what_to_do():
    """Does a banned call's violation say where, what, and that the exercise is to write it?"""
    found = only("import torch\n\ndef softmax(x, dim=-1):\n    return torch.softmax(x, dim)\n", file="exercises/softmax.py")
    assert str(found) == ("exercises/softmax.py line 4 uses torch.softmax, which this exercise forbids: "
                          "return torch.softmax(x, dim). This exercise is about writing it yourself.")


# ---------------------------------------------------------------- imports: an allowlist


@pytest.mark.parametrize("module", ["os", "sys", "gc", "inspect", "ctypes", "importlib", "builtins", "subprocess",
                                    "socket", "pickle", "io", "types", "threading", "operator", "signal",
                                    "grader.sandbox.worker", "solutions.softmax", "antigravity"])
def test_only_allowed_modules_can_be_imported(module):
    """Is every module outside the allowlist refused, by import and by from-import, with the list?"""
    for source in (f"import {module}\n", f"from {module} import x\n", f"import {module} as m\n"):
        found = only(source)
        assert found.what == f"imports {module}, which graded code may not import"
        assert found.fix == ONLY and found.line == 1 and found.code == source.strip()


@pytest.mark.parametrize("source", [
    "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\nfrom torch import Tensor, nn\n",
    "import numpy as np\nimport math\nimport random\nimport time\n",
    "from __future__ import annotations\nfrom typing import Optional, Tuple\n",
    "import functools, itertools, collections, numbers, warnings\nfrom collections.abc import Sequence\n",
    "from exercises.softmax import softmax\nfrom exercises import attention_scores\nimport exercises.apply_weights\n",
    "from . import softmax\nfrom .softmax import softmax\n",
])
def test_allowed_imports_pass(source):
    """Do the course's modules, their public submodules and the student's own files import freely?"""
    assert violations(source) == []


def test_a_course_can_widen_or_narrow_the_allowlist():
    """Does the policy decide: os (and os.path, which is posixpath) allowed when listed,
    numpy refused when not?"""
    wider = Policy(allowed_imports=(*Policy().allowed_imports, "os"))
    assert violations("import os\nos.getcwd()\nos.path.join('a', 'b')\n", policy=wider) == []
    narrower = Policy(allowed_imports=("torch",))
    assert only("import numpy\n", policy=narrower).fix == "Only torch and your own exercise files can be imported"


def test_relative_import_beyond_the_submission_is_refused():
    """Is ``from .. import x`` (outside the exercises package) refused?"""
    assert only("from .. import solutions\n").what == "imports from outside your submission"


# ---------------------------------------------------------------- names inside allowed modules


@pytest.mark.parametrize("source, blocked", [
    ("import torch.utils.data\n", "torch.utils"),
    ("from torch import library\n", "torch.library"),
    ("import torch\nlib = torch.library.Library('aten', 'IMPL')\n", "torch.library"),
    ("import torch\nmode = torch.overrides.TorchFunctionMode\n", "torch.overrides"),
    ("import torch\nf = torch.compile(abs)\n", "torch.compile"),
    ("import torch\n\n@torch.jit.script\ndef f(x):\n    return x\n", "torch.jit"),
    ("import torch\nw = torch.load('weights.pt')\n", "torch.load"),
    ("import torch\ntorch.cuda.set_per_process_memory_fraction(1.0)\n", "torch.cuda.set_per_process_memory_fraction"),
    ("import numpy as np\nc = np.ctypeslib\n", "numpy.ctypeslib"),
    ("import typing\nhints = typing.get_type_hints(len)\n", "typing.get_type_hints"),
    ("from functools import singledispatch\n", "functools.singledispatch"),
])
def test_blocked_names_are_refused(source, blocked):
    """Are torch's dispatcher, compilers and loaders, numpy's C side and the string
    evaluators refused, by whatever import or attribute they are reached?"""
    found = only(source)
    assert found.what.endswith(f" {blocked}, which graded code may not use"), found
    assert "write it with tensor operations" in found.fix


@pytest.mark.parametrize("source, what, fix", [
    ("import torch\nf = getattr(torch, name)\n", "uses getattr()", "by its name, e.g. torch.exp(x)"),
    ("f = getattr\n", "uses getattr()", "by its name"),
    ("setattr(model, 'scale', 2)\n", "uses setattr()", "self.scale = scale"),
    ("delattr(model, 'scale')\n", "uses delattr()", "del self.cache"),
    ("import torch\nf = vars(torch)['softmax']\n", "uses vars()", "Use the names themselves"),
    ("f = globals()['torch']\n", "uses globals()", "Use the names themselves"),
    ("here = locals()\n", "uses locals()", "Use the names themselves"),
    ("f = eval('torch.exp')\n", "uses eval()", "instead of building it as a string"),
    ("exec('import os')\n", "uses exec()", "instead of building it as a string"),
    ("code = compile('1', 'x', 'eval')\n", "uses compile()", "instead of building it as a string"),
    ("os = __import__('os')\n", "uses __import__", "Double-underscore names"),
    ("breakpoint()\n", "uses breakpoint()", "debugger"),
    ("text = open('/etc/passwd').read()\n", "uses open()", "reads and writes no files"),
    ("import torch\nf = torch.__dict__['softmax']\n", "uses .__dict__", "Read the attribute by its name"),
    ("kind = x.__class__\n", "uses .__class__", "type(x)"),
    ("subclasses = ().__class__.__base__.__subclasses__()\n", "uses .__subclasses__", "Double-underscore names"),
    ("b = __builtins__\n", "uses __builtins__", "Double-underscore names"),
    ("import torch\ntorch.Tensor.__eq__ = None\n", "uses .__eq__", "Double-underscore names"),
    ("def f():\n    try:\n        1 / 0\n    except ZeroDivisionError as e:\n        return e.__traceback__.tb_frame.f_back\n",
     "uses .f_back", "does not inspect the running program"),
    ("def g():\n    yield 1\nfound = g().gi_frame.f_globals\n", "uses .f_globals", "does not inspect the running program"),
    ("code = g.gi_code.co_consts\n", "uses .co_consts", "does not inspect the running program"),
    ("match F:\n    case object(softmax=found):\n        pass\n", "reads attributes by name in a case pattern",
     "Read the attribute directly"),
])
def test_reflection_is_refused(source, what, fix):
    """Are reflective builtins, dunder attributes, frames and by-name lookups refused, with
    the line and what to write instead?"""
    found = only(source)
    assert found.what.startswith(what) and fix in found.fix, found
    assert found.file == "softmax.py" and found.line >= 1 and found.code


@pytest.mark.parametrize("source, what", [
    ("import torch\nmodules = torch.sys.modules\n", "reaches the module sys through torch.sys.modules"),
    ("import torch\ntorch.os.system('ls')\n", "reaches the module os through torch.os.system"),
    ("from torch import sys\n", "reaches the module sys through torch.sys"),
    ("import torch.nn.functional as F\nos = F.importlib.import_module('os')\n", "reaches the module importlib"),
    ("from torch.nn.functional import *\nos = importlib.import_module('os')\n", "reaches the module importlib"),
    ("import typing\ns = typing.sys\n", "reaches the module sys through typing.sys"),
    ("import torch\nm = [torch][0]\nmodules = m.sys.modules\n", "uses .sys, which leads to a module"),
    ("import torch\nm = [torch][0]\nlib = m.library\n", "uses .library, which leads to a module"),
    ("import numpy as np\np = np.zeros(2).ctypes\n", "uses .ctypes, which leads to a module"),
    ("import numpy as np\nnp.zeros(3).tofile('/tmp/x')\n", "uses .tofile, which leads to a module or name"),
    ("import torch\ns = torch.ByteStorage.from_file('/etc/passwd', False, 8)\n", "uses .from_file, which leads"),
    ("import exercises.helpers as h\nlib = h.torch.library\n", "uses .library, which leads to a module"),
    ("from exercises.helpers import *\nlib = torch.library\n", "uses .library, which leads to a module"),
])
def test_modules_reached_through_allowed_ones_are_refused(source, what):
    """Is a refused module or name refused when reached through an allowed module, through
    another file of the submission, or through any object the scan cannot follow?"""
    assert only(source).what.startswith(what)


@pytest.mark.parametrize("source, what", [
    ("from torch.autograd.profiler_util import attrgetter\n",
     "uses torch.autograd.profiler_util.attrgetter, which is operator.attrgetter"),
    ("import torch.autograd.profiler_util as p\nget = p.attrgetter('sys')\n", "which is operator.attrgetter"),
    ("import typing\nslot = typing.WrapperDescriptorType\n", "uses typing.WrapperDescriptorType, which is builtins"),
    ("import dataclasses\n", "imports dataclasses, which graded code may not import"),
])
def test_an_alias_is_judged_by_what_it_is(source, what):
    """Is a function or class re-exported by an allowed module judged by where it comes from,
    not by the name it is reached under (operator.attrgetter as a torch name gives reflection
    through strings)? (The course blocks torch's profilers besides: allowed here, to see the rule.)"""
    policy = Policy(blocked=tuple(b for b in COURSE.policy.blocked if "profiler" not in b))
    assert what in only(source, policy=policy).what


def test_a_subclass_of_a_banned_class_is_banned_too():
    """Is a library subclass of a banned class (torch.ao's quantizable MultiheadAttention, with
    torch.ao allowed) refused as the banned class?"""
    policy = Policy(blocked=tuple(b for b in COURSE.policy.blocked if b != "torch.ao"))
    source = "from torch.ao.nn.quantizable import MultiheadAttention\n"
    found = only(source, banned=("torch.nn.MultiheadAttention",), policy=policy, file="attention.py")
    assert "torch.nn.MultiheadAttention, which this exercise forbids" in found.what


@pytest.mark.parametrize("source", [
    "import functools\ntotal = functools.reduce(lambda a, b: a + b, [1, 2])\n",  # defined in _functools
    "import warnings\nwarnings.warn('slow')\n",  # defined in _warnings
    "import torch.nn.functional as F\ny = F.gelu\n",  # defined in torch._C._nn
    "import torch\ng = torch.Generator\n",
])
def test_an_alias_from_an_allowed_modules_internals_is_fine(source):
    """Are functions that allowed modules define in their C parts (_functools, torch._C) fine?"""
    assert violations(source) == []


@pytest.mark.parametrize("source, what", [
    ("import torch\nstub = torch._C._get_tracing_state\n", "uses torch._C._get_tracing_state, a private part of torch"),
    ("import random\nos = random._os\n", "uses random._os, a private part of random"),
    ("import torch._dynamo\n", "imports torch._dynamo, a private part of torch"),
    ("import torch\nm = [torch][0]\nc = m._C\n", "uses ._C, a private name"),
])
def test_private_names_of_libraries_are_refused(source, what):
    """Are the underscore names of libraries refused, whatever object they are read from?"""
    found = only(source)
    assert found.what == what and "starts with _" in found.fix


def test_a_normal_module_class_is_fine():
    """Does an nn.Module written as students write them (super().__init__(), dunder methods,
    self._private, model.eval(), type(x).__name__, hasattr) pass?"""
    source = '''import math
import torch
from torch import nn


class Attention(nn.Module):
    __slots__ = ()

    def __init__(self, d_k: int):
        super().__init__()
        nn.Module.__init__(self)
        self._scale = 1 / math.sqrt(d_k)

    def __repr__(self):
        return f"{type(self).__name__}({self._scale})"

    def forward(self, Q, K):
        assert hasattr(Q, "shape"), Q.dist(K)
        return Q @ K.mT * self._scale


model = Attention(4).eval()
'''
    assert violations(source, file="attention_scores.py", banned=()) == []


def test_violation_message_names_the_file_line_and_fix():
    """Does a violation say which file, which line, what the line does and what to do instead?"""
    found = only("import math\nimport os\n", file="exercises/softmax.py")
    assert (found.file, found.line, found.code) == ("exercises/softmax.py", 2, "import os")
    assert str(found) == f"exercises/softmax.py line 2 imports os, which graded code may not import: import os. {ONLY}."


# ---------------------------------------------------------------- helper files


HELPERS = {
    "helpers": ("exercises/helpers.py", "import math\nimport os\n\n\ndef stable_exp(x, dim):\n"
                                        "    return (x - x.amax(dim, keepdim=True)).exp()\n"),
    "softmax": ("exercises/softmax.py", "from exercises.helpers import stable_exp\n\n\ndef softmax(x, dim=-1):\n"
                                        "    e = stable_exp(x, dim)\n    return e / e.sum(dim, keepdim=True)\n"),
    "attention": ("exercises/attention.py", "from .softmax import softmax\n"),
    "apply_weights": ("exercises/apply_weights.py", "def apply_attention_weights(weights, V):\n    return weights @ V\n"),
    "unused": ("exercises/unused.py", "import subprocess\n"),
}


def test_a_helper_file_forbids_every_exercise_that_imports_it():
    """Does a violation in a helper reach the exercise that imports it and the one that
    imports that exercise, and no other (nor does an unused helper count)?"""
    for exercise in ("softmax", "attention"):
        found = exercise_violations(HELPERS, exercise, COURSE.exercise(exercise).banned, COURSE.policy)
        assert [(v.file, v.line, v.code) for v in found] == [("exercises/helpers.py", 2, "import os")], exercise
    assert exercise_violations(HELPERS, "apply_weights", (), COURSE.policy) == []


def test_a_helper_is_checked_with_the_banned_names_of_the_exercise_importing_it():
    """Is a banned call hidden in a helper file caught for the exercise that imports it?"""
    sources = {"tricks": ("tricks.py", "import torch.nn.functional as F\nfused = F.scaled_dot_product_attention\n"),
               "attention": ("attention.py", "import tricks\n\n\ndef attention(Q, K, V, mask=None):\n"
                                             "    return tricks.fused(Q, K, V), None\n")}
    found = exercise_violations(sources, "attention", COURSE.exercise("attention").banned, COURSE.policy)
    assert [(v.file, v.line) for v in found] == [("tricks.py", 2)]
    assert "scaled_dot_product_attention, which this exercise forbids" in found[0].what


def test_a_file_named_like_a_python_module_cannot_be_imported_bare():
    """Is ``import typing`` of the student's own typing.py refused (Python would give its own)?"""
    sources = {"typing": ("typing.py", "X = 1\n"), "helpers": ("helpers.py", "Y = 2\n"),
               "softmax": ("softmax.py", "import typing\nimport helpers\n")}
    found = exercise_violations(sources, "softmax", (), COURSE.policy)
    assert [(v.line, v.what) for v in found] == [(1, "imports typing, which is also the name of a module of Python's")]
    assert "Rename your file typing.py" in found[0].fix


# ---------------------------------------------------------------- notebooks


def test_notebook_cells_are_scanned_as_one_program():
    """Are a notebook's cells named as Jupyter numbers them (here saved without counts:
    Restart & Run All's numbers, blank and Markdown cells not counted), aliases shared between
    cells, a bad cell's message complete in a notebook's words, and the __main__ block scanned
    (a notebook runs as __main__)?"""
    cells = ("", "import torch.nn.functional as F\n", "x = 1\nloader = F.importlib\n",
             "def softmax(x, dim=-1):\n    return F.softmax(x, dim)\n",
             "if __name__ == '__main__':\n    import os\n")
    scan = scan_notebook(cells, COURSE.policy)
    assert sorted(scan.problems) == [2, 4]
    assert scan.skipped()[2] == ("cell [2] line 2 reaches the module importlib through "
                                 f"torch.nn.functional.importlib, which graded code may not use: loader = F.importlib. "
                                 f"{ONLY_IN_A_NOTEBOOK}. The cell was not run.")
    assert scan.defined_in["softmax"] == 3 and scan.defined_in["loader"] == 2
    banned = scan.banned("softmax", SOFTMAX_BANNED)
    assert [(v.file, v.line) for v in banned] == [("cell [3]", 2)]
    named = scan_notebook(cells, COURSE.policy, ("", "cell [7]", "cell [8]", "cell [9]", "code cell 5"))
    assert named.skipped()[2].startswith("cell [8] line 2 ") and named.skipped()[4].startswith("code cell 5 line 2 ")


@pytest.mark.parametrize("flavour", ["grader", "otter"])
def test_course_notebook_and_carol_pass_the_scan(tmp_path, flavour):
    """Do the released course notebook (stubs, set-up and check cells, read as a handed-in
    notebook is) and the sample notebook (magics, shell lines) pass?"""
    nbformat.write(course_notebook(COURSE, flavour=flavour), tmp_path / "release.ipynb")
    for path in (tmp_path / "release.ipynb", ROOT / "examples" / "submissions" / "carol.ipynb"):
        notebook = load_submission(path.name, path).notebook
        assert scan_notebook(tuple(notebook), COURSE.policy).problems == {}, path


# ---------------------------------------------------------------- correct work is never caught


def _bench_correct() -> dict[str, list[str]]:
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.CORRECT


def honest_sources() -> list[tuple[str, str, str]]:
    """(label, exercise, source): every correct or honestly wrong spelling in the repository."""
    ids = set(COURSE.ids)
    found = [(f"solutions/{i}", i, (SOLUTIONS / f"{i}.py").read_text()) for i in COURSE.ids]
    found += [(str(p.relative_to(ROOT)), p.stem, p.read_text()) for p in sorted((ROOT / "examples").rglob("*.py"))
              if p.stem in ids and p.relative_to(ROOT).parts[-3:] != ("grace", "exercises", "softmax.py")]  # F.softmax
    bob = load_submission("bob.zip", ROOT / "examples" / "submissions" / "bob.zip")
    found += [(f"bob.zip {name}", name, f.text) for name, f in bob.sources.items()]
    found += [(f"exercises/{i}", i, (ROOT / "exercises" / f"{i}.py").read_text()) for i in COURSE.ids]
    found += [(f"bench.CORRECT[{i}][{n}]", i, s) for i, spellings in _bench_correct().items() for n, s in enumerate(spellings)]
    found += [(f"misconception {name}", exercise, source) for name, (exercise, _, source) in CORPUS.items()]
    found += [(f"test_grading {name}", i, s) for name, (_, files) in WRONG.items() for i, s in files.items()]
    return found + [("ATTENTION_INLINE", "attention", ATTENTION_INLINE)]


HONEST = honest_sources()


@pytest.mark.parametrize("label, exercise, source", HONEST, ids=[label for label, _, _ in HONEST])
def test_every_correct_or_honest_spelling_passes_the_scan(label, exercise, source):
    """Does no solution, sample, benchmark spelling or misconception of the repository trip
    the scan (so a wrong answer gets its hint, not ``forbidden``)?"""
    assert violations(source, banned=COURSE.exercise(exercise).banned, file=f"{exercise}.py") == []


# ---------------------------------------------------------------- the policy in course.yaml


@pytest.mark.parametrize("change, words", [
    (lambda d: d["policy"].update(allowed_imports="torch"), ["policy.allowed_imports", "expected a list"]),
    (lambda d: d["policy"]["blocked"].append("torch utils"), ["policy.blocked[", "not a dotted module name"]),
    (lambda d: d["policy"].update(colour="red"), ["policy.colour", "unknown key"]),
])
def test_invalid_policy_is_one_clear_line(course_copy, change, words):  # noqa: F811 - fixture
    """Does a broken policy in course.yaml give one line naming the key and a fix?"""
    path = edit(course_copy, change)
    with pytest.raises(CourseError) as error:
        load_course(path)
    message = str(error.value)
    assert "\n" not in message and "Fix:" in message and all(word in message for word in words)


def test_without_a_policy_the_defaults_apply(course_copy):  # noqa: F811 - fixture
    """Does a course without ``policy:`` get the defaults, which course.yaml spells out?"""
    assert load_course(edit(course_copy, lambda d: d.pop("policy"))).policy == Policy() == COURSE.policy


ZYGOTE_VIEW = """
import json, sys, types
import grader.sandbox.zygote  # what every worker has loaded
from grader.course.load import load_course
from grader.intake.allowlist import _module_problem
policy = load_course().policy
missing = [m for m in policy.allowed_imports if m not in sys.modules and m not in sys.builtin_module_names]
reached, seen = {}, set()
def walk(module):
    seen.add(module.__name__)
    for name, value in list(vars(module).items()):
        if isinstance(value, types.ModuleType) and not name.startswith("_"):
            if _module_problem(value.__name__, policy):
                reached.setdefault(name, value.__name__)
            elif value.__name__ not in seen:
                walk(value)
for m in policy.allowed_imports:
    if m in sys.modules:
        walk(sys.modules[m])
print(json.dumps({"missing": missing, "reached": reached}))
"""


@pytest.fixture(scope="module")
def zygote_view() -> dict:
    """What a worker's allowed modules hold, seen in a process that loads what the zygote loads."""
    proc = subprocess.run([sys.executable, "-c", ZYGOTE_VIEW], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_allowed_modules_are_loaded_by_the_zygote(zygote_view):
    """Can a worker import every allowed module after its privilege drop (loaded by the
    zygote, or built into Python)?"""
    assert zygote_view["missing"] == []


def test_every_refused_module_inside_an_allowed_one_is_known_by_name(zygote_view):
    """Is each attribute of an allowed module that holds a refused module (torch.sys,
    dataclasses.inspect...) in MODULE_ATTRIBUTES (refused on any object) or knowingly left out?"""
    blocked = {entry.rpartition(".")[2] for entry in COURSE.policy.blocked}
    unknown = {name: module for name, module in zygote_view["reached"].items()
               if name not in MODULE_ATTRIBUTES | blocked | LEFT_OUT}
    assert unknown == {}


# ---------------------------------------------------------------- graded end to end


NOTEBOOK_CELLS = [
    "# Attention\nMy solutions.",
    "import math\nimport torch\nCONFIG = {'scale': 1.0}",
    "def attention_scores(Q, K):\n    return Q @ K.transpose(-2, -1) / math.sqrt(Q.size(-1)) * CONFIG['scale']",
    "import os\nCONFIG['scale'] = 0.0  # would break attention_scores if this cell ran",
    "import sys\n\ndef softmax(x, dim=-1):\n    e = (x - x.amax(dim=dim, keepdim=True)).exp()\n"
    "    return e / e.sum(dim=dim, keepdim=True)",
    "def apply_attention_weights(weights, V):\n    return weights @ V",
    ATTENTION_INLINE,
]


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, dict]:
    """A submission whose softmax imports a helper with a violation, and a notebook with two
    bad cells, graded in one batch by the CLI."""
    root = tmp_path_factory.mktemp("scan")
    make_submission(root / "helper", {name: text for name, (_, text) in HELPERS.items() if name != "attention"}
                    | {"attention": (SOLUTIONS / "attention.py").read_text()}, layout="exercises")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(NOTEBOOK_CELLS[0])] + [nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS[1:]]
    nbformat.write(nb, root / "notebook.ipynb")
    return by_name(grade_json(tmp_path_factory.mktemp("out"), root))


def messages(submission: dict, exercise: str) -> set[str]:
    return {t["message"] for e in submission["exercises"] if e["id"] == exercise for t in e["tests"]}


def test_helper_violation_costs_the_exercises_that_import_it(graded, reference_report):
    """Are softmax (imports the helper) and attention (imports softmax) forbidden, with the
    helper's line and the fix, and the two others at full marks?"""
    submission = graded["helper"]
    scores, full = exercise_scores(submission), max_scores(reference_report)
    assert scores == dict(full, softmax=0, attention=0)
    for exercise, path in (("softmax", "exercises/softmax.py"), ("attention", "exercises/attention.py")):
        assert {t["status"] for e in submission["exercises"] if e["id"] == exercise for t in e["tests"]} == {"forbidden"}
        assert messages(submission, exercise) == {
            f"exercises/helpers.py line 2 imports os, which graded code may not import: import os. {ONLY}. "
            f"{path} imports that file (directly or through your other files), so this exercise scores 0 until "
            "that line is gone."}


def test_notebook_cell_with_a_violation_is_not_run(graded, reference_report):
    """Is a bad cell skipped (its change never happens), noted in errors with its line and fix,
    and an exercise defined in one forbidden with that message, the others at full marks?"""
    submission = graded["notebook.ipynb"]
    scores, full = exercise_scores(submission), max_scores(reference_report)
    assert scores == dict(full, softmax=0)
    assert submission["errors"] == [  # cells named as Restart & Run All numbers them: Markdown has no number
        f"cell [3] line 1 imports os, which graded code may not import: import os. {ONLY_IN_A_NOTEBOOK}. "
        "The cell was not run.",
        f"cell [4] line 1 imports sys, which graded code may not import: import sys. {ONLY_IN_A_NOTEBOOK}. "
        "The cell was not run."]
    assert messages(submission, "softmax") == {
        f"softmax is defined in cell [4], which was not run: cell [4] line 1 imports sys, which graded code may "
        f"not import: import sys. {ONLY_IN_A_NOTEBOOK}. It scores 0 until that line is gone."}


def test_a_module_namespace_cannot_be_copied_onto_an_object():
    """Is functools.update_wrapper (and wraps) refused? It copies an object's __dict__ (a
    module's globals, helpers included) onto an object whose attributes the scan cannot follow."""
    for source in ("import functools, torch\nclass C:\n    pass\nfunctools.update_wrapper(C(), torch.nn.functional)\n",
                   "import functools\n@functools.wraps(len)\ndef f():\n    pass\n"):
        assert "functools." in only(source).what
