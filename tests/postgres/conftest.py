"""A private PostgreSQL cluster for the PostgresStore tests.

One cluster per test session, started lazily by ``cluster()`` and stopped
by its pid at the end of the session (also when tests fail). Without the
server binaries the tests are skipped with the reason when ``CI`` is
unset, and fail when it is set (``.ci/run`` installs them).
"""

import os
import secrets

import pytest

from encore.storage.postgres_cluster import PostgresCluster, find_pg_bin

_cluster = None

#: The tests' cluster trades durability for speed: an OS crash is not
#: what they test (kill -9 and server restarts keep working without fsync).
SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def cluster():
    """The session's running cluster (started on first use)."""
    global _cluster
    if _cluster is None:
        if find_pg_bin() is None:
            message = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
            if os.environ.get("CI"):
                pytest.fail(message + " and CI is set: .ci/run must install them")
            pytest.skip(message)
        _cluster = PostgresCluster(SETTINGS).start()
    return _cluster


def new_table():
    """A table name no other test uses."""
    return "t_" + secrets.token_hex(6)


def drop_table(dsn, table):
    """Drop a store's tables (best effort: the cluster is thrown away anyway)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as connection:
        for name in (table, f"{table}__chunks"):
            connection.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name))
            )


def pytest_sessionfinish(session, exitstatus):
    global _cluster
    if _cluster is not None:
        _cluster.stop()
        _cluster = None


@pytest.fixture
def pg():
    """The running cluster."""
    return cluster()


@pytest.fixture
def table(pg):
    """A fresh table name, dropped after the test."""
    name = new_table()
    yield name
    drop_table(pg.dsn, name)
