"""The one-node SLURM cluster, started once for the cluster tests that need it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slurmtools import Cluster, one_node_cluster


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Cluster]:
    """Debian's munged, slurmctld and slurmd as one node; stopped after the session."""
    with one_node_cluster() as cluster:
        yield cluster
