"""What a submission is: folders, zips and notebooks read safely, and the allowlist scan."""
