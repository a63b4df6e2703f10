"""Layer 4: optimisers, the training loop, fit and its callbacks, and the time estimate."""
