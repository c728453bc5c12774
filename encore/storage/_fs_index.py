"""The in-memory metadata index behind ``FileSystemStore`` queries.

``_Index`` holds the metadata of every key of one store directory and
brings it up to date before each query: from the names an inotify watch
(``encore.storage._inotify``) reports changed, or, without inotify, by
comparing ``stat`` signatures (``_poll``). The strategy and its cost are
described in the "Queries" section of ``encore.storage.filesystem_store``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from ._fs_keys import DATA_SUFFIX, METADATA_SUFFIX, _split, filename_to_key
from ._inotify import _Inotify

if TYPE_CHECKING:
    from .filesystem_store import FileSystemStore

# The index is part of the filesystem store: log under its name, so that
# logging configured for the store covers it.
logger = logging.getLogger("encore.storage.filesystem_store")

#: How long after a directory changed its listing may still change within
#: the same timestamp (file systems stamp times at a coarse clock tick).
_RACY_NS = 2_000_000_000


class _Index:
    """Metadata of every key, kept fresh cheaply (see the module docstring)."""

    def __init__(self, store: FileSystemStore) -> None:
        self.store = store
        self.metadata: dict[str, dict] = {}
        self.stem_keys: dict[str, str] = {}
        self.signatures: dict[str, tuple] = {}
        self.directory: tuple | None = None
        self.scanned = 0
        self.built = False
        self.watch: _Inotify | None = None
        try:
            self.watch = _Inotify(store.path)
        except (OSError, AttributeError) as error:
            logger.debug("no inotify for %s (%s): polling instead", store.path, error)

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def refresh(self) -> None:
        """Bring the index up to date; call with the shared lock held."""
        if self.watch is not None and self.watch.hub.pid != os.getpid():
            # Forked: the watch belongs to the parent; start afresh.
            self.watch = None
            try:
                self.watch = _Inotify(self.store.path)
            except OSError:
                pass
            self.built = False
        if not self.built:
            self._rebuild()
            return
        if self.watch is not None:
            names = self.watch.changes()
            if self.watch.lost:
                self.watch.close()
                self.watch = None
            if names is None:
                self._rebuild()
                return
            stems = set()
            for name in names:
                split = _split(name)
                if split is not None:
                    stems.add(split[0])
            for stem in stems:
                self._refresh_stem(stem)
            return
        self._poll()

    def _scan(self) -> dict[str, tuple]:
        signatures = {}
        with os.scandir(self.store.path) as entries:
            for entry in entries:
                if _split(entry.name) is None:
                    continue
                try:
                    st = entry.stat(follow_symlinks=True)
                except FileNotFoundError:
                    continue
                signatures[entry.name] = (
                    st.st_ino,
                    st.st_size,
                    st.st_mtime_ns,
                    st.st_ctime_ns,
                )
        return signatures

    def _rebuild(self) -> None:
        if self.watch is None:
            # Polling compares stat signatures, so take them now.
            self.scanned = time.time_ns()
            self.directory = self._directory_signature()
            self.signatures = self._scan()
            names = list(self.signatures)
        else:
            names = os.listdir(self.store.path)
        self.metadata = {}
        self.stem_keys = {}
        stems = set()
        for name in names:
            split = _split(name)
            if split is not None:
                stems.add(split[0])
        for stem in stems:
            self._refresh_stem(stem)
        self.built = True

    def _directory_signature(self) -> tuple:
        st = os.stat(self.store.path)
        return st.st_ino, st.st_mtime_ns, st.st_ctime_ns

    def _poll(self) -> None:
        started = time.time_ns()
        directory = self._directory_signature()
        if (
            directory == self.directory
            and self.scanned - directory[1] > _RACY_NS
            and self.scanned - directory[2] > _RACY_NS
        ):
            # No name was added or removed since the last full scan (which
            # began well after the directory last changed, so a change in
            # the same timestamp tick cannot hide): only metadata files
            # rewritten in place remain to be found.
            changed = set()
            for name, old in self.signatures.items():
                if not name.endswith(METADATA_SUFFIX):
                    continue
                try:
                    st = os.stat(os.path.join(self.store.path, name))
                except FileNotFoundError:
                    changed.add(name)
                    continue
                signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                if signature != old:
                    self.signatures[name] = signature
                    changed.add(name)
        else:
            signatures = self._scan()
            old = self.signatures
            changed = {n for n, sig in signatures.items() if old.get(n) != sig}
            changed |= old.keys() - signatures.keys()
            self.signatures = signatures
            self.directory = directory
            self.scanned = started
        for stem in {_split(name)[0] for name in changed}:
            self._refresh_stem(stem)

    def _refresh_stem(self, stem: str) -> None:
        store = self.store
        key = self.stem_keys.get(stem)
        if key is None:
            key = filename_to_key(
                stem + DATA_SUFFIX, store.path, store._case_insensitive
            )
            if key is None:
                return
        # A metadata file without its data file is not a key (see the
        # filesystem store's layout).
        if not os.path.exists(os.path.join(store.path, stem + DATA_SUFFIX)):
            self.metadata.pop(key, None)
            self.stem_keys.pop(stem, None)
            return
        metadata = store._read_metadata_file(stem, missing=None, strict=False)
        self.stem_keys[stem] = key
        self.metadata[key] = {} if metadata is None else metadata
