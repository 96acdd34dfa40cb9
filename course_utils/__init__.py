"""Shared code for the Deep Learning for Computer Vision course.

Import the module you need; each holds one kind of thing:

- ``device``    where computation runs (CUDA, then MPS, then CPU), mixed precision
- ``seeding``   one call seeds random, NumPy and torch; deterministic mode
- ``fastmode``  ``COURSE_FAST=1`` / nbgrader execution: smaller data, fewer epochs
- ``shapes``    the generated geometric-shapes images with object masks
- ``scenes``    generated multi-object scenes: boxes, labels, instance and semantic masks
- ``data``      datasets (offline by default), splits, normalization, loaders
- ``training``  ``fit`` / ``evaluate``, a loop that knows nothing of the model
- ``pretrained`` the course's own checkpoints (offline "pretrained" models), ImageNet weights opt-in
- ``plotting``  image grids, training curves, heatmaps in one look
- ``notebooks`` run a notebook headless; check that stored notebooks are clean
- ``grading``   nbgrader round trips for tests and instructors
- ``checks``    the checks behind every assignment's test cells

Nothing here implements what an assignment asks for.
"""

__version__ = "0.1.0"
