"""Layer 5: whole runs (fit, then report, then card), sweeps, and the run history."""
