"""Layer 6: background training jobs for the app (a subprocess each, the run folder as protocol)."""
