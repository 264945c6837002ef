"""installer: offline install/update archives and the appliance's configuration.

- :mod:`installer.components`: the components ``qss-get --config`` writes (qss, nic,
  shorewall, apcupsd) and the files of each, rendered from ``installer/templates/``.
- :mod:`installer.configure`: `qss-get --config` as the operator sees it.
- :mod:`installer.files`: compare, back up and atomically replace those files.
- :mod:`installer.environment`: what an action touches outside its arguments.
- :mod:`installer.netif`: the network interface of the default route.
"""
from .components import COMPONENTS, Layout, Program, component_files, programs
from .configure import configure
from .environment import Environment
from .files import Change, DeployError, FileSpec, Outcome, apply, plan

__all__ = ["COMPONENTS", "Change", "DeployError", "Environment", "FileSpec", "Layout",
           "Outcome", "Program", "apply", "component_files", "configure", "plan", "programs"]
