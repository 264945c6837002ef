"""Embedded BTrDB-compatible time-series storage (no network code here).

The engine (:class:`Store`) keeps streams of (int64 ns, float64) points in one SQLite file
as compressed columnar chunks plus statistics at every 16th power of two of window width;
``grpc_service`` and ``rest`` adapt it to BTrDB's v5 gRPC and v3 REST interfaces.
See docs/tsdb-design.md.
"""
from .errors import MAXIMUM_TIME, MINIMUM_TIME, TsdbError
from .merge import MergePolicy
from .meta import StreamInfo
from .store import Store, Windows

__all__ = ["Store", "Windows", "StreamInfo", "MergePolicy", "TsdbError",
           "MINIMUM_TIME", "MAXIMUM_TIME"]
