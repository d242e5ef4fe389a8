"""Results of grading, as the report contract describes them.

Scores are never stored twice: an exercise's score is the sum of its tests', a submission's
the sum of its exercises'. Points come from course.yaml; a test's share of its exercise's
points is its ``points(n)`` weight over the weights of all the exercise's tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

DIGITS = 4  # scores are rounded for the report only
UNIT = 10 ** DIGITS  # 0.0001 points


def _round(value: float, digits: int | None) -> float:
    return value if digits is None else round(value, digits)


def allocate(points: float, weights: list[float]) -> list[float]:
    """Split an exercise's points between its tests in proportion to their weights."""
    total = sum(weights)
    return [points * w / total if total else 0.0 for w in weights]


@dataclass
class CaseResult:
    """One test of one exercise for one submission."""

    name: str
    max_score: float
    status: str
    """passed, failed, error, timeout, crashed, forbidden, not_implemented, skipped."""
    hidden: bool
    message: str = ""
    hints: list[str] = field(default_factory=list)
    seed: int | None = None
    """The test's torch seed: same seed, same inputs."""
    figures: list = field(default_factory=list)
    """(title, expected 2-D weights, the student's) for heatmaps in feedback reports; staff data,
    not part of the JSON report."""

    @property
    def score(self) -> float:
        return self.max_score if self.status == "passed" else 0.0

    def to_dict(self, digits: int | None = DIGITS) -> dict:
        return {"name": self.name, "score": _round(self.score, digits), "max_score": _round(self.max_score, digits),
                "status": self.status, "hidden": self.hidden, "message": self.message, "hints": list(self.hints)}


@dataclass
class ExerciseResult:
    id: str
    title: str
    max_score: float
    tests: list[CaseResult]

    @property
    def score(self) -> float:
        """The tests' scores summed; exactly ``max_score`` when every test passed (a max_score
        split into n shares need not add back up to it in floating point: 2.9999999999999996)."""
        if self.tests and all(t.status == "passed" for t in self.tests):
            return float(self.max_score)
        return math.fsum(t.score for t in self.tests)

    @property
    def complete(self) -> bool:
        """Every point earned (up to the rounding of the tests' shares)."""
        return self.score >= self.max_score - 1e-6

    @property
    def status(self) -> str:
        """One word for the exercise: its first non-passing status, or passed."""
        return next((t.status for t in self.tests if t.status != "passed"), "passed")

    def to_dict(self, digits: int | None = DIGITS) -> dict:
        return {"id": self.id, "score": _round(self.score, digits), "max_score": _round(self.max_score, digits),
                "tests": [t.to_dict(digits) for t in self.tests]}


@dataclass
class SubmissionResult:
    submission: str
    exercises: list[ExerciseResult]
    errors: list[str] = field(default_factory=list)
    protections: list[str] = field(default_factory=list)
    """The sandbox protections that were active for this submission's worker."""
    printed: str = ""
    """The start of what the student's code printed (staff only)."""
    seconds: float = 0.0
    """Wall time spent grading it, loading included."""
    sandbox_failure: str = ""
    """Why the sandbox could not start a worker for it (the machine's fault, set by the grader
    before any student code ran); then its results are not grades."""

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    def to_dict(self, digits: int | None = DIGITS) -> dict:
        return {"submission": self.submission, "score": _round(self.score, digits),
                "max_score": _round(self.max_score, digits),
                "exercises": [e.to_dict(digits) for e in self.exercises], "errors": list(self.errors)}

    def to_record(self) -> dict:
        """One line of a results file: the contract's dict, unrounded, plus what staff reports need."""
        figures = {f"{e.id}/{t.name}": t.figures for e in self.exercises for t in e.tests if t.figures}
        return {"result": self.to_dict(digits=None), "protections": self.protections, "printed": self.printed,
                "seconds": round(self.seconds, 4), "figures": figures,
                **({"sandbox_failure": self.sandbox_failure} if self.sandbox_failure else {})}

    @classmethod
    def from_record(cls, record: dict) -> "SubmissionResult":
        data = record["result"]
        figures = record.get("figures", {})
        exercises = []
        for e in data["exercises"]:
            # A JSON report rounds each test's share: scale the shares back so that they add
            # up to the exercise's points exactly (a results file's are exact already).
            total = sum(t["max_score"] for t in e["tests"])
            scale = e["max_score"] / total if total else 1.0
            tests = [CaseResult(t["name"], t["max_score"] * scale, t["status"], t["hidden"], t["message"],
                                list(t["hints"]), figures=figures.get(f"{e['id']}/{t['name']}", []))
                     for t in e["tests"]]
            exercises.append(ExerciseResult(e["id"], e.get("title", e["id"]), e["max_score"], tests))
        return cls(data["submission"], exercises, list(data["errors"]), list(record.get("protections", [])),
                   record.get("printed", ""), float(record.get("seconds", 0.0)), str(record.get("sandbox_failure", "")))


def document(results: list[SubmissionResult], device: dict | None = None, course: dict | None = None) -> dict:
    """The JSON document of the report contract, plus the sandbox's active protections and,
    when known, the device the grading ran on and the course (its title and version, and the
    shard ``"I/N"`` of a sharded run: what ``merge`` checks)."""
    protections = next((r.protections for r in results if r.protections), [])
    doc = {"submissions": [r.to_dict() for r in results], "sandbox": {"protections": list(protections)}}
    if device is not None:
        doc["device"] = device
    if course is not None:
        doc["course"] = course
    return doc


def apportion(values: list[float], total: float, caps: list[int] | None = None) -> list[int]:
    """``values`` in whole units of 0.0001, adding up to ``total`` rounded to 4 digits: each is
    its value rounded down, plus one unit for those with the largest remainders, never past its
    cap (in units) when another can take it."""
    target = round(round(total, DIGITS) * UNIT)
    scaled = [v * UNIT for v in values]
    units = [math.floor(s + 1e-6) for s in scaled]  # 1e-6: float noise, as in 2.9999999999
    order = sorted((i for i, s in enumerate(scaled) if s - units[i] > 1e-6), key=lambda i: units[i] - scaled[i])
    under_cap = [i for i in order if caps is None or units[i] < caps[i]]
    for i in (under_cap + [i for i in order if i not in under_cap])[:max(0, target - sum(units))]:
        units[i] += 1
    return units


def same_failure(tests: list) -> "CaseResult | None":
    """The first test when every one of ``tests`` failed with the same status and message (an
    exercise not written yet, forbidden, or one whose import fails): shown once, not per test."""
    if not tests or tests[0].status == "passed":
        return None
    first = tests[0]
    return first if all((t.status, t.message) == (first.status, first.message) for t in tests) else None
