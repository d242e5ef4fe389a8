"""Class statistics: score distribution, each test's failure rate, the most common mistakes."""
from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..outputs.results import SubmissionResult


# A hint may end with the student's own line, " (line 7: ...)" or " (cell [2], line 7: ...)"
# (grader/misconceptions/__init__.py writes it): drop it to count mistakes alike.
_QUOTED_LINE = re.compile(r"\s*\(((?:(?:code )?cell \[?\d+\]?, )?line \d+): (.*)\)\s*$", re.DOTALL)


def split_hint(hint: str) -> tuple[str, str | None, str | None]:
    """``(sentence, where, code)``: a hint without the student's quoted line, and that line's place
    ("line 7", "cell [2], line 7") and code; ``where`` and ``code`` are None when it quotes none."""
    match = _QUOTED_LINE.search(hint)
    if match is None:
        return hint, None, None
    return hint[: match.start()], match.group(1), match.group(2)


@dataclass
class ClassStats:
    count: int
    max_score: float
    mean: float
    median: float
    scores: list[float]
    failure_rates: list[tuple[str, float, int]]
    """(exercise: test, share of submissions that did not pass it, how many) worst first."""
    statuses: dict[str, Counter]
    """exercise id -> how many submissions ended in each status."""
    common_hints: list[tuple[str, int]]
    """(exercise: hint without the student's line, how many submissions got it) most common first."""
    hidden: frozenset[str] = frozenset()
    """The keys of ``failure_rates`` that name hidden tests."""


def compute(results: list[SubmissionResult], *, include_hidden: bool = True) -> ClassStats:
    """The class's statistics; ``include_hidden=False`` leaves hidden tests out of the failure
    rates and the mistakes (for a page students may see), not out of the scores."""
    scores = [r.score for r in results]
    failing: Counter = Counter()
    seen: Counter = Counter()
    statuses: dict[str, Counter] = {}
    hints: Counter = Counter()
    hidden: set[str] = set()
    for result in results:
        for exercise in result.exercises:
            statuses.setdefault(exercise.id, Counter())[exercise.status] += 1
            tests = [t for t in exercise.tests if include_hidden or not t.hidden]
            for test in tests:
                key = f"{exercise.id}: {test.name}"  # the name with its parametrize id: test_x[float32]
                seen[key] += 1
                failing[key] += test.status != "passed"
                if test.hidden:
                    hidden.add(key)
            for hint in {split_hint(h)[0] for t in tests for h in t.hints}:
                hints[f"{exercise.id}: {hint}"] += 1
    rates = sorted(((k, failing[k] / seen[k], failing[k]) for k in seen if failing[k]), key=lambda x: (-x[1], x[0]))
    return ClassStats(
        count=len(results), max_score=max((r.max_score for r in results), default=0.0),
        mean=statistics.fmean(scores) if scores else 0.0, median=statistics.median(scores) if scores else 0.0,
        scores=scores, failure_rates=rates, statuses=statuses, common_hints=hints.most_common(10),
        hidden=frozenset(hidden))


def print_stats(console, stats: ClassStats, *, top: int = 10) -> None:
    from rich.table import Table
    from rich.text import Text

    console.print(f"[bold]class statistics[/bold]: {stats.count} submissions, mean {stats.mean:.2f}, "
                  f"median {stats.median:.2f} of {stats.max_score:g}", highlight=False)
    bins = histogram(stats.scores, stats.max_score)
    widest = max((n for _, n in bins), default=1) or 1
    for label, n in bins:
        console.print(f"  {label:>11}  {'█' * round(30 * n / widest):<30} {n}", highlight=False)
    if stats.failure_rates:
        table = Table(title="tests failed most often", title_justify="left")
        table.add_column("test", overflow="fold")
        table.add_column("failed", justify="right")
        for key, rate, n in stats.failure_rates[:top]:
            table.add_row(Text(key + (" (hidden)" if key in stats.hidden else "")), f"{rate:.0%} ({n})")
        console.print(table)
    if stats.common_hints:
        console.print("[bold]most common mistakes[/bold]")
        for hint, n in stats.common_hints:
            console.print(f"  {n:>4}  {hint}", highlight=False, markup=False)


def histogram(scores: list[float], max_score: float, bins: int = 10) -> list[tuple[str, int]]:
    """Counts per tenth of the maximum score (the last bin includes full marks)."""
    if not max_score:
        return []
    width = max_score / bins
    counts = [0] * bins
    for score in scores:
        counts[min(int(score / width), bins - 1)] += 1
    return [(f"{i * width:g}-{(i + 1) * width:g}", n) for i, n in enumerate(counts)]


def plot(stats: ClassStats, path: Path) -> None:
    """A score histogram as a PNG an instructor can drop into a slide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=150)
    ax.hist(stats.scores, bins=10, range=(0, stats.max_score or 1), color="#4c72b0", edgecolor="white")
    ax.set_xlabel(f"score (out of {stats.max_score:g})")
    ax.set_ylabel("submissions")
    ax.set_title(f"{stats.count} submissions: mean {stats.mean:.2f}, median {stats.median:.2f}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
