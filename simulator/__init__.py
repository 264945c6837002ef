"""qss-sim: simulated uPMUs pushing realistic ``.dat`` files over the real push protocol.

:mod:`simulator.devices` is the device logic and its asyncio edge; :mod:`simulator.cli`
the ``qss-sim`` command. See docs/simulator.md.
"""
