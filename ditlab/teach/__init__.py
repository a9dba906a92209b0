"""The teaching layer: figures, widgets and exercise checks for the notebooks.

    viz.py             figures of images and patches, and the drawing helpers the other figure modules share
    viz_embeddings.py  embedding tables and positional similarity maps
    viz_diagrams.py    DiT drawn: the whole network (notebook 00) and the four block designs of Fig. 3
    viz_compute.py     Gflops and parameters: against the patch size, per component, per block design
    viz_training.py    figures of the diffusion process and of training: schedules, noising, trajectories, losses
    explore.py         what the widgets do, as plain functions (inputs -> figure / images): models, Gflops, sampling
    readings.py        sentences computed from the numbers they describe (how a trajectory settles, guidance's variety)
    widgets.py         the ipywidgets controls that wire `explore` to sliders and buttons (needs ipywidgets)
    exercises.py       the exercise checks: `check(name, answer)` says right, not answered or a hint, never the answer;
                       the checks by topic in exercises_model.py, exercises_diffusion.py, exercises_explore.py,
                       their shared helpers in exercise_tools.py

Every figure is a `matplotlib.figure.Figure` built without pyplot; tests call all of it without a browser.
"""
