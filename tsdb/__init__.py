"""The embedded BTrDB: a BTrDB-compatible time-series server for one box (``qss-btrdb``).

The engine (:class:`Store`) keeps streams of (int64 ns, float64) points in one SQLite file
as compressed columnar chunks plus statistics at every 16th power of two of window width;
``grpc_service`` adapts it to BTrDB's v5 gRPC interface, ``restapi`` (sans-IO) and
``rest`` (its HTTP server) to the v3 REST interface; ``server`` runs both. The package is
not named ``btrdb``, the official client's import name. See docs/tsdb-design.md.
"""
from .errors import MAXIMUM_TIME, MINIMUM_TIME, TsdbError
from .merge import MergePolicy
from .meta import StreamInfo
from .store import Store, Windows

__all__ = ["Store", "Windows", "StreamInfo", "MergePolicy", "TsdbError",
           "MINIMUM_TIME", "MAXIMUM_TIME"]
