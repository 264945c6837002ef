"""Appliance settings (qss.settings, architecture §5): defaults < file < environment < flags."""
from __future__ import annotations

import argparse
import os

import pytest

from qss import settings as qsettings
from qss.settings import (HostPort, Settings, SettingsError, add_settings_arguments,
                          is_mongodb, load_settings, local_mongodb, mongodb_hosts,
                          parse_hostport, render_default_ini, settings_from_args)

ALL_FLAGS = ("upmuconfig", "backupconfig", "data", "srv", "queue", "btrdb", "listen",
             "max_disk_percent", "max_buffer_mb", "grpc", "http")


@pytest.fixture(autouse=True)
def no_default_file(tmp_path, monkeypatch):
    monkeypatch.setattr(qsettings, "DEFAULT_CONFIG", str(tmp_path / "absent" / "qss.ini"))


@pytest.fixture
def ini(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "qss.ini"
        path.write_text(text)
        return str(path)
    return write


def parse(argv, *names, environ=None):
    parser = argparse.ArgumentParser(prog="qss-test")
    add_settings_arguments(parser, *(names or ALL_FLAGS))
    return settings_from_args(parser.parse_args(argv), environ or {})


def test_defaults_when_the_default_file_is_missing():
    s = load_settings(environ={})
    assert s == Settings() and s.source is None and s.warnings == ()
    assert s.paths.upmuconfig == "/home/manager/upmuconfig.ini"
    assert s.paths.backupconfig == "/home/manager/backupconfig.ini"
    assert (s.paths.data, s.paths.srv) == ("/ssd/data", "/ssd/srv")
    assert s.queue.url == "sqlite:////ssd/srv/queue.db"
    assert s.queue.scheme == "sqlite" and s.queue.sqlite_path == "/ssd/srv/queue.db"
    assert s.btrdb.endpoints == (HostPort("127.0.0.1", 4410),)
    assert s.btrdb.conn_str == "127.0.0.1:4410"
    assert s.receiver.listen == HostPort("0.0.0.0", 1883)
    assert s.receiver.max_disk_percent == 98
    assert (str(s.store.grpc), str(s.store.http)) == ("127.0.0.1:4410", "127.0.0.1:9000")


def test_the_default_file_is_read(tmp_path, monkeypatch):
    path = tmp_path / "etc-qss.ini"
    path.write_text("[receiver]\nlisten = 127.0.0.1:1884\n")
    monkeypatch.setattr(qsettings, "DEFAULT_CONFIG", str(path))
    s = load_settings(environ={})
    assert s.receiver.listen == HostPort("127.0.0.1", 1884) and s.source == str(path)


def test_a_named_missing_file_is_an_error(tmp_path):
    missing = str(tmp_path / "nope.ini")
    with pytest.raises(SettingsError) as exc:
        load_settings(missing, environ={})
    assert str(exc.value) == f"{missing}: no such settings file (named by --config)"
    with pytest.raises(SettingsError) as exc:
        load_settings(environ={"QSS_CONFIG": missing})
    assert str(exc.value) == f"{missing}: no such settings file (named by $QSS_CONFIG)"


def test_config_flag_beats_qss_config(ini, tmp_path):
    path = ini("[store]\nhttp = 127.0.0.1:9100\n")
    other = tmp_path / "other.ini"
    other.write_text("[store]\nhttp = 127.0.0.1:9200\n")
    assert load_settings(environ={"QSS_CONFIG": path}).store.http.port == 9100
    s = parse(["--config", str(other)], "grpc", environ={"QSS_CONFIG": path})
    assert s.store.http.port == 9200 and s.source == str(other)


def test_precedence_defaults_file_environment_flags(ini):
    path = ini("[btrdb]\nendpoints = 10.0.0.1:4410\n[queue]\nurl = sqlite:////data/q.db\n"
               "[receiver]\nlisten = 10.0.0.1:1883\nmax_disk_percent = 90\n")
    env = {"BTRDB_ENDPOINTS": "10.0.0.2:4410", "MONGO_ADDR": "db.local"}
    only_file = parse(["--config", path])
    assert only_file.btrdb.conn_str == "10.0.0.1:4410"
    assert only_file.queue.url == "sqlite:////data/q.db"
    assert only_file.receiver.max_disk_percent == 90
    assert only_file.store == Settings().store                       # default kept
    with_env = parse(["--config", path], environ=env)
    assert with_env.btrdb.conn_str == "10.0.0.2:4410"
    assert with_env.queue.url == "mongodb://db.local"
    assert with_env.receiver.listen == HostPort("10.0.0.1", 1883)     # file kept
    flags = parse(["--config", path, "--btrdb", "10.0.0.3:4410,[::1]:4411", "--queue",
                   "mongodb://m:27018", "--listen", "[::]:1999", "--max-disk-percent",
                   "95.5"], environ=env)
    assert flags.btrdb.conn_str == "10.0.0.3:4410,[::1]:4411"
    assert flags.queue.url == "mongodb://m:27018"
    assert flags.receiver.listen == HostPort("::", 1999)
    assert flags.receiver.max_disk_percent == 95.5


def test_empty_environment_variables_count_as_unset(ini):
    path = ini("[btrdb]\nendpoints = 10.0.0.1:4410\n")
    s = load_settings(path, environ={"BTRDB_ENDPOINTS": "", "MONGO_ADDR": ""})
    assert s.btrdb.conn_str == "10.0.0.1:4410" and s.queue == Settings().queue


def test_a_command_gets_only_the_flags_it_declares():
    parser = argparse.ArgumentParser(prog="qss-test")
    add_settings_arguments(parser, "queue", "btrdb")
    args = parser.parse_args(["--queue", "mongodb://x"])
    assert settings_from_args(args, {}).queue.url == "mongodb://x"
    with pytest.raises(SystemExit):
        parser.parse_args(["--listen", "0.0.0.0:1"])
    with pytest.raises(ValueError) as exc:
        add_settings_arguments(argparse.ArgumentParser(), "queue", "colour")
    assert "colour" in str(exc.value)


def test_every_flag_has_help_naming_its_key():
    parser = argparse.ArgumentParser(prog="qss-test")
    add_settings_arguments(parser, *ALL_FLAGS)
    text = parser.format_help()
    for flag, key in [("--upmuconfig", "[paths] upmuconfig"), ("--srv", "[paths] srv"),
                      ("--queue", "[queue] url"), ("--btrdb", "[btrdb] endpoints"),
                      ("--max-disk-percent", "[receiver] max_disk_percent"),
                      ("--http", "[store] http"), ("--config", qsettings.DEFAULT_CONFIG)]:
        # argparse wraps at spaces and hyphens: compare without whitespace.
        assert flag in text and key.replace(" ", "") in "".join(text.split())
    for action in parser._actions:
        assert action.help, action.option_strings


def test_path_flags_are_made_absolute_file_paths_must_be(ini, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = parse(["--upmuconfig", "u.ini", "--data", "d"])
    assert s.paths.upmuconfig == str(tmp_path / "u.ini")
    assert s.paths.data == str(tmp_path / "d")
    path = ini("[paths]\nsrv = srv\n")
    with pytest.raises(SettingsError) as exc:
        load_settings(path, environ={})
    assert str(exc.value) == f"{path}: [paths] srv = 'srv': must be an absolute path"


def test_quoted_values_and_comments_in_the_file(ini):
    path = ini('# site settings\n[receiver]\nlisten = "0.0.0.0:2883"  # moved\n'
               "max_disk_percent = '97'\n")
    s = load_settings(path, environ={})
    assert s.receiver.listen.port == 2883 and s.receiver.max_disk_percent == 97


def test_unknown_sections_and_keys_are_warnings(ini):
    path = ini("stray = 1\n[receiver]\nlisten = 0.0.0.0:1883\nbacklog = 5\n"
               "[[tls]]\ncert = x\n[log]\nlevel = debug\n")
    s = load_settings(path, environ={})
    assert s == Settings()
    assert s.warnings == (
        f"{path}: key 'stray' outside any section ignored (sections: paths, queue, btrdb, "
        f"receiver, store, plotter, distil)",
        f"{path}: [receiver] unknown subsection [[tls]] ignored",
        f"{path}: [receiver] unknown key 'backlog' ignored (known: listen, "
        f"max_disk_percent, max_buffer_mb)",
        f"{path}: unknown section [log] ignored (known: paths, queue, btrdb, receiver, "
        f"store, plotter, distil)",
    )


def test_syntax_errors_name_the_line(ini):
    path = ini("[receiver]\nlisten 0.0.0.0:1883\n[store\n")
    with pytest.raises(SettingsError) as exc:
        load_settings(path, environ={})
    assert str(exc.value) == (f"{path}: line 2: not a [section], key = value or # comment: "
                              f"'listen 0.0.0.0:1883' (also bad: line 3)")
    assert exc.value.errors[0][0] == 2 and exc.value.path == path


FILE_ERRORS = [
    ("receiver", "listen", "0.0.0.0", "missing :PORT (e.g. 127.0.0.1:4410, [::1]:4410 or "
                                      "localhost:4410)"),
    ("receiver", "listen", "0.0.0.0:0", "port must be a number from 1 to 65535, not '0'"),
    ("receiver", "listen", "0.0.0.0:65536",
     "port must be a number from 1 to 65535, not '65536'"),
    ("receiver", "listen", "0.0.0.0:http", "port must be a number from 1 to 65535, not 'http'"),
    ("receiver", "listen", ":1883", "missing host (e.g. 127.0.0.1:4410, [::1]:4410 or "
                                    "localhost:4410)"),
    ("receiver", "listen", "::1:1883", "an IPv6 address needs brackets, e.g. [::1]:4410"),
    ("receiver", "listen", "[::1:1883", "missing ] after IPv6 address (e.g. 127.0.0.1:4410, "
                                        "[::1]:4410 or localhost:4410)"),
    ("receiver", "listen", "[1.2.3.4]:1883", "'1.2.3.4' is not an IPv6 address"),
    ("receiver", "listen", "[::1]1883", "expected :PORT after ] (e.g. 127.0.0.1:4410, "
                                        "[::1]:4410 or localhost:4410)"),
    ("receiver", "listen", "300.1.1.1:1883", "'300.1.1.1' is not an IPv4 address"),
    ("store", "grpc", "bad!host:4410", "'bad!host' is not a valid host name"),
    ("store", "grpc", "a..b:4410", "'a..b' is not a valid host name"),
    ("store", "http", "-x.example:9000", "'-x.example' is not a valid host name"),
    ("receiver", "max_disk_percent", "0", "must be a number from 1 to 100"),
    ("receiver", "max_disk_percent", "100.5", "must be a number from 1 to 100"),
    ("receiver", "max_disk_percent", "98%", "must be a number from 1 to 100"),
    ("receiver", "max_disk_percent", "nan", "must be a number from 1 to 100"),
    ("receiver", "max_buffer_mb", "3", "must be a whole number of MiB from 4 to 65536"),
    ("receiver", "max_buffer_mb", "64.5", "must be a whole number of MiB from 4 to 65536"),
    ("queue", "url", "redis://localhost", "expected sqlite:////ABSOLUTE/PATH or "
                                          "mongodb://HOST[:PORT]"),
    ("queue", "url", "sqlite:///queue.db", "the database path must be absolute, e.g. "
                                           "sqlite:////ssd/srv/queue.db"),
    ("queue", "url", "mongodb://", "bad MongoDB host: missing host (e.g. 127.0.0.1:4410, "
                                   "[::1]:4410 or localhost:4410)"),
    ("queue", "url", "mongodb://db:99999", "bad MongoDB host: port must be a number from 1 "
                                           "to 65535, not '99999'"),
    ("btrdb", "endpoints", "", "expected one or more HOST:PORT separated by commas, e.g. "
                               "127.0.0.1:4410"),
    ("btrdb", "endpoints", "a:1,,b:2", "expected one or more HOST:PORT separated by commas, "
                                       "e.g. 127.0.0.1:4410"),
    ("btrdb", "endpoints", "a:1,b", "endpoint 'b': missing :PORT (e.g. 127.0.0.1:4410, "
                                    "[::1]:4410 or localhost:4410)"),
    ("paths", "data", "ssd/data", "must be an absolute path"),
]


@pytest.mark.parametrize("section,key,value,reason", FILE_ERRORS)
def test_bad_values_in_the_file(ini, section, key, value, reason):
    path = ini(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(SettingsError) as exc:
        load_settings(path, environ={})
    assert str(exc.value) == f"{path}: [{section}] {key} = {value!r}: {reason}"


@pytest.mark.parametrize("argv,message", [
    (["--listen", "0.0.0.0:99999"],
     "--listen '0.0.0.0:99999': port must be a number from 1 to 65535, not '99999'"),
    (["--max-disk-percent", "101"], "--max-disk-percent '101': must be a number from 1 to 100"),
    (["--queue", "sqlite:///q.db"], "--queue 'sqlite:///q.db': the database path must be "
                                    "absolute, e.g. sqlite:////ssd/srv/queue.db"),
    (["--btrdb", "x"], "--btrdb 'x': endpoint 'x': missing :PORT (e.g. 127.0.0.1:4410, "
                       "[::1]:4410 or localhost:4410)"),
])
def test_bad_flags(argv, message):
    with pytest.raises(SettingsError) as exc:
        parse(argv)
    assert str(exc.value) == message


def test_bad_environment():
    with pytest.raises(SettingsError) as exc:
        load_settings(environ={"BTRDB_ENDPOINTS": "localhost"})
    assert str(exc.value) == ("environment variable BTRDB_ENDPOINTS = 'localhost': endpoint "
                              "'localhost': missing :PORT (e.g. 127.0.0.1:4410, [::1]:4410 or "
                              "localhost:4410)")
    with pytest.raises(SettingsError) as exc:
        load_settings(environ={"MONGO_ADDR": "db:0"})
    assert str(exc.value) == ("environment variable MONGO_ADDR = 'db:0': port must be a "
                              "number from 1 to 65535, not '0' (expected the HOST[:PORT] of "
                              "MongoDB)")


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:4410", HostPort("127.0.0.1", 4410)),
    ("[::1]:4410", HostPort("::1", 4410)),
    ("localhost:1", HostPort("localhost", 1)),
    ("btrdb_1:4410", HostPort("btrdb_1", 4410)),
    ("btrdb-1.grid.example.org:65535", HostPort("btrdb-1.grid.example.org", 65535)),
    (" 0.0.0.0:1883 ", HostPort("0.0.0.0", 1883)),
])
def test_host_port_forms(text, expected):
    assert parse_hostport(text) == expected
    assert parse_hostport(str(expected)) == expected


def test_host_port_default_port():
    assert parse_hostport("db", default_port=27017) == HostPort("db", 27017)
    assert parse_hostport("[fe80::1]", default_port=27017) == HostPort("fe80::1", 27017)


def test_mongodb_urls_with_credentials_and_replica_sets(ini):
    url = "mongodb://user:pw@db1:27017,db2/upmu_database?replicaSet=rs0"
    s = load_settings(ini(f"[queue]\nurl = {url}\n"), environ={})
    assert s.queue.url == url and s.queue.scheme == "mongodb" and s.queue.sqlite_path is None


def test_a_mongodb_srv_url_is_a_mongodb_queue_as_the_stores_take_it(ini):
    """The queue, the plotter's stores and DISTIL's state open ``mongodb+srv://``: the
    settings accept it too (they refused it)."""
    url = "mongodb+srv://qss:pw@cluster0.example.org/upmu_database?tls=true"
    s = load_settings(ini(f"[queue]\nurl = {url}\n"), environ={})
    assert s.queue.url == url and s.queue.scheme == "mongodb" and s.queue.sqlite_path is None
    assert is_mongodb(url) and mongodb_hosts(url) == () and local_mongodb(url) is None


@pytest.mark.parametrize("url, reason", [
    ("mongodb+srv://cluster0.example.org:27017/", "'cluster0.example.org:27017'"),
    ("mongodb+srv://a.example.org,b.example.org/", "'a.example.org,b.example.org'"),
    ("mongodb+srv://10.0.0.5/", "'10.0.0.5'"),
    ("mongodb+srv://[::1]/", "'[::1]'"),
    ("mongodb+srv:///upmu_database", "''"),
])
def test_a_mongodb_srv_url_takes_one_host_name_without_a_port(ini, url, reason):
    path = ini(f"[queue]\nurl = {url}\n")
    with pytest.raises(SettingsError) as exc:
        load_settings(path, environ={})
    assert str(exc.value) == (f"{path}: [queue] url = {url!r}: bad MongoDB host: "
                              f"mongodb+srv:// takes one host name without a port, not "
                              f"{reason}")


@pytest.mark.parametrize("url, local", [
    ("mongodb://localhost", HostPort("127.0.0.1", 27017)),
    ("mongodb://localhost:27018/upmu_database", HostPort("127.0.0.1", 27018)),
    ("mongodb://LocalHost.:27018", HostPort("127.0.0.1", 27018)),
    ("mongodb://qss:s3cret@127.0.0.1:27019/?w=1", HostPort("127.0.0.1", 27019)),
    ("mongodb://127.0.0.2", HostPort("127.0.0.2", 27017)),
    ("mongodb://[::1]:27018", HostPort("::1", 27018)),
    ("mongodb://[::1]", HostPort("::1", 27017)),
    ("mongodb://db.example.org:27017", None),
    ("mongodb://10.0.0.5", None),
    ("mongodb://[fe80::1]:27017", None),
    ("mongodb://localhost:27017,localhost:27018/?replicaSet=rs0", None),   # a replica set
    ("mongodb+srv://localhost.example.org/", None),                         # DNS names them
    ("mongodb+srv://localhost/", None),
    ("mongodb://localhost:99999", None),                                    # not good
    ("sqlite:////ssd/srv/queue.db", None),
])
def test_a_mongodb_on_this_machine_is_one_loopback_server(url, local):
    """What qss-get --config runs a mongo program for, and where that binds."""
    assert local_mongodb(url) == local


def test_default_ini_loads_back_to_the_defaults(ini):
    text = render_default_ini()
    s = load_settings(ini(text), environ={})
    assert s == Settings() and s.warnings == ()
    assert "max_disk_percent = 98\n" in text and "url = sqlite:////ssd/srv/queue.db\n" in text
    custom = parse(["--listen", "[::]:1999", "--btrdb", "a:1,b:2", "--max-disk-percent",
                    "90.5", "--queue", "mongodb://m"])
    again = load_settings(ini(render_default_ini(custom)), environ={})
    assert again == custom


def test_unreadable_and_undecodable_files(tmp_path, ini):
    with pytest.raises(SettingsError) as exc:
        load_settings(str(tmp_path), environ={})
    assert str(exc.value) == f"{tmp_path}: cannot read: Is a directory"
    path = tmp_path / "qss.ini"
    path.write_bytes(b"[store]\n\xff = 1\n")
    with pytest.raises(SettingsError) as exc:
        load_settings(str(path), environ={})
    assert str(exc.value) == f"{path}: line 2: not UTF-8 text (byte 0xff)"
    assert os.path.exists(path)
