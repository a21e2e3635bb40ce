"""What reads finished runs: metric gates and baselines, significance tests, run listings and comparisons,
reports, and the machine-readable record of a command (`--json`)."""
