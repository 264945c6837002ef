"""The administrator's manual (docs/manual/) runs as printed.

Every ``sh``, ``upmu-adm`` and ``python`` block of the manual is run, in the manual's
order, against a whole appliance in a temporary folder: the demo's real supervisord
(demokit.demo.Demo) with the real ``btrdb``, ``receiver`` and ``sync2q`` on 127.0.0.1, and
``qss-sim`` as the uPMUs. What the test changes, and nothing else:

- paths of the appliance (``/home/manager``, ``/ssd``, ``/mnt``, ``/media/external``,
  ``/var/log``, ``/tmp/qss-preview``) are mapped into the folder, the server's address
  ``172.16.1.100`` and its ports (1883, 4410, 9000) to the folder's loopback ports;
- ``sudo`` is a no-op, ``supervisorctl`` talks to the folder's supervisord, and
  ``$QSS_CONFIG`` is the folder's ``qss.ini`` for every command, ``qss-get``'s data
  actions included (as on the demo); a ``qss-get`` that would change this machine
  (``--config`` and the like without ``--root``) is refused;
- the USB drive of chapter 4 and the files copied with scp are generated ``.dat`` files.

Blocks marked ``<!-- appliance-only: REASON -->`` are not run (reboot, apt, real drives,
the real network); their programs are still checked. Blocks marked ``<!-- demo -->`` (in
the manual and in the README) are for the demo: they run as printed, nothing mapped and
no shim, from a folder laid out as the suite's (``demo/`` is the appliance's folder,
``.venv`` this Python's environment). The markers ``stdin``, ``expect``,
``exit`` and ``follows`` are described in docs/manual/README.md. The troubleshooting
chapter's quoted log lines are checked against the programs' own message strings.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from demokit.demo import Demo, choose_ports
from qss.queue import open_queue
from test_layers import FLOORS
from waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
MANUAL = ROOT / "docs" / "manual"
BIN = Path(sys.executable).parent
LANGS = ("sh", "upmu-adm", "python")
MARKER = re.compile(r"^<!--\s*([\w-]+)\s*(?::\s*(.*?))?\s*-->\s*$")

# Programs a manual command may start besides the suite's console scripts.
SYSTEM_TOOLS = {
    "cd", "ls", "cat", "head", "tail", "grep", "awk", "cp", "rm", "mkdir", "df", "ip",
    "ping", "ssh", "scp", "passwd", "logout", "shutdown", "reboot", "supervisorctl",
    "systemctl", "nano", "lsblk", "mount", "umount", "findmnt", "shorewall", "apcaccess",
    "curl", "jq", "python3", "ifdown", "ifup", "e2label", ".", "export", "echo", "sed",
    "install", "openssl",
}
BUILTINS = {"cd", "logout", ".", "export", "echo"}


@dataclasses.dataclass
class Block:
    file: str
    line: int
    lang: str
    text: str
    markers: list[tuple[str, str]]

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"

    def marker(self, name: str) -> list[str]:
        return [value for key, value in self.markers if key == name]

    @property
    def appliance_only(self) -> bool:
        return bool(self.marker("appliance-only"))


def manual_blocks() -> list[Block]:
    """Every fenced block of the manual in reading order, with the markers just above it."""
    return [b for path in sorted(MANUAL.glob("*.md")) for b in file_blocks(path)]


def file_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the markers just above it."""
    blocks = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m or not m.group(1):
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while not lines[j].startswith("```"):
            j += 1
        markers, k = [], start - 1
        while k >= 0 and MARKER.match(lines[k]):
            mm = MARKER.match(lines[k])
            markers.insert(0, (mm.group(1), mm.group(2) or ""))
            k -= 1
        blocks.append(Block(path.name, start + 1, lang, "\n".join(lines[start + 1:j]) + "\n",
                            markers))
        i = j + 1
    return blocks


BLOCKS = manual_blocks()
RUNNABLE = [b for b in BLOCKS if b.lang in LANGS and not b.appliance_only]
#: The README's blocks for the demo, run after the manual's on the same appliance.
README_DEMO = [b for b in file_blocks(ROOT / "README.md") if b.marker("demo")]


# -- which programs the commands start ----------------------------------------------------

