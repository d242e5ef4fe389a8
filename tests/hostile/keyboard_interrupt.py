def softmax(x, dim=-1):
    raise KeyboardInterrupt
