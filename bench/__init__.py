"""`make bench`: the engine against ../shared/bench/reference_loop.py, in one run, on the same CIFAR-10 data."""
