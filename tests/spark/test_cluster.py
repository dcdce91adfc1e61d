"""`--engine spark` on a real standalone cluster (tests/spark/conftest.py): the nightly job over
the sample inbox gives the lake, rollups, verdicts and manifest of an engine=duckdb run; a
rerun adds nothing; an executor killed mid-ingest, or the driver killed, leave a lake that
the job (or a rerun) completes to the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.spark.cluster import Cluster, spark_home

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
INBOX = ROOT / "sample_logs" / "inbox"
AS_OF = "2026-11-28"
# the manifest's columns that say when and how fast, not what
TIMING = ["ingested_utc", "seconds"]
DERIVED_STATE = "rollups/_built.parquet"  # records the partitions' modification times


def nightly(lake: Path, engine: str = "duckdb", master: str | None = None,
            wait: bool = True) -> subprocess.Popen[bytes] | subprocess.CompletedProcess[bytes]:
    args = [sys.executable, "-m", "pipeline", "nightly", "--inbox", str(INBOX), "--lake",
            str(lake / "lake"), "--reports", str(lake / "reports"), "--as-of", AS_OF,
            "--no-email", "--engine", engine]
    if master:
        args += ["--spark-master", master]
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}  # the driver beside the cluster
    if not wait:
        return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env)
    run = subprocess.run(args, cwd=ROOT, capture_output=True, env=env)
    assert run.returncode in (0, 3), run.stderr.decode()[-3000:]
    return run


def lake_files(lake: Path) -> dict[str, str]:
    """Every Parquet file of the lake but the manifest and the rollups' record: its digest."""
    return {str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(lake.rglob("*.parquet"))
            if str(p.relative_to(lake)) not in ("ingest_log/manifest.parquet", DERIVED_STATE)}


def manifest(lake: Path) -> pl.DataFrame:
    m = pl.read_parquet(lake / "ingest_log" / "manifest.parquet")
    return m.drop(TIMING).sort("tenant", "source_file", "source_sha256")


def verdicts(run: Path) -> list:
    return json.loads((run / "reports" / AS_OF / "verdicts.json").read_text())


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("local")
    nightly(run)
    return run


def assert_same_lake(spark_run: Path, local_run: Path) -> None:
    got, want = lake_files(spark_run / "lake"), lake_files(local_run / "lake")
    assert sorted(got) == sorted(want)
    differ = [f for f in want if got[f] != want[f]]
    assert not differ, differ[:10]
    assert manifest(spark_run / "lake").equals(manifest(local_run / "lake"))
    assert verdicts(spark_run) == verdicts(local_run)
    # and the command an operator runs to check a cluster's lake says so too
    check = subprocess.run([sys.executable, "-m", "pipeline", "compare", str(spark_run / "lake"),
                            str(local_run / "lake")], cwd=ROOT, capture_output=True)
    assert check.returncode == 0 and b"the same data" in check.stderr, check.stdout


def test_under_spark_submit_ingest_gives_the_local_lake(cluster: Cluster, local: Path,
                                                       tmp_path: Path) -> None:
    """spark-submit ... pipeline/__main__.py ingest --engine spark: the master is the one
    spark-submit was given."""
    lake = tmp_path / "lake"
    run = subprocess.run(
        [str(spark_home() / "bin" / "spark-submit"), "--master", cluster.url,
         str(ROOT / "pipeline" / "__main__.py"), "ingest", str(INBOX), "--lake", str(lake),
         "--engine", "spark"], cwd=ROOT, capture_output=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"})
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    # spark-submit hands on the Python driver's stdout and stderr as its own stdout
    assert f"Spark tasks on {cluster.url}".encode() in run.stdout + run.stderr
    got = {f: d for f, d in lake_files(lake).items() if f.startswith(("messages/", "rollups/"))}
    want = {f: d for f, d in lake_files(local / "lake").items()
            if f.startswith(("messages/", "rollups/"))}
    assert got == want and len(got) > 200


def test_nightly_on_the_cluster_gives_the_local_lake_and_verdicts(
        cluster: Cluster, local: Path, tmp_path: Path) -> None:
    first = nightly(tmp_path, "spark", cluster.url)
    assert_same_lake(tmp_path, local)
    files = lake_files(tmp_path / "lake")
    assert sum(f.startswith("messages/") for f in files) > 100
    assert sum(f.startswith("rollups/mail/") for f in files) > 100
    assert b"Spark tasks on spark://127.0.0.1" in first.stderr
    # a rerun reads nothing again and changes no file
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "lake" / "messages").rglob("*")}
    again = nightly(tmp_path, "spark", cluster.url)
    assert b"ingested 0 files (0 rows), skipped 84," in again.stdout, again.stdout
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "lake" / "messages").rglob("*")} \
        == before
    assert_same_lake(tmp_path, local)


def _first_partition(lake: Path, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if any((lake / "messages").glob("tenant=*/date=*/data.parquet")):
            return
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
        time.sleep(0.05)
    raise AssertionError("no partition was written")


def test_an_executor_killed_mid_ingest_is_replaced_and_the_lake_completes(
        cluster: Cluster, local: Path, tmp_path: Path) -> None:
    proc = nightly(tmp_path, "spark", cluster.url, wait=False)
    assert isinstance(proc, subprocess.Popen)
    _first_partition(tmp_path / "lake", proc)
    killed = subprocess.run(["pkill", "-9", "-f", "CoarseGrainedExecutorBackend"])
    assert killed.returncode == 0  # an executor was running, and is gone
    out, err = proc.communicate(timeout=240)
    assert proc.returncode in (0, 3), err.decode()[-3000:]
    assert b"Lost executor" in err  # Spark saw it die, and ran its tasks again
    assert_same_lake(tmp_path, local)


def test_a_killed_driver_leaves_a_lake_a_rerun_completes(cluster: Cluster, local: Path,
                                                         tmp_path: Path) -> None:
    proc = nightly(tmp_path, "spark", cluster.url, wait=False)
    assert isinstance(proc, subprocess.Popen)
    _first_partition(tmp_path / "lake", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    manifest_file = tmp_path / "lake" / "ingest_log" / "manifest.parquet"
    assert not manifest_file.exists() or pl.read_parquet(manifest_file).height == 0
    nightly(tmp_path, "spark", cluster.url)
    assert_same_lake(tmp_path, local)
