"""A real Spark standalone cluster for `make test-spark` (tests/spark/cluster.py), started once
for the session and stopped after. Not part of `make test` (marked `spark`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

pytest.importorskip("pyspark", reason="make test-spark installs the [spark] extra")

from tests.spark.cluster import Cluster, standalone  # noqa: E402

# each tenant task of the cluster's executors sleeps this long first, so that a test can
# kill an executor or the driver while tasks are still running (inert elsewhere)
TASK_PAUSE = "0.6"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if shutil.which("java") is None:
        pytest.fail("make test-spark needs Java 17 (.ci/run installs openjdk-17-jre-headless)")
    with standalone(tmp_path_factory.mktemp("spark"),
                    env={"RELAYWATCH_FAULT_TASK_PAUSE": TASK_PAUSE}) as c:
        yield c
