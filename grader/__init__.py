"""The attention chapter's grader. In a notebook: ``from grader import check; check("softmax")``."""
import sys


def check(*ids: str, **options):
    """Run the public tests of exercises ``ids`` (all when none) on the functions this
    notebook defines; the result shows as a table (``grader/selfcheck/notebook.py``)."""
    from .selfcheck.notebook import check as run_check  # imported on use: `import grader` stays light

    return run_check(*ids, **options)


def _warm_up_in_a_notebook() -> None:
    """In a Jupyter kernel, start the course's check server now (in the background, a few
    seconds) so that the first ``check()`` answers as fast as the next ones."""
    try:
        from .course.load import default_course_path
        from .selfcheck.warm_server import start

        start(default_course_path(), None)
    except Exception:  # noqa: BLE001 - a warm-up that fails only makes the first check slower
        pass


if "ipykernel" in sys.modules:
    _warm_up_in_a_notebook()
