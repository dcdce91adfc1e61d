"""Importing relaywatch changes nothing in the process (issue 20): it also runs inside other
processes (a Spark executor running its parsers), whose allocator and threads are theirs."""

from __future__ import annotations

import subprocess
import sys

CHECK = r"""
import os, sys
import polars, duckdb, pyarrow  # their own import-time settings (polars sets jemalloc's)
env, cpus = dict(os.environ), os.sched_getaffinity(0)
import pipeline, pipeline.ingest, pipeline.formats, pipeline.detect, pipeline.sql, pipeline.cli
import pipeline.__main__  # the entry point's module: tuning happens in run(), not on import
assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())
assert os.sched_getaffinity(0) == cpus
print("ok")
"""
TUNED = r"""
import os
from pipeline import tuning
tuning.apply()  # what the command line does, before Polars is imported
import polars
print(os.environ["_RJEM_MALLOC_CONF"])
"""


def test_importing_pipeline_leaves_the_process_as_it_was() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "."}
    got = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         env=env, check=False)
    assert got.returncode == 0 and got.stdout.strip() == "ok", got.stderr
    tuned = subprocess.run([sys.executable, "-c", TUNED], capture_output=True, text=True,
                           env=env, check=False)
    # Polars puts its own defaults first; jemalloc reads options in order, the last wins
    assert tuned.stdout.strip().endswith("dirty_decay_ms:5000,muzzy_decay_ms:5000"), tuned.stderr
