"""Layer 3: run folders (the one owner of their files and states) and the checkpoint format."""
