"""The static scan for forbidden operations (course policy, enforced in the grader)."""
from __future__ import annotations

import ast

import pytest

from grader.course import load_course
from grader.forbidden import scan_source

SOFTMAX_BANNED = load_course().exercise("softmax").banned


def violations(source: str, banned=SOFTMAX_BANNED):
    return scan_source(ast.parse(source), banned, "softmax.py", source)


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
])
def test_comments_strings_own_names_and_main_block_are_fine(source):
    """Are comments, strings, the student's own names and the __main__ block left alone?"""
    assert violations(source) == []


def test_nothing_banned_means_nothing_flagged():
    """Does an exercise without a banned list allow everything?"""
    assert violations("import torch\ny = torch.softmax(torch.ones(2), 0)\n", banned=()) == []
