"""Interactive demos: each is a plain function (testable without a browser) plus a thin widget.

The plain function takes the controls' values and returns what is drawn (a
matplotlib Figure, or a small result object the figure is made from); the
widget only wires ipywidgets controls to it. Lectures call the widget; tests
call the function. PyTorch's built-ins do the arithmetic, so no widget hands
over an assignment's answer.

Every widget builder is registered (``registry.demo``): ``DEMOS[name]`` holds the
builder, the plain function that draws it and how the controls map onto that
function's arguments. The browser suite and the course website find the widgets
there, so a new widget needs no new test code. With ``COURSE_STATIC=1`` (the site
build) a builder shows a still of its figure and a note instead of a live widget.

registry        DEMOS, the @demo decorator, static mode
shapes          the shapes dataset explorer (lecture 00)
sliding_window  where a convolution's window lands and the output size (lecture 01)
conv_matrix     a convolution as a matrix C and its transpose, one kernel weight lit (lecture 02)
gradient_flow   per-layer gradient norms of a deep network, by depth, activation and init (lecture 03)
init_explorer   per-layer activation histograms and std at initialization, by init, activation, depth (lecture 04)
optimizer_race  PyTorch's optimizers side by side on a 2-D loss surface: paths and loss per step (lecture 05)
batch_noise     batch size vs the spread of batch means and variances, the 1/sqrt(B) law (lecture 06)
compound_scaling EfficientNet-B0 scaled in depth, width and resolution: parameters and FLOPs measured (lecture 07)
transfer        the precomputed transfer table, one (target, data size) cell at a time (lecture 08)
saliency        four saliency maps of the course checkpoint on one shapes image, on-object share (lecture 09)
epsilon         an image attacked with FGSM or PGD as epsilon grows: perturbation and prediction (lecture 10)
detection       a detector's raw boxes through a score threshold and per-class NMS: precision, recall (lecture 11)
"""

from .batch_noise import BatchNoise, batch_noise_explorer, batch_noise_figure, batch_statistics
from .compound_scaling import ScaledCost, compound_scaling_explorer, scaled_cost, scaling_figure
from .conv_matrix import conv_matrix_figure, conv_matrix_of, conv_matrix_summary, conv_matrix_viewer
from .detection import NmsView, nms_explorer, nms_figure, nms_view
from .epsilon import EpsilonView, epsilon_explorer, epsilon_figure, epsilon_view
from .gradient_flow import GradientFlow, gradient_flow, gradient_flow_explorer, gradient_flow_figure
from .init_explorer import LayerActivations, init_figure, initialization_explorer, layer_activations
from .optimizer_race import RacePath, optimizer_race_explorer, race, race_figure, trajectory
from .registry import DEMOS, STATIC_ENV, Demo, demo, static_mode
from .saliency import SaliencyView, saliency_explorer, saliency_figure, saliency_map, saliency_view
from .shapes import shapes_explorer, shapes_figure
from .sliding_window import WindowLayout, sliding_window_explorer, sliding_window_figure, window_layout
from .transfer import TransferCell, transfer_cell, transfer_explorer, transfer_figure

__all__ = ["DEMOS", "Demo", "demo", "static_mode", "STATIC_ENV",
           "shapes_figure", "shapes_explorer", "conv_matrix_of", "conv_matrix_summary", "conv_matrix_figure",
           "conv_matrix_viewer",
           "WindowLayout", "window_layout", "sliding_window_figure", "sliding_window_explorer",
           "GradientFlow", "gradient_flow", "gradient_flow_figure", "gradient_flow_explorer",
           "LayerActivations", "layer_activations", "init_figure", "initialization_explorer",
           "RacePath", "trajectory", "race", "race_figure", "optimizer_race_explorer",
           "BatchNoise", "batch_statistics", "batch_noise_figure", "batch_noise_explorer",
           "ScaledCost", "scaled_cost", "scaling_figure", "compound_scaling_explorer",
           "TransferCell", "transfer_cell", "transfer_figure", "transfer_explorer",
           "EpsilonView", "epsilon_view", "epsilon_figure", "epsilon_explorer",
           "SaliencyView", "saliency_map", "saliency_view", "saliency_figure", "saliency_explorer",
           "NmsView", "nms_view", "nms_figure", "nms_explorer"]
