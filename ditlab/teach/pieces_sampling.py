"""The checks of the pieces of notebooks 06–07: a DDPM/DDIM step, a flow-matching step
(the framework and the conventions: pieces.py)."""
