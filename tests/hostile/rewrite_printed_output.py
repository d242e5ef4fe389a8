# Prints something, then rewrites the record of its printed output that staff read
# (truncate and pwrite on its stdout).
import os

print("{MARK_NAME}-printed-first", flush=True)
try:
    os.ftruncate(1, 0)
    os.pwrite(1, b"forged output", 0)
except OSError as exc:
    print(f"rewrite refused: {exc}", flush=True)


def softmax(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)
