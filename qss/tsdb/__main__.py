"""``python -m qss.tsdb``: the same as the ``qss-btrdb`` command (see qss/tsdb/server.py)."""
from .server import entry

if __name__ == "__main__":
    entry()
