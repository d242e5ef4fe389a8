"""The references of the multi-head attention chapter."""
