"""A Spark standalone cluster on this machine: one master and one worker on 127.0.0.1, from
pyspark's own spark-class (Java 17). Used by `make test-spark` (tests/spark/conftest.py) and by
`make bench`'s spark part; stopped when the block ends."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    url: str
    ui: str
    cores: int

    def workers_alive(self) -> int:
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=5) as r:
            state = json.load(r)
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


def _wait(what: str, ok: Callable[[], bool], seconds: float = 90) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if ok():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"spark cluster: {what} did not come up in {seconds:.0f} s")


def _listening(port: int) -> bool:
    socket.create_connection(("127.0.0.1", port), 1).close()
    return True


@contextmanager
def standalone(work: Path, cores: int = 2, memory: str = "3g",
               env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A master and a worker of `cores` cores; `env` goes to the worker (its executors and
    their Python workers inherit it). Logs in work/cluster.log."""
    work.mkdir(parents=True, exist_ok=True)
    home = spark_home()
    port, ui, worker_ui = _free_port(), _free_port(), _free_port()
    base = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(work / "logs"), "SPARK_WORKER_DIR": str(work / "worker"),
            "PYSPARK_PYTHON": sys.executable}
    spark_class = str(home / "bin" / "spark-class")
    procs: list[subprocess.Popen[bytes]] = []
    with open(work / "cluster.log", "wb") as logs:
        try:
            procs.append(subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                 "--port", str(port), "--webui-port", str(ui)],
                env=base, stdout=logs, stderr=subprocess.STDOUT, start_new_session=True))
            c = Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}", cores)
            _wait("the master", lambda: _listening(port))
            procs.append(subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.worker.Worker", c.url, "--host",
                 "127.0.0.1", "--cores", str(cores), "--memory", memory, "--webui-port",
                 str(worker_ui), "--work-dir", str(work / "worker")],
                env={**base, **(env or {})}, stdout=logs, stderr=subprocess.STDOUT,
                start_new_session=True))
            _wait("the worker", lambda: c.workers_alive() == 1)
            yield c
        finally:
            _stop(procs)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
