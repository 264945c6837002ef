"""``python -m plotter``: the same as ``qss-plotter``."""
from plotter.server import entry

entry()
