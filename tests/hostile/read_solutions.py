# Tries to run the reference solution instead of its own code.
import importlib.util

spec = importlib.util.spec_from_file_location("reference_softmax", "{SOLUTIONS}/softmax.py")
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)
softmax = vars(reference)["soft" "max"]  # past the static scan: only the file system stops it
