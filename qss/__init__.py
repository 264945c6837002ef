"""qss: the shared core of the MicroPMU Quickstart Server suite.

The `.dat` format (:mod:`qss.dat`), the realistic uPMU generator (:mod:`qss.generator`),
the uPMU list (:mod:`qss.upmuconfig`), the appliance settings (:mod:`qss.settings`) and
the stream names (:mod:`qss.streams`) live here; the services and commands build on them.
"""

__version__ = "0.1.0"
