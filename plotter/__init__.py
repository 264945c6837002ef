"""The plotter: the appliance's web site (``qss-plotter``, supervisor program ``mr-plotter``).

Users pick streams under "Select Streams" and plot them; scripts use the same JSON API
(docs/plotter-api.md). BTrDB is read only through the official ``btrdb`` client, so the
plotter serves a real BTrDB cluster as well as the embedded server. Every data path asks
:class:`plotter.access.Gate` which streams the request may see.
"""
