"""Running the suites against a submission: one pytest session, the worker's proxy, batches."""
