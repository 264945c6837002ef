"""configobj files as the suite keeps them: parsed with line-numbered errors, locked,
written atomically, and re-rendered so that untouched text survives byte for byte.

How re-rendering works: :class:`IniDocument` keeps the file's original lines next to
the parsed ``ConfigObj``. When it renders, every top-level piece (the initial comment,
the top-level keys, each ``[section]`` with the comment lines just above it, the final
comment) that is unchanged since parsing is copied from the original lines; only
changed or new pieces are rendered, in the layout the original uPMU tools wrote::

    [192.168.1.24]
    %serial_number = P3112233
        [[L1MAG]]
        uuid = 3af77b3f-3c04-4c34-9b1d-20481e1fb89f

(every line of a depth-``d`` section, marker and keys, indented ``d - 1`` levels).
The split of the original lines into pieces is checked by parsing each piece on its
own; if any check fails (say, a triple-quoted value holding a ``[line]``), the whole
file is rendered instead, which is still an equivalent file, just re-indented.

configobj runs with ``interpolation=False`` and ``list_values=False``: values are kept
literally (commas, quotes and ``%`` are not interpreted), so they round-trip as written.
Callers strip one pair of surrounding quotes when they interpret a value
(:func:`unquote`). Writing goes through the unmerged ``ConfigObj`` of the user's file,
never a copy merged with defaults, so comments survive (dbcli/pgcli#1240).
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from configobj import ConfigObj, ConfigObjError, Section

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_LINE_END = re.compile(r"(?:\r\n|\r|\n)\Z")
_AT_LINE = re.compile(r"\s+at line \d+\.?\Z")

# configobj's messages, said the way an operator can act on them.
_REASONS = {
    "Invalid line": "not a [section], key = value or # comment",
    "Duplicate keyword name": "duplicate key in this section",
    "Duplicate section name": "duplicate section",
    "Section too nested": "section nested more than one level below its parent",
    "Cannot compute the section depth": "unbalanced [ ] in section marker",
    "Cannot compute nesting level": "section depth matches no enclosing section",
    "Parse error in multiline value": "unterminated triple-quoted value",
    "Parse error in value": "badly quoted value",
}


class IniError(Exception):
    """A settings or list file that cannot be read, parsed or written.

    ``path`` names the file; ``errors`` lists ``(line_number, reason)`` for syntax errors
    (empty for other problems).
    """

    def __init__(self, message: str, path: str | None = None,
                 errors: tuple[tuple[int, str], ...] = ()):
        super().__init__(message)
        self.path = path
        self.errors = errors


class Fingerprint(NamedTuple):
    """What changes when a file is replaced or rewritten: cheap to poll with ``os.stat``."""

    ino: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, st: os.stat_result) -> Fingerprint:
        """The fingerprint of a stat result (``os.stat`` or ``os.fstat``)."""
        return cls(st.st_ino, st.st_mtime_ns, st.st_size)


def fingerprint(path: str) -> Fingerprint | None:
    """The file's (inode, mtime in ns, size), or None when it does not exist.

    Readers poll this and reload when it differs from the fingerprint of what they loaded.
    """
    try:
        return Fingerprint.of(os.stat(path))
    except FileNotFoundError:
        return None


def unquote(value: str) -> str:
    """The value without one pair of matching surrounding quotes, as configobj's list
    mode (and so the original tools) would have read it."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def split_lines(text: str) -> list[str]:
    """Lines with their endings; only CR, LF and CRLF end a line (not form feeds)."""
    return _LINE.findall(text)


def parse_lines(lines: list[str], path: str,
                error: type[IniError] = IniError) -> ConfigObj:
    """Parse lines (with or without endings) into a literal, unmerged ConfigObj.

    Raises:
        error: naming the file, the first bad line's number, reason and text, and the
            numbers of any further bad lines.
    """
    try:
        return ConfigObj(list(lines), interpolation=False, list_values=False,
                         raise_errors=False, file_error=False, encoding=None)
    except ConfigObjError as exc:
        found = getattr(exc, "errors", None) or [exc]
        errors = tuple((e.line_number or 0, _reason(e)) for e in found)
        first = found[0]
        message = f"{path}: line {first.line_number}: {errors[0][1]}: {first.line.strip()!r}"
        if len(found) > 1:
            more = ", ".join(str(n) for n, _ in errors[1:])
            message += f" (also bad: line{'s' if len(found) > 2 else ''} {more})"
        raise error(message, path, errors) from exc


