# The suites' fixtures (student, reference, expect) and markers come from the grader's plugin.
pytest_plugins = ["grader.pytest_plugin"]
