"""Experiments that train several models and compare them: the paper's results in miniature on a CPU.

    scaling.py  `ditlab scaling`: model size × patch size -> sample quality against Gflops (§5, Fig. 8)
"""
