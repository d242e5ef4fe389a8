def softmax(x, dim=-1):
    hog = []
    while True:
        hog.append([0] * 100_000)
