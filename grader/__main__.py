import os
import sys

from .cli import main

code = main()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)  # everything is written and closed; skip torch's slow interpreter teardown
