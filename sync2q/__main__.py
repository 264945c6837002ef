"""``python -m sync2q``: the same as the ``qss-sync2q`` command (see sync2q/cli.py)."""
from .cli import entry

if __name__ == "__main__":
    entry()
