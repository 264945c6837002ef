"""Program metadata's pieces without a supervisor: the report of who sees which domain,
and the reload stamp the plotter watches."""
from __future__ import annotations

import os

from plotter.metadata import ReloadStamp, domain_report, touch
from qss.tagconfig import parse
from qss.upmuconfig import UpmuList

from domains import upmuconfig_in_domains  # tests/ is on sys.path


def upmus(tmp_path, domains):
    return UpmuList.load(str(upmuconfig_in_domains(tmp_path / "upmuconfig.ini", domains)))


def test_the_report_says_who_sees_each_domain(tmp_path):
    config = parse('{"public": ["/upmu"], "lbnl": ["/lbnl"], "one": ["/psl/uPMU3"]}')
    users = {"peter": ("psl", "lbnl", "pge"), "ann": ("lbnl",)}
    lines = domain_report(config, upmus(tmp_path, ["upmu", "lbnl", "psl", "pge"]), users)
    assert lines == [
        "domain /lbnl (uPMU2): tag lbnl (ann, peter)",
        "domain /pge (uPMU4): nobody (no tag of tagconfig.json opens it)",
        "domain /psl (uPMU3): tag one in part",
        "domain /upmu (uPMU1): public (everyone)",
        "tag pge of user(s) peter is not in tagconfig.json: it opens nothing",
        "tag psl of user(s) peter is not in tagconfig.json: it opens nothing",
    ]


def test_the_stamp_calls_back_once_per_change_looking_once_a_second(tmp_path):
    now, calls = [0.0], []
    path = tmp_path / "mr-plotter.reload"
    stamp = ReloadStamp(str(path), lambda: calls.append(now[0]), clock=lambda: now[0])
    stamp.check()                       # no stamp yet: noted
    touch(str(path))
    now[0] = 0.5
    stamp.check()                       # within the second: not looked at
    now[0] = 1.0
    stamp.check()
    stamp.check()
    assert calls == [1.0]
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    now[0] = 2.5
    stamp.check()
    assert calls == [1.0, 2.5]
