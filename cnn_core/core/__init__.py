"""Layer 0: errors, settings (every environment variable and default path) and atomic file writes."""
