"""The widget's starting settings, kept free of Qt so that scripts can train as it does.

Sized for a CPU laptop on the 256x256 sample data; ``benchmarks/sample_modes.py`` measures
the modes with exactly these.
"""

DEFAULT_STEPS = 600
DEFAULT_PATCH = 64
DEFAULT_BATCH = 8
DEFAULT_DEPTH = 3
DEFAULT_WIDTH = 16
#: Steps between the label-free checks that the live plot shows (target entropy).
CHECK_EVERY = 50
