"""PostgreSQL cluster fixtures: being written (see aep_ops/pg)."""
import pytest


@pytest.fixture
def pg_cluster_factory():
    raise NotImplementedError("PostgreSQL fixtures land with aep_ops/pg")


@pytest.fixture
def pg_cluster():
    raise NotImplementedError("PostgreSQL fixtures land with aep_ops/pg")
