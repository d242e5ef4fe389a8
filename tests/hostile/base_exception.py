def softmax(x, dim=-1):
    raise BaseException("you cannot catch me")
