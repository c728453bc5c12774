"""``encore.storage.file_value``: the module path encore 0.8 users import.

``FileValue(path, metadata=None)`` is our `encore.storage.values.FileValue`
made from a path. The file is opened when the value is made (a missing or
unreadable path fails there, with the path in the error), so the value
keeps reading the bytes that were current then even if the file is
replaced before a store copies it.
"""

from __future__ import annotations

import os
import stat

from . import values

__all__ = ["FileValue"]


class FileValue(values.FileValue):
    """A value whose data is the content of the file at ``path``.

    ``size`` is the file's size and ``created``/``modified`` its change
    and modification times (UTC seconds) when the value is made; the
    metadata is kept as given (``{}`` when omitted).

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    metadata : dict, optional
        The value's metadata.

    Raises
    ------
    OSError
        If the file cannot be opened (``FileNotFoundError`` when missing).
    IsADirectoryError
        If ``path`` is a directory.
    """

    def __init__(self, path: str | os.PathLike, metadata: dict | None = None) -> None:
        self.path = os.fspath(path)
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        shared = values.SharedFd(fd)
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(f"{self.path!r} is a directory, not a file")
        except BaseException:
            shared.close()
            raise
        # st_birthtime is the creation time where the platform keeps one;
        # elsewhere st_ctime (last inode change) is the closest bound.
        created = getattr(info, "st_birthtime", info.st_ctime)
        super().__init__(
            shared,
            {} if metadata is None else metadata,
            info.st_size,
            created=created,
            modified=info.st_mtime,
        )
