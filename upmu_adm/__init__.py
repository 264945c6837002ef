"""upmu-adm: the operator's shell for the uPMU list and its data (issue 6, manual
chapters 3 and 4).

Layout: :mod:`~upmu_adm.registry` (commands, replies, refusals, the line driver),
:mod:`~upmu_adm.state` (the list being edited), :mod:`~upmu_adm.services` (the queue,
the disk and supervisor probes, progress: injectable), :mod:`~upmu_adm.commands` (the
list commands, help, exit), :mod:`~upmu_adm.saving` (save's transaction: the file, the
streams' metadata in BTrDB through :mod:`~upmu_adm.metadata`, the record, the
deletions) and :mod:`~upmu_adm.savereport` (its reply), :mod:`~upmu_adm.datafiles` and
:mod:`~upmu_adm.importer` (importdat, exportdat, delbackup), :mod:`~upmu_adm.status`,
:mod:`~upmu_adm.periods`, :mod:`~upmu_adm.completion` (pure tab completion),
:mod:`~upmu_adm.views` (tables, sizes, change summaries), :mod:`~upmu_adm.cli` (flags,
``-c`` and piped input) and :mod:`~upmu_adm.app` (the prompt_toolkit shell, imported
only on a terminal).
"""
from . import datafiles, status  # noqa: F401 - they register their commands
from .commands import REGISTRY, parse_bool
from .completion import Candidate, Sources, complete
from .registry import Choice, Command, Confirm, Refusal, Registry, Reply, split_commands
from .saving import SaveResult, save
from .services import Services
from .state import Edit, ShellState

__all__ = ["REGISTRY", "Candidate", "Choice", "Command", "Confirm", "Edit", "Refusal",
           "Registry", "Reply", "SaveResult", "Services", "ShellState", "Sources",
           "complete", "parse_bool", "save", "split_commands"]
