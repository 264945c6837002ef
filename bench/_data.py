"""Benchmark data: realistic 120 Hz uPMU streams from :mod:`qss.generator`.

Data goes through the real ``.dat`` encoder and parser, so values are exactly what sync2q
would insert (float32 samples widened to float64, the suite's timestamp convention).
"""
from __future__ import annotations

import numpy as np

from qss import dat, generator


def upmu_streams(start_s: int, seconds: int, *, serial: str = "P3001276", seed: int = 0,
                 site: str = "feeder") -> tuple[np.ndarray, np.ndarray]:
    """(times int64 ns [n], values float64 [19, n]) for ``seconds`` of an extended uPMU."""
    sim = generator.UpmuSimulator(serial, seed=seed, site=site, extended=True)
    times, values = [], []
    step = 600  # generate in 10-minute pieces to bound memory
    for s in range(start_s, start_s + seconds, step):
        n = min(step, start_s + seconds - s)
        parsed = dat.parse(dat.encode_records(sim.records(s, n)))
        times.append(parsed.times)
        values.append(parsed.values)
    return np.concatenate(times), np.concatenate(values, axis=1)
