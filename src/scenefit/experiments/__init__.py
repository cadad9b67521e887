"""The paper's experiments as uses of the pipeline: settings × methods over :class:`scenefit.pipeline.Pipeline`.

    scenefit experiment mnist --scale quick --out DIR      Table 2, Table 3, Figures 3-9 (§4.1)
    scenefit experiment driving --scale quick --out DIR    Table 4, Figures 10-11 (§4.2)
    scenefit experiment shift --setting rot-g2 --out DIR   fitting under look shifts of X_t and T (scenefit.shifts)

Each scale is a preset (``street-<scale>``) or a preset overlay (``presets/scales/mnist-<scale>.yaml``), and
``--set`` reaches every field. Figure and table modules receive data; they never import the runners.
"""

SCALE_NAMES = ("tiny", "quick", "paper")
MNIST_METHODS = ("initial", "metasim", "attribute-descent", "sdr", "paper", "ours", "oracle")
"""Table 2's rows, in order."""
DRIVING_STAGES = ("task", "surrogate", "features", "fit", "initial", "ours", "metasim", "oracle")
"""What ``experiment driving --stages`` accepts: model stages, the fit, and Table 4's rows."""