def _reason(exc: ConfigObjError) -> str:
    text = _AT_LINE.sub("", str(exc))
    for prefix, reason in _REASONS.items():
        if text.startswith(prefix):
            return reason
    return text


def decode(data: bytes, path: str, error: type[IniError] = IniError) -> str:
    """UTF-8 text of a file's bytes.

    Raises:
        error: naming the file and the line of the first byte that is not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise error(f"{path}: line {line}: not UTF-8 text (byte {data[exc.start]:#04x})",
                    path) from exc


class IniDocument:
    """A parsed file that renders back to its original text wherever it is unchanged."""

    def __init__(self, text: str, path: str, error: type[IniError] = IniError):
        """Raises ``error`` for a syntax error (see :func:`parse_lines`)."""
        self.path = path
        self.bom = text.startswith("\ufeff")
        self.lines = split_lines(text[1:] if self.bom else text)
        self.config = parse_lines(self.lines, path, error)
        self.newline = self.config.newlines or "\n"
        # A file without any indentation still gets readable nesting in new sections.
        self.indent = self.config.indent_type or "    "

    # -- rendering ------------------------------------------------------------------

    def render(self) -> str:
        """The file's text: original lines where unchanged, rendered lines elsewhere."""
        cfg = self.config
        orig = parse_lines(self.lines, self.path)
        pieces = self._pieces(orig)
        out: list[str] = []

        def raw(lines: list[str]) -> None:
            if out and lines and not _LINE_END.search(out[-1]):
                out[-1] += self.newline
            out.extend(lines)

        def rendered(lines: list[str]) -> None:
            raw([line + self.newline for line in lines])

        if pieces is not None and cfg.initial_comment == orig.initial_comment:
            raw(pieces["initial"])
        else:
            rendered(self._comment_lines(cfg.initial_comment, ""))
        root = [line for key in cfg.scalars for line in self.entry_lines(cfg, key)]
        if pieces is not None and root == [
                line for key in orig.scalars for line in self.entry_lines(orig, key)]:
            raw(pieces["root"])
        else:
            rendered(root)
        for name in cfg.sections:
            lines = self.entry_lines(cfg, name)
            if (pieces is not None and name in orig.sections
                    and lines == self.entry_lines(orig, name)):
                raw(pieces["[" + name])
            else:
                rendered(lines)
        if pieces is not None and cfg.final_comment == orig.final_comment:
            raw(pieces["final"])
        else:
            rendered(self._comment_lines(cfg.final_comment, ""))
        return ("\ufeff" if self.bom else "") + "".join(out)

    def entry_lines(self, section: Section, name: str,
                    comments: bool = True) -> list[str]:
        """Lines (without endings) for one key or subsection, in the original tools' layout."""
        value = section[name]
        is_section = isinstance(value, Section)
        depth = value.depth if is_section else section.depth
        indent = self.indent * max(depth - 1, 0)
        out = self._comment_lines(section.comments.get(name, []), indent) if comments else []
        inline = section.inline_comments.get(name)
        tail = " " + inline if inline else ""
        if is_section:
            out.append(f"{indent}{'[' * depth}{_key_text(name)}{']' * depth}{tail}")
            for entry in value.scalars + value.sections:
                out.extend(self.entry_lines(value, entry))
        else:
            text = self.config._quote(value) if value != "" else ""  # noqa: SLF001
            out.append(f"{indent}{_key_text(name)} ={' ' + text if text else ''}{tail}")
        return out

    @staticmethod
    def _comment_lines(comments: list[str], indent: str) -> list[str]:
        out = []
        for line in comments:
            line = line.strip()
            if line and not line.startswith("#"):
                line = "# " + line
            out.append(indent + line if line else "")
        return out

    def _pieces(self, orig: ConfigObj) -> dict[str, list[str]] | None:
        """The original lines split as configobj attributed them, or None if unsure."""
        lines = self.lines
        blank = [not ln.strip() or ln.strip().startswith("#") for ln in lines]
        entries = [i for i, b in enumerate(blank) if not b]
        if not entries:
            return {"initial": lines, "root": [], "final": []}
        first, last = entries[0], entries[-1]
        markers = []
        for i in entries:
            mat = orig._sectionmarker.match(lines[i].rstrip("\r\n"))  # noqa: SLF001
            if mat is not None and mat.group(2).count("[") == 1:
                markers.append((i, orig._unquote(mat.group(3))))  # noqa: SLF001
        if [name for _, name in markers] != list(orig.sections):
            return None
        starts = []
        for i, _ in markers:
            while i > first and blank[i - 1]:
                i -= 1
            starts.append(i)
        bounds = starts + [last + 1]
        pieces = {"initial": lines[:first], "root": lines[first:bounds[0]],
                  "final": lines[last + 1:]}
        for k, (_, name) in enumerate(markers):
            pieces["[" + name] = lines[bounds[k]:bounds[k + 1]]
        return pieces if self._pieces_agree(orig, pieces, markers) else None

    def _pieces_agree(self, orig: ConfigObj, pieces: dict[str, list[str]],
                      markers: list[tuple[int, str]]) -> bool:
        def strip(lines: list[str]) -> list[str]:
            return [ln.rstrip("\r\n") for ln in lines]

        if (strip(pieces["initial"]) != orig.initial_comment
                or strip(pieces["final"]) != orig.final_comment):
            return False
        try:
            alone = parse_lines(pieces["root"], self.path)
            if alone.sections or alone.initial_comment or alone.final_comment or [
                    ln for k in alone.scalars for ln in self.entry_lines(alone, k)] != [
                    ln for k in orig.scalars for ln in self.entry_lines(orig, k)]:
                return False
            for _, name in markers:
                alone = parse_lines(pieces["[" + name], self.path)
                if (alone.sections != [name] or alone.scalars or alone.final_comment
                        or alone.initial_comment != orig.comments[name]
                        or self.entry_lines(alone, name, comments=False)
                        != self.entry_lines(orig, name, comments=False)):
                    return False
        except IniError:
            return False
        return True


