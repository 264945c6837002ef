"""``python -m upmu_adm``: the same as the ``upmu-adm`` command."""
import sys

from .cli import entry

sys.exit(entry())
