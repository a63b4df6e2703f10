"""Layer 1: the one safe image loader for everything a user hands us (Pillow only)."""
