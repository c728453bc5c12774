"""``encore.storage.string_value``: the module path encore 0.8 users import.

``StringValue`` is our `encore.storage.values.BytesValue` (a value whose
data is a bytes object), under the name and constructor 0.8 gives it:
``StringValue(data=b'', metadata=None, created=None, modified=None)``.
"""

from __future__ import annotations

from .values import BytesValue, StringValue

__all__ = ["StringValue", "BytesValue"]
