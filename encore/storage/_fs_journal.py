"""The undo journal that makes ``FileSystemStore`` writes atomic.

A write (or a whole transaction) runs under the store's exclusive lock.
Before files are replaced, ``_Journal.protect`` appends one JSON line
``[name, undo]`` per file to the journal file (``<magic>.journal``), then
hard-links the current file to the undo file ``undo`` (None: the file did
not exist). Deleting the journal commits; ``rollback`` puts the undo files
back. A journal left by a killed writer is read back with
``_journal_entries`` and undone by the next process that takes the lock.
See the "Atomicity" section of ``encore.storage.filesystem_store``.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from typing import TYPE_CHECKING

from ._fs_keys import KEY_SUFFIX, _split

if TYPE_CHECKING:
    from .filesystem_store import FileSystemStore


class _Journal:
    """Undo journal of one transaction (see the module docstring)."""

    def __init__(self, store: FileSystemStore) -> None:
        self.store = store
        self.path = store._journal_path
        self.fd = os.open(
            self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
        )
        self.entries: list[tuple[str, str | None]] = []
        self.touched: set[str] = set()
        self.prefix = f".undo-{os.getpid()}-{secrets.token_hex(4)}-"

    def protect(self, names: list[str]) -> None:
        """Save the current files of ``names`` before they are replaced."""
        directory = self.store.path
        new = []
        for name in names:
            if name in self.touched:
                continue
            self.touched.add(name)
            path = os.path.join(directory, name)
            undo = (
                f"{self.prefix}{len(self.entries) + len(new)}"
                if os.path.lexists(path)
                else None
            )
            new.append((name, undo))
        if not new:
            return
        text = "".join(json.dumps(entry) + "\n" for entry in new)
        os.write(self.fd, text.encode("utf-8"))
        if self.store.durable:
            _datasync(self.fd)
        for name, undo in new:
            self.entries.append((name, undo))
            if undo is None:
                continue
            source = os.path.join(directory, name)
            target = os.path.join(directory, undo)
            try:
                os.link(source, target)
            except OSError as error:
                if error.errno in (errno.ENOENT,):
                    raise
                # No hard links on this file system: move the file aside.
                os.rename(source, target)

    def commit(self) -> None:
        """Make the changes permanent (deleting the journal is the commit)."""
        os.close(self.fd)
        os.unlink(self.path)
        self.store._sync_directory()
        self._drop_undo()

    def rollback(self) -> None:
        """Put back every file saved by ``protect``."""
        os.close(self.fd)
        _undo(self.store.path, self.entries)
        os.unlink(self.path)
        self.store._sync_directory()

    def _drop_undo(self) -> None:
        for _, undo in self.entries:
            if undo is not None:
                try:
                    os.unlink(os.path.join(self.store.path, undo))
                except FileNotFoundError:
                    pass


def _undo(directory: str, entries: list[tuple[str, str | None]]) -> None:
    for name, undo in reversed(entries):
        path = os.path.join(directory, name)
        if undo is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        else:
            saved = os.path.join(directory, undo)
            if os.path.lexists(saved):
                os.replace(saved, path)


def _journal_entries(text: bytes) -> list[tuple[str, str | None]]:
    """The entries of a journal file's ``text`` that are safe to undo.

    A torn last line (the writer died while appending it: its renames never
    happened) and names that are not a key's files or that leave the
    directory are skipped.
    """
    entries = []
    for line in text.split(b"\n"):
        try:
            name, undo = json.loads(line)
        except ValueError:
            continue  # the torn last line: its rename never happened
        if _split(name) is None and not name.endswith(KEY_SUFFIX):
            continue
        if "/" in name or (undo is not None and "/" in undo):
            continue
        entries.append((name, undo))
    return entries


# fdatasync skips flushing timestamps, which a reader does not need.
_datasync = getattr(os, "fdatasync", os.fsync)
