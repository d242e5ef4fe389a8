# Every call takes a little less than the per-call limit: without a budget for the whole
# submission, 20 tests of it cost 35 s (red team: 139 s for one submission).
import time


def softmax(x, dim=-1):
    time.sleep(1.75)
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim, keepdim=True)
