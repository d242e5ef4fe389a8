"""Step 3 of the grading path: run untrusted student code in a forked worker.

- ``zygote.py``  the fork server: a fresh interpreter that imported torch and nothing secret.
- ``worker.py``  what runs in each forked worker: loads the student's code, answers calls.
- ``codec.py``   the wire format between grader and worker (JSON headers + raw tensor bytes).
- ``client.py``  the grader's side: starts the zygote, forks workers, calls with deadlines.
- ``harden.py``  the hardening applied in a worker before the student's first byte runs
                 (its own root, namespaces, limits, uid, seccomp).
- ``cgroups.py`` memory and process limits per grading slot (the kernel's cgroups).
- ``capture.py`` what workers print, drained by the grader into a file only it holds.
"""
