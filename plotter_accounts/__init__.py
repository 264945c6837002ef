"""The plotter's account console (manual ch. 11, ``accounts.py``; ``qss-accounts``).

A tool on the core: the accounts live in :mod:`qss.accounts`, shared with the plotter.
:mod:`.commands` holds one function per command, each returning text;
:mod:`.completion` completes a line as a pure function; :mod:`.app` is the
prompt_toolkit shell; :mod:`.cli` the command line, ``-c`` and scripts on stdin.
"""
from .commands import COMMANDS, Console, Refusal, execute

__all__ = ["COMMANDS", "Console", "Refusal", "execute"]
