"""The student's self-check in a notebook, and the warm server that answers it fast."""
