# A shared anonymous mapping: RLIMIT_DATA does not count it (red team: 4 GiB past the 2 GiB limit).
import mmap


def softmax(x, dim=-1):
    chunk = b"\1" * (64 << 20)
    m = mmap.mmap(-1, 4 << 30, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    for _ in range(64):
        m.write(chunk)
    raise RuntimeError("held 4 GiB")
