# Empties the worker's run-time ban through sys.modules, then fetches the library softmax with
# a string lookup the old denylist scan let through (red team, 2026-12-02: 10/10 instead of 4/10).
import sys

import torch

for module in list(sys.modules.values()):
    bans = getattr(module, "KernelWatch", None) or getattr(module, "KernelBans", None)
    if bans is not None:
        bans.__torch_dispatch__ = lambda self, func, types, args=(), kwargs=None: func(*args, **(kwargs or {}))


def softmax(x, dim=-1):
    return vars(torch)["soft" + "max"](x, dim)
