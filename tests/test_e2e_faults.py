"""Faults, end to end: while simulated uPMUs push into the whole appliance, the
receiver, sync2q and the BTrDB server are SIGKILLed at seeded random moments (the seed
and every kill are printed), and supervisord restarts each (autorestart). Afterwards
every point of every acknowledged file is in BTrDB exactly once: nothing lost, nothing
doubled. A short run is in the default suite; a longer one is marked slow.
"""
from __future__ import annotations

import os

import pytest

from appliance_support import PROGRAMS, Appliance, run_faults

SEED = int(os.environ.get("QSS_FAULT_SEED", "20151218"))


@pytest.fixture
def appliance(request):
    with Appliance(request.param) as app:
        yield app
    assert app.leftovers == [], f"processes left after shutdown: {app.leftovers}"


@pytest.mark.parametrize("appliance", [2], indirect=True)
def test_after_one_sigkill_of_each_program_every_point_is_in_btrdb_exactly_once(appliance):
    figures = run_faults(appliance, interval=0.2, kills=3, seed=SEED, pause=(0.3, 1.5))
    assert figures["by_program"] == {p: 1 for p in sorted(PROGRAMS)}
    assert figures["files_checked"] >= figures["files_acknowledged"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("appliance", [4], indirect=True)
def test_after_many_random_sigkills_every_point_is_in_btrdb_exactly_once(appliance):
    figures = run_faults(appliance, interval=0.1, kills=15, seed=SEED + 1, pause=(0.3, 4.0))
    assert figures["by_program"] == {p: 5 for p in sorted(PROGRAMS)}
    assert figures["files_checked"] >= figures["files_acknowledged"] > 0
