"""The results as the contract describes them, and the files and tables they go to."""
