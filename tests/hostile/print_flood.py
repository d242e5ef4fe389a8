def softmax(x, dim=-1):
    for _ in range(50_000):
        print("x" * 1000)  # 50 MB
    return x
