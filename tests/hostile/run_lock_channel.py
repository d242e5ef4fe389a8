# Writes to a world-writable host folder the sandbox did not cover (/run/lock): a channel
# between two students graded at once, and 256 MiB that stays on the host.
def softmax(x, dim=-1):
    with open("/run/lock/{MARK_NAME}", "wb") as f:
        f.write(b"\0" * (256 << 20))
    raise RuntimeError("wrote 256 MiB to /run/lock")
