"""``python -m tsdb``: the same as the ``qss-btrdb`` command (see tsdb/server.py)."""
from .server import entry

if __name__ == "__main__":
    entry()
