"""Key-value stores: the abstract API, utilities and implementations.

Import from the documented modules: ``encore.storage.abstract_store``,
``encore.storage.events``, ``encore.storage.utils``,
``encore.storage.dict_memory_store``, ``encore.storage.sqlite_store``,
``encore.storage.filesystem_store``; ``encore.storage.testing`` holds the
conformance tests for store implementations.
"""
