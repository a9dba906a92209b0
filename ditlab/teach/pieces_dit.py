"""The check of the piece of notebook 04: the whole DiT (the framework and the conventions: pieces.py)."""
