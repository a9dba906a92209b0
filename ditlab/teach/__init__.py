"""The teaching layer: figures, widgets and exercise checks for the notebooks.

    viz.py           figures of images, patches, positional embeddings, Gflops and block designs
    viz_training.py  figures of the diffusion process and of training: schedules, noising, trajectories, losses
    explore.py       what the widgets do, as plain functions (inputs -> figure / images): models, Gflops, sampling
    widgets.py       the ipywidgets controls that wire `explore` to sliders and buttons (needs ipywidgets)
    exercises.py     the exercise checks: `check(name, answer)` says right, not answered or a hint, never the answer

Every figure is a `matplotlib.figure.Figure` built without pyplot; tests call all of it without a browser.
"""