def _key_text(name: str) -> str:
    if name and name.strip() == name and not re.search(r"[=#\[\]\"']", name):
        return name
    return f"'{name}'" if '"' in name else f'"{name}"'


# -- locking and atomic writing ------------------------------------------------------

@dataclass
class LockedFile:
    """An open, flocked file: ``data`` is its content read under the lock."""

    fd: int
    stat: os.stat_result
    created: bool
    data: bytes


@contextlib.contextmanager
def locked(path: str, *, exclusive: bool, create: bool,
           error: type[IniError] = IniError) -> Iterator[LockedFile | None]:
    """Open ``path``, ``flock`` it (shared or exclusive), read it, and yield it.

    Yields None when the file does not exist and ``create`` is false. With ``create``,
    a missing file is created empty (``created`` is then true) so there is something to
    lock. Writers replace the file by rename, so a lock taken on a file that has since
    been replaced is dropped and taken again on the current one.

    Raises:
        error: the directory is missing, the path is not a regular file, or it cannot be
            opened or read (permissions).
    """
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    while True:
        opened = _open(path, create, error)
        if opened is None:
            yield None
            return
        fd, created = opened
        try:
            fcntl.flock(fd, mode)
            st = os.fstat(fd)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) != (current.st_dev, current.st_ino):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise error(f"{path}: not a regular file", path)
            try:
                data = _read_all(fd)
            except OSError as exc:
                raise error(f"{path}: cannot read: {exc.strerror}", path) from exc
            yield LockedFile(fd, st, created, data)
            return
        finally:
            os.close(fd)


def _open(path: str, create: bool, error: type[IniError]) -> tuple[int, bool] | None:
    while True:
        try:
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False
            except FileNotFoundError:
                _check_directory(path, error)
                if not create:
                    return None
                try:
                    flags = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                    return os.open(path, flags, 0o644), True
                except FileExistsError:
                    continue
        except OSError as exc:
            raise error(f"{path}: cannot open: {exc.strerror}", path) from exc


def _check_directory(path: str, error: type[IniError]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise error(f"{path}: directory {directory} does not exist", path)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def atomic_write(path: str, data: bytes, like: os.stat_result | None = None,
                 error: type[IniError] = IniError) -> Fingerprint:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never
    a mix, even after a crash: temporary file in the same directory, fsync, rename, fsync
    of the directory. The new file gets ``like``'s permissions (and owner, when allowed).

    Callers hold the file's lock (see :func:`locked`) so writers do not interleave.

    Raises:
        error: naming the file and the system's reason; the old file is then untouched.
    """
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise error(f"{path}: cannot write: {exc.strerror}", path) from exc
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if like is not None:
                os.fchmod(fd, stat.S_IMODE(like.st_mode))
                if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
                    # Root editing the manager's file must not leave it root-owned.
                    with contextlib.suppress(PermissionError):
                        os.fchown(fd, like.st_uid, like.st_gid)
            os.fsync(fd)
            written = Fingerprint.of(os.fstat(fd))
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise error(f"{path}: cannot write: {exc.strerror or exc}", path) from exc
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return written
