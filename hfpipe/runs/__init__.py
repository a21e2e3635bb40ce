"""The run record and what reads it: the run directory and its manifest, the lock, progress reporting and plots;
metric gates and baselines, significance tests, run listings and comparisons, reports, and the machine-readable
record of a command (`--json`)."""
