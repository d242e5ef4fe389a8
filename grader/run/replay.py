"""Replaying a test without pytest when the student's answers are ones already seen.

A suite's test is a deterministic function of its seeded inputs and of what the student's
function answers: given the same answers it makes the same calls and ends the same way.
So a batch remembers, per test, the calls it made and the answers it got, as a tree:

    node (the test's next request)  --answer digest-->  node ...  -->  leaf (how it ended)

where an answer's digest covers its bytes on the wire (header and tensors, bit for bit).
For the next submission, ``Memo.replay`` walks the tree: the remembered requests go to this
submission's worker, and each answer's digest picks the branch. Reaching a leaf means the
test would end as it did then: that is its outcome, and no pytest machinery runs. At an answer never
seen, the answers fetched so far go to ``StudentCode.serve`` and ``replay`` returns None;
pytest then runs the test, whose first calls get those answers without asking the worker
again (the worker sees exactly the calls a plain run makes), and ``Memo.learn`` adds the
run's path (see below for which runs).

Round trips: the walk asks for a whole *path* (the most travelled branch from here to a
leaf, then the same for each following test of the exercise) with the digest expected after
each call; ``StudentCode.exchange_path`` sends its calls as plain calls, several at once, and
the worker, which handles each exactly as a plain call, skips the rest after the first
unexpected answer, so it never runs a call a plain run would not have.

Remembered: runs that passed, and runs that failed a comparison (an ``AssertionError`` of
the suite: status, message and pictures are then functions of the answers too). A failure's
hints are not part of what is remembered: they may quote the student's source (a
misconception hint) or depend on their other exercises (blame), which no digest of this
test's answers covers, so ``verdict.explain`` gives them for each submission, from the
remembered calls. Errors and timeouts always run in full: their words may quote the
student's source. The worker, its sandbox and its deadlines are those of a plain run.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from dataclasses import dataclass, field

import pytest

from . import faults
from ..course.load import Exercise
from .items import exercise_id
from .verdict import Outcome
from ..sandbox import codec
from .student import Exchange, Reply, StudentCode

MAX_LEAVES = 64  # distinct paths remembered per test; beyond, the test just runs
PATH_BYTES = 16 << 20  # tensor bytes asked for in one path, at most


@dataclass
class _Node:
    """The state of a test after some answers: its next request, or how it ended."""

    key: bytes | None = None          # fingerprint of the next request (None: the test ended)
    request: dict | None = None
    tensors: list | None = None
    children: dict[bytes, "_Node"] = field(default_factory=dict)  # answer digest -> node
    outcome: Outcome | None = None    # at a leaf
    visits: int = 0

    def likeliest(self) -> tuple[bytes, "_Node"]:
        return max(self.children.items(), key=lambda edge: edge[1].visits)


@dataclass
class _Tree:
    root: _Node = field(default_factory=_Node)
    leaves: int = 0
    broken: bool = False  # the test asked different things for the same answers: never replayed

    @property
    def usable(self) -> bool:
        return self.leaves > 0 and not self.broken


class Memo:
    """The trees of every test of a batch (one per grading slot)."""

    def __init__(self) -> None:
        self.trees: dict[str, _Tree] = {}
        self.fetched: deque[tuple[_Node, Reply]] = deque()  # answers of a path, not walked yet...
        self.fetched_from: StudentCode | None = None              # ... from this submission's worker

    def replay(self, items: list[pytest.Item], index: int, exercise: Exercise, code: StudentCode) -> Outcome | None:
        """The outcome of ``items[index]`` when this submission answers as a remembered
        run did; else None, with the answers fetched for it queued in ``code`` for the test's
        run. The paths of the tests after it may ride along in the same request."""
        item = items[index]
        if self.fetched_from is not code:
            self.fetched.clear()
            self.fetched_from = code
        tree = self.trees.get(item.nodeid)
        if tree is None or not tree.usable:
            self.fetched.clear()
            return None
        try:
            code.prepare(exercise)  # missing, forbidden, dead: pytest reports it as usual
        except faults.StudentFault:
            self.fetched.clear()
            return None
        node: _Node | None = tree.root
        walked: list[tuple[bytes, Reply]] = []
        while node is not None and node.key is not None:
            if not self.fetched or self.fetched[0][0] is not node:
                self.fetched.clear()
                self._fetch(node, exercise, code, items, index)
                if not self.fetched:  # not even one answer (a worker breaking the protocol)
                    break
            _, reply = self.fetched.popleft()
            walked.append((node.key, reply))
            node.visits += 1
            node = node.children.get(reply.digest)
        if node is None or node.key is not None:  # an answer never seen: the worker stopped there
            self.fetched.clear()
            code.serve(walked)
            return None
        node.visits += 1
        return dataclasses.replace(node.outcome)  # explain() adds this submission's hints to its own copy

    def _fetch(self, node: _Node, exercise: Exercise, code: StudentCode, items: list[pytest.Item], index: int) -> None:
        """Ask the worker for the likeliest path from ``node`` to a leaf, and on through the
        tests after ``items[index]`` of the exercise while their trees are usable, in one
        round trip."""
        starts = [node]
        for item in itertools.islice(items, index + 1, None):
            tree = self.trees.get(item.nodeid)
            if exercise_id(item.path) != exercise.id or tree is None or not tree.usable:
                break
            starts.append(tree.root)
        steps = self._path(starts)
        replies = code.exchange_path(exercise, [(n.request, n.tensors, digest) for n, digest in steps])
        self.fetched.extend((n, reply) for (n, _), reply in zip(steps, replies))

    @staticmethod
    def _path(starts: list[_Node]) -> list[tuple[_Node, bytes]]:
        """(node, expected answer digest) along the likeliest branch from each start to its
        leaf, as many as one message carries."""
        steps: list[tuple[_Node, bytes]] = []
        tensors = size = 0
        for node in starts:
            while node.key is not None:
                tensors += len(node.tensors)
                size += sum(t.nbytes for t in node.tensors)
                if steps and (tensors > codec.MAX_TENSORS or size > PATH_BYTES):
                    return steps  # the rest comes with the next message
                digest, child = node.likeliest()
                steps.append((node, digest))
                node = child
        return steps

    def learn(self, item: pytest.Item, exchanges: list[Exchange], outcome: Outcome) -> None:
        """Remember the path of a run that passed or failed a comparison (its hints still to
        come: ``outcome.failure``); other outcomes are not remembered."""
        tree = self.trees.setdefault(item.nodeid, _Tree())
        remembered = outcome.status == "passed" or (outcome.status == "failed" and outcome.failure is not None)
        if not remembered or tree.broken or tree.leaves >= MAX_LEAVES:
            return
        node = tree.root
        for request, tensors, reply in exchanges:
            key = codec.fingerprint(request, tensors)
            if node.key is None and node.outcome is None and not node.children:
                node.key, node.request, node.tensors = key, request, tensors
            elif node.key != key:
                tree.broken = True  # same answers so far, different request: not deterministic
                return
            node.visits += 1
            node = node.children.setdefault(reply.digest, _Node())
        if node.key is not None:
            tree.broken = True  # another run went on asking from here
            return
        node.visits += 1
        if node.outcome is None:
            node.outcome = dataclasses.replace(outcome)  # before explain() adds the hints of this submission
            tree.leaves += 1


__all__ = ["Memo"]
