"""The demo: a whole appliance in a folder, on loopback, under a real supervisord.

It is the top floor: it lays out an appliance with the installer's components, registers
simulated uPMUs with ``upmu-adm`` and starts every service. ``python -m demokit`` (what
``./dev demo`` runs); see :mod:`demokit.demo`.
"""
