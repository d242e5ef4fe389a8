import time


def softmax(x, dim=-1):
    time.sleep(1e6)
