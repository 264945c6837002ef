"""upmu-adm: the operator's shell for the uPMU list (issue 6, manual chapters 3 and 4).

Layout: :mod:`~upmu_adm.registry` (commands, replies, the line driver),
:mod:`~upmu_adm.state` (the list being edited), :mod:`~upmu_adm.commands` (the
commands), :mod:`~upmu_adm.completion` (pure tab completion), :mod:`~upmu_adm.views`
(tables, change summaries), :mod:`~upmu_adm.cli` (flags, ``-c`` and piped input) and
:mod:`~upmu_adm.app` (the prompt_toolkit shell, imported only on a terminal).
"""
from .commands import REGISTRY, parse_bool
from .completion import Candidate, complete
from .registry import Command, Confirm, Registry, Reply, split_commands
from .state import Edit, ShellState

__all__ = ["REGISTRY", "Candidate", "Command", "Confirm", "Edit", "Registry", "Reply",
           "ShellState", "complete", "parse_bool", "split_commands"]