def _commands_text(script: str) -> str:
    """The script with comments dropped, arithmetic blanked, and unquoted newlines and
    command substitutions turned into command separators, for shlex."""
    out, quote, i = [], None, 0
    while i < len(script):
        ch = script[i]
        if quote:
            quote = None if ch == quote else quote
            out.append(ch)
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "#" and (i == 0 or script[i - 1].isspace()):
            while i < len(script) and script[i] != "\n":
                i += 1
            continue
        elif script.startswith("$((", i):
            i = script.index("))", i) + 2
            out.append("0")
            continue
        elif script.startswith("$(", i):
            out.append(" ; ")
            i += 2
            continue
        elif ch == "\n":
            out.append(" ; ")
        elif ch == ")":
            out.append(" ")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def programs_of(script: str) -> list[str]:
    """The program each command of a shell script starts (after sudo and VAR=value)."""
    lex = shlex.shlex(_commands_text(script), posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = ""
    found, expect_command = [], True
    for tok in lex:
        if tok in ("|", "||", "&&", ";", "&", ">", "<"):
            expect_command = tok not in (">", "<")
            if not expect_command:
                next(lex, None)         # the redirection's file
                expect_command = False
        elif expect_command:
            if re.fullmatch(r"[A-Za-z_]\w*=.*", tok, re.S) or tok == "sudo":
                continue
            found.append(tok)
            expect_command = False
    return found


def console_scripts() -> set[str]:
    return {e.name for e in importlib.metadata.distribution("qss").entry_points
            if e.group == "console_scripts"}


def test_manual_has_every_chapter_and_a_table_of_contents():
    toc = (MANUAL / "README.md").read_text(encoding="utf-8")
    chapters = sorted(p.name for p in MANUAL.glob("[0-9][0-9]-*.md"))
    assert len(chapters) == 17       # the original's 13, the plotter (14), its domains
                                     # and accounts (15, 16), derived streams (17)
    for name in chapters:
        assert f"({name})" in toc, f"README.md does not link {name}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/manual/README.md" in readme


def test_every_command_is_a_known_program():
    scripts = console_scripts()
    known = scripts | SYSTEM_TOOLS
    unknown, missing = [], []
    for block in BLOCKS:
        if block.lang != "sh":
            continue
        for prog in programs_of(block.text):
            if prog not in known:
                unknown.append(f"{block.id}: {prog}")
            elif not block.appliance_only and prog not in BUILTINS and prog not in scripts \
                    and shutil.which(prog) is None:
                missing.append(f"{block.id}: {prog}")
    assert not unknown, f"programs neither in setup.py's console scripts nor known tools: {unknown}"
    assert not missing, f"programs not installed here: {missing}"
    used = {p for b in BLOCKS if b.lang == "sh" for p in programs_of(b.text)}
    # The operator's commands of the suite all appear, each in a block the test runs.
    run = {p for b in RUNNABLE if b.lang == "sh" for p in programs_of(b.text)}
    for prog in ("upmu-adm", "qss-get", "qss-dat", "clean_synced", "qss-sim", "qss-sync2q",
                 "supervisorctl", "curl"):
        assert prog in used and prog in run, prog


def test_nanosecond_times_never_go_through_jq():
    """jq computes in doubles (about 16 digits): a 19-digit time comes out rounded, after
    arithmetic and, with jq 1.6, even when only printed (1796551437991666629 + 1 gives
    1796551437991666700, past the last point)."""
    for block in BLOCKS + README_DEMO:
        for program in re.findall(r"\bjq\s+(?:-\w+\s+)*'([^']*)'", block.text):
            assert not re.search(r"Merged|Brackets|[-+*/]\s*\d", program), \
                f"{block.id}: jq {program!r} rounds nanosecond times"


def test_markers_are_known_and_appliance_only_says_why():
    for block in BLOCKS + README_DEMO:
        for key, value in block.markers:
            assert key in ("appliance-only", "stdin", "expect", "exit", "follows",
                           "demo", "file"), block.id
            if key == "appliance-only":
                assert value, f"{block.id}: appliance-only needs a reason"
            if key == "expect":
                re.compile(value)
    appliance = [b for b in BLOCKS if b.appliance_only]
    assert len(appliance) < len(RUNNABLE) / 1.5, "most commands must run in the test"


# -- the sandbox ------------------------------------------------------------------------

@dataclasses.dataclass
class Sandbox:
    root: Path
    env: dict
    ports: object
    demo: Demo

    def map(self, text: str) -> str:
        """The manual's paths and addresses, as they are in this sandbox."""
        p, r = self.ports, str(self.root)
        # the plotter: HTTPS on the appliance, plain HTTP on a loopback port here
        text = text.replace("https://172.16.1.100/", f"http://127.0.0.1:{p.plotter}/")
        text = text.replace("172.16.1.100:9000", f"127.0.0.1:{p.http}")
        text = text.replace("172.16.1.100:4410", f"127.0.0.1:{p.grpc}")
        text = re.sub(r"--port 1883\b", f"--port {p.receiver}", text)
        text = text.replace("172.16.1.100", "127.0.0.1")
        return re.sub(r"(?<![\w./$-])/(home/manager|ssd|mnt|media/external|var/log|"
                      r"tmp/qss-preview)(?![\w-])", lambda m: f"{r}/{m.group(1)}", text)

    def check_paths(self, block: Block, text: str) -> None:
        """Refuse to run a command naming an absolute path outside the sandbox (the tests
        may run as root)."""
        allowed = (str(self.root), "/dev/null", "/usr/", "/bin/", "/etc/qss/qss.ini")
        for m in re.finditer(r"(?<![\w.$:/-])(/[A-Za-z][\w./-]*)", text):
            path = m.group(1)
            if block.lang == "python" or block.lang == "upmu-adm" and path.startswith("/upmu"):
                continue
            if block.lang == "sh" and re.match(r"/(upmu|lbnl)(/|$)", path):
                continue                # a stream's Path (chapter 15), not a file
            if not path.startswith(allowed) and not text[:m.start()].endswith(("http:/",)):
                raise AssertionError(f"{block.id}: unmapped path {path!r}; add it to the map")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _gen(serial: str, start: str, minutes: int, outdir: Path, *extra: str) -> None:
    subprocess.run([str(BIN / "qss-dat"), "gen", "--serial", serial, "--start", start,
                    "--minutes", str(minutes), *extra, str(outdir)], check=True,
                   capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def sandbox():
    # Short: supervisord's socket path must fit in 108 bytes. The appliance's folder is
    # demo/ in a folder laid out as the suite's, with this Python's environment as .venv
    # (for the demo blocks).
    suite = Path(tempfile.mkdtemp(prefix="qss-man-", dir="/tmp"))
    root = suite / "demo"
    (suite / ".venv").symlink_to(BIN.parent)
    demo = Demo(root)
    ports, _ = choose_ports({"receiver": 0, "grpc": 0, "http": 0, "plotter": 0})
    try:
        demo.write(ports)
        demo.start()
        shim = root / "shim"
        _write(shim / "sudo", '#!/bin/sh\nexec "$@"\n', 0o755)
        _write(shim / "supervisorctl",
               f'#!/bin/sh\nexec {BIN}/supervisorctl -c {demo.conf} "$@"\n', 0o755)
        # qss-get finds the folder's appliance through $QSS_CONFIG; what would change
        # this machine instead (the tests may run as root) is refused.
        _write(shim / "qss-get",
               "#!/bin/sh\ncase \" $* \" in\n  *' --root '*) ;;\n"
               "  *' --config '*|*' -i'*|*' --install'*|*' -u'*|*' --update'*|*' -p'*|"
               "*' --packages'*|*' --rollback '*|*' --mount-'*)\n"
               "    echo \"test: qss-get $* would change this machine\" >&2; exit 99;;\n"
               f"esac\nexec {BIN}/qss-get \"$@\"\n", 0o755)
        # What the operator copied over (scp, chapter 4) and the USB drive's contents.
        _gen("P3112234", "2016-01-01T00:00:00Z", 3, root / "home/manager")
        _gen("P3112233", "2015-12-18T09:00:00Z", 3, root / "media/external", "--extended")
        (root / "mnt").mkdir()
        env = {"PATH": f"{shim}:{BIN}:/usr/local/bin:/usr/bin:/bin",
               "HOME": str(root / "home/manager"), "QSS_CONFIG": str(demo.ini),
               "LANG": "C.UTF-8", "TZ": "UTC", "PYTHONUNBUFFERED": "1", "TERM": "dumb",
               # the code under test, when it is not the installed one (a worktree)
               **{k: os.environ[k] for k in ("PYTHONPATH",) if os.environ.get(k)}}
        yield Sandbox(root, env, ports, demo)
    finally:
        demo.stop()
        shutil.rmtree(suite, ignore_errors=True)


def _wait_synced(box: Sandbox, timeout: float = 30.0) -> None:
    """Until sync2q has stored every queued file (an operator reads slower than it syncs)."""
    def unsynced() -> dict[str, int]:
        with open_queue(f"sqlite:///{box.root}/ssd/srv/queue.db") as q:
            return {serial: s.unsynced_files for serial, s in q.stats().items()
                    if s.unsynced_files}
    wait_until(unsynced, until=lambda left: not left, timeout=timeout, interval=0.2,
               what="sync2q to store every queued file (unsynced files by serial)")


def check_demo_block(block: Block) -> None:
    """A demo block runs as printed on anyone's machine: no absolute path, no sudo, and
    no qss-get action that changes the machine (demo blocks get no shim)."""
    assert block.lang == "sh", block.id
    found = re.findall(r"(?<![\w.$:/-])/[A-Za-z][\w./-]*", block.text)
    assert not found, f"{block.id}: a demo block names absolute paths {found}"
    assert "sudo" not in programs_of(block.text), f"{block.id}: sudo in a demo block"
    assert not re.search(r"qss-get .*(--config|--install|--update|--packages|--rollback|"
                         r"--mount|\s-[iup]\b)", block.text), block.id


def _run(box: Sandbox, block: Block) -> tuple[int, str]:
    text = box.map(block.text)
    box.check_paths(block, text)
    stdin = "".join(block.marker("stdin")).encode().decode("unicode_escape")
    cwd = box.env["HOME"]
    env = box.env
    if block.marker("demo"):
        check_demo_block(block)
        if not (BIN / "activate").exists():
            pytest.skip(f"{block.id}: {BIN.parent} is not a virtual environment")
        text, cwd = block.text, str(box.root.parent)    # the suite's folder
        env = {k: v for k, v in box.env.items() if k not in ("QSS_CONFIG", "PATH")}
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    if block.marker("file"):
        # A file to save (chapter 17's distillate): written where it says, then run.
        path = Path(box.map(block.marker("file")[0]))
        assert block.lang == "python" and str(path).startswith(str(box.root)), block.id
        _write(path, block.text)
        argv = [sys.executable, str(path)]
    elif block.lang == "sh":
        argv = ["bash", "-e", "-o", "pipefail", "-c", text]
    elif block.lang == "upmu-adm":
        argv, stdin = [str(BIN / "upmu-adm")], text + stdin
    else:
        argv = [sys.executable, "-c", text]
    if block.marker("follows"):
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            proc.wait(1.5)
            out = proc.stdout.read().decode(errors="replace")
            return 99, f"ended before Ctrl+C (status {proc.returncode}): {out}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                out = proc.communicate(timeout=10)[0].decode(errors="replace")
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out = proc.communicate()[0].decode(errors="replace")
            return 0, out
    done = subprocess.run(argv, cwd=cwd, env=env, input=stdin.encode(),
                          capture_output=True, timeout=120)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_manual_block_runs(sandbox, block):
    if block.file.startswith("13-"):
        _wait_synced(sandbox)
    _check_run(sandbox, block)


@pytest.mark.parametrize("block", README_DEMO, ids=[b.id for b in README_DEMO])
def test_readme_demo_block_runs(sandbox, block):
    _check_run(sandbox, block)


def test_the_manual_and_the_readme_show_chapters_5_and_6_on_the_demo():
    demo = {b.file for b in BLOCKS if b.marker("demo")}
    assert {"05-backup-restore.md", "06-new-database.md"} <= demo
    shown = " ".join(b.text for b in README_DEMO)
    for action in ("--backup", "--restore", "--clean-synced", "--newdb"):
        assert f"qss-get {action}" in shown, action


def _check_run(sandbox: Sandbox, block: Block) -> None:
    status, out = _run(sandbox, block)
    want = int((block.marker("exit") or ["0"])[0])
    assert status == want, f"{block.id}: exit status {status}, not {want}:\n{block.text}\n{out}"
    if block.lang == "python":
        assert out.strip(), f"{block.id}: printed nothing"
    for pattern in block.marker("expect"):
        assert re.search(pattern, out, re.M), \
            f"{block.id}: output lacks {pattern!r}:\n{block.text}\n{out}"


# -- the troubleshooting chapter's quoted lines -------------------------------------------

#: Every package of the programs (not the benchmarks), as tests/test_layers.py lists them.
PROGRAM_PACKAGES = sorted(set(FLOORS) - {"bench"})


def _code_pieces() -> list[str]:
    """The literal parts of every string in the programs' code (f-string and %-format
    placeholders cut out)."""
    pieces = []
    for package in PROGRAM_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            in_fstring = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
                          for v in node.values}
            docstrings = {id(node.value) for node in ast.walk(tree)
                          if isinstance(node, ast.Expr)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and id(node) not in docstrings:
                    if id(node) in in_fstring:
                        pieces.append(node.value)
                    else:
                        pieces.extend(p.replace("\0", "%") for p in re.split(
                            r"%[-+ #0-9.]*[sdrfg]", node.value.replace("%%", "\0")))
    return pieces


def _covered(fragment: str, pieces: list[str], parts: int = 3) -> bool:
    """Whether ``fragment`` is, between words, at most ``parts`` pieces of the code (a
    value the manual leaves out joins them: "streams created" is "%d streams %s" and
    "created in collection ...")."""
    frag = fragment.strip(" ()[]:;,'\"")
    if len(frag) < 2:
        return True
    if any(frag in p for p in pieces):
        return True
    return parts > 1 and any(
        len(frag[:m.start()].strip(" ()[]:;,'\"")) >= 2
        and any(frag[:m.start()].strip(" ()[]:;,'\"") in p for p in pieces)
        and _covered(frag[m.end():], pieces, parts - 1)
        for m in re.finditer(r"[\s,;:()]+", frag))


def quoted_lines() -> list[tuple[str, str]]:
    """(section, line) for each line quoted in the first column of the chapter's tables."""
    out, section = [], ""
    for row in (MANUAL / "12-troubleshooting.md").read_text(encoding="utf-8").splitlines():
        if row.startswith("## "):
            section = row
        if not row.startswith("| `"):
            continue
        first = row.split(" | ")[0]
        for quote in re.findall(r"`([^`]+)`", first):
            out.append((section, quote))
    return out


def test_troubleshooting_quotes_the_programs_own_lines():
    pieces = _code_pieces()
    lines = quoted_lines()
    assert len(lines) > 60
    wrong = []
    for section, line in lines:
        line = re.sub(r"^(qss-[\w-]+|upmu-adm|clean_synced): error: ", "", line)
        line = re.sub(r"^\.\.\. ?", "", line)
        for fragment in re.split(r"'?<[^<>]+>'?|\.\.\.", line):
            if not _covered(fragment, pieces):
                wrong.append(f"{section}: {line!r}: {fragment.strip()!r}")
    assert not wrong, "quoted lines the code does not print:\n" + "\n".join(wrong)


_PREFIX = r"(?:qss-[\w-]+|upmu-adm|clean_synced): (?:error|warning): "


def prose_quotes() -> list[tuple[str, str]]:
    """(chapter, message) for each message of the suite's programs the manual's text
    quotes: a span with a program's ``error:``/``warning:`` prefix, or one after
    "refuses with", "says", "prints", "answers", "warns", "reports" or "fails with"
    whose subject is not another program (`` `supervisorctl` says ...``)."""
    scripts = console_scripts()
    out = []
    for path in sorted(MANUAL.glob("*.md")):
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        found = {m.start(1): m.group(1) for m in re.finditer(rf"`({_PREFIX}[^`]+)`", text)}
        for m in re.finditer(r"(`[^`]+`\s+)?(?:refuses with|refused with|says|prints|"
                             r"answers|warns|reports|fails with)\s+\(?`([^`]+)`", text):
            subject = (m.group(1) or "").strip("` \n").split(" ")[0]
            if not subject or subject in scripts:
                found.setdefault(m.start(2), m.group(2))
        out += [(path.name, " ".join(quote.split())) for _, quote in sorted(found.items())]
    return out


def test_the_manual_quotes_the_programs_own_messages():
    """What the text says a program prints is what it prints (the troubleshooting
    tables have their own test); an absolute path in a quote stands for a value."""
    pieces = _code_pieces()
    quotes = prose_quotes()
    assert any(q.startswith("qss-get: error: ") for _, q in quotes)
    wrong = []
    for chapter, line in quotes:
        line = re.sub(rf"^{_PREFIX}", "", line)
        for fragment in re.split(r"'?<[^<>]+>'?|\.\.\.|(?<![\w.])/[\w./-]+", line):
            if not _covered(fragment, pieces, parts=2):
                wrong.append(f"{chapter}: {line!r}: {fragment.strip()!r}")
    assert not wrong, "quoted messages the code does not print:\n" + "\n".join(wrong)


def test_sandbox_maps_the_appliance_paths_and_refuses_others(tmp_path):
    ports = type("Ports", (), {"receiver": 11883, "grpc": 14410, "http": 19000,
                             "plotter": 18080})()
    box = Sandbox(tmp_path, {}, ports, None)
    block = Block("x.md", 1, "sh", "", [])
    text = box.map("sudo rm -rf /ssd/data /ssd/srv\ncp /mnt/x /home/manager\n"
                   "curl http://172.16.1.100:9000/status\nqss-sim --host 172.16.1.100 --port 1883")
    assert text == (f"sudo rm -rf {tmp_path}/ssd/data {tmp_path}/ssd/srv\n"
                    f"cp {tmp_path}/mnt/x {tmp_path}/home/manager\n"
                    "curl http://127.0.0.1:19000/status\nqss-sim --host 127.0.0.1 --port 11883")
    box.check_paths(block, text)
    with pytest.raises(AssertionError, match="unmapped path '/etc/shorewall/rules'"):
        box.check_paths(block, box.map("cat /etc/shorewall/rules"))
