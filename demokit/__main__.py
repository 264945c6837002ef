"""``python -m demokit``: the demo appliance (``./dev demo``)."""
from demokit.demo import entry

entry()
