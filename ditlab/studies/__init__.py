"""Experiments that train several models and compare them: the paper's results in miniature on a CPU.

    scaling.py     `ditlab scaling`: model size × patch size -> sample quality against Gflops (§5, Fig. 8)
    objectives.py  `ditlab objectives`: DDPM vs flow matching vs logit-normal t vs the modern block, against NFE
    runs.py        what they share: earlier runs in a folder, training times, typed CSV rows
"""
