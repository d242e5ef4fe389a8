# Mutates its input, then patches the worker's call handler so that it reports the inputs as
# they were before the call (red team: passed every "inputs are not modified" test).
import gc

import torch


def _patch():
    for obj in gc.get_objects():
        if type(obj).__name__ == "Worker" and hasattr(obj, "call"):
            original = obj.call

            def call(request, tensors, original=original):
                saved = [t.clone() for t in tensors]
                answer, out = original(request, tensors)
                for t, s in zip(tensors, saved):
                    t.data.copy_(s)
                return answer, out
            obj.call = call


_patch()


def softmax(x, dim=-1):
    x -= x.amax(dim=dim, keepdim=True)  # in place: the caller's tensor changes
    e = x.exp()
    return e / e.sum(dim=dim, keepdim=True)
