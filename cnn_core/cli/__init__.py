"""Layer 6: ``python -m cnn_core <command>``. Each command is one module here plus one line in ``main``."""
