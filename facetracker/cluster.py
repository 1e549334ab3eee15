"""Training on several machines: `facetracker train --workers HOST:PORT,HOST:PORT --worker-index N`.

TensorFlow's MultiWorkerMirroredStrategy reads the cluster from the TF_CONFIG environment variable
(JSON). `use_workers` writes it from the worker list, after checking what would otherwise fail
late or silently: an address that is not HOST:PORT, this worker's port already taken, a worker
index outside the list. Every worker runs the same command with its own index; worker 0 is the
chief, the only one that writes logs/train and facetracker.keras.

Creating the strategy waits, in TensorFlow's C++ code, until every worker has joined; a worker that
never comes would leave the others waiting forever, deaf to Ctrl+C. `JoinWatchdog` ends the
process after `--join-timeout` seconds with one line naming the workers that cannot be reached.
Run as `python -m facetracker.cluster`, this module is that watchdog.
"""

import json
import os
import select
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass

from facetracker.config import Paths
from facetracker.errors import FaceTrackerError

JOIN_TIMEOUT = 120.0  # seconds a worker waits for the others before it gives up


@dataclass(frozen=True)
class Worker:
    """One machine of the cluster."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_workers(text: str) -> list[Worker]:
    """`HOST:PORT,HOST:PORT,...` -> workers; a clear error for anything else."""
    workers = []
    for item in (part.strip() for part in text.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise FaceTrackerError(f"--workers: {item!r} is not HOST:PORT (for example 10.0.0.5:12345); "
                                   "list every worker, this one included, separated by commas.")
        workers.append(Worker(host.strip("[]"), int(port)))
    if len(set(workers)) != len(workers):
        raise FaceTrackerError(f"--workers {text}: a worker is listed twice; list each HOST:PORT once.")
    return workers


def check_port_free(worker: Worker) -> None:
    """Fail now, with the fix, when this worker's port is taken (TensorFlow would fail later, less clearly)."""
    with socket.socket(socket.AF_INET6 if ":" in worker.host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", worker.port))
        except OSError as error:
            raise FaceTrackerError(f"port {worker.port} of this worker ({worker}) is in use ({error.strerror}): "
                                   "stop what uses it, or pick another port in --workers on every "
                                   "machine.") from error


def tf_config(workers: list[Worker], index: int) -> dict:
    """The TF_CONFIG of worker `index` of the cluster."""
    return {"cluster": {"worker": [str(w) for w in workers]}, "task": {"type": "worker", "index": index}}


def use_workers(text: str, index: int | None) -> list[Worker]:
    """Check the worker list and this worker's index and port, then set TF_CONFIG for this process."""
    workers = parse_workers(text)
    if index is None or not 0 <= index < len(workers):
        raise FaceTrackerError(f"--worker-index {index}: give this machine's place in --workers, "
                               f"0 to {len(workers) - 1} (0 is the chief).")
    check_port_free(workers[index])
    os.environ["TF_CONFIG"] = json.dumps(tf_config(workers, index))
    return workers


def unreachable(workers: list[Worker], index: int, timeout: float = 1.0) -> list[Worker]:
    """The other workers whose port does not accept a connection now."""
    missing = []
    for i, worker in enumerate(workers):
        if i == index:
            continue
        try:
            socket.create_connection((worker.host, worker.port), timeout=timeout).close()
        except OSError:
            missing.append(worker)
    return missing


class JoinWatchdog:
    """Kill this process with one clear line when the cluster has not formed within `timeout` seconds.

    The wait happens in TensorFlow's C++ code, which holds the interpreter: a Python thread or signal
    handler would never run. So the watchdog is a small separate process; it is stood down by closing
    the pipe it reads, which also happens when this process ends.
    """

    def __init__(self, workers: list[Worker], index: int, timeout: float = JOIN_TIMEOUT) -> None:
        self.workers, self.index, self.timeout = workers, index, timeout
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "JoinWatchdog":
        listed = ",".join(map(str, self.workers))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "facetracker.cluster", str(os.getpid()), str(self.timeout), str(self.index), listed],
            stdin=subprocess.PIPE)
        return self

    def stand_down(self) -> None:
        """The cluster has formed: end the watchdog."""
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait()

    def __exit__(self, *exc: object) -> None:
        self.stand_down()

    def disarm_after_first_step(self) -> object:
        """A Keras callback that stands the watchdog down once the first step (an all-reduce) has run."""
        import keras

        watchdog = self

        class FirstStep(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                watchdog.stand_down()

        return FirstStep()


def watch(parent: int, timeout: float, index: int, listed: str) -> None:
    """The watchdog process: unless its stdin closes within `timeout` seconds, explain and kill `parent`."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if ready:
        return  # stood down (or the parent ended)
    workers = parse_workers(listed)
    missing = unreachable(workers, index) or [w for i, w in enumerate(workers) if i != index]
    print(f"facetracker train: error: the workers did not all join within {timeout:.0f} s; not reachable: "
          f"{', '.join(map(str, missing))}. Start `facetracker train` with the same --workers on each of them "
          "(each with its own --worker-index), check the firewall, or raise --join-timeout.", file=sys.stderr,
          flush=True)
    os.kill(parent, signal.SIGKILL)


if __name__ == "__main__":
    watch(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4])


def train_on_workers(paths: Paths, workers: str, worker_index: int | None, join_timeout: float | None = None,
                     **train_options: object) -> object:
    """`train --workers`: join the other workers (JoinWatchdog gives up after `join_timeout` s), then train.

    `train_options` go to `train.train_from_paths` (preset, name, overrides); returns its result.
    """
    from facetracker.train import train_from_paths

    join_timeout = JOIN_TIMEOUT if join_timeout is None else join_timeout
    if join_timeout <= 0:
        raise FaceTrackerError(f"--join-timeout {join_timeout}: give the seconds to wait for the other workers.")
    addresses = use_workers(workers, worker_index)
    role = "the chief" if worker_index == 0 else "not the chief"
    print(f"worker {worker_index} of {len(addresses)} ({role}); waiting up to {join_timeout:.0f} s for the others",
          flush=True)
    with JoinWatchdog(addresses, worker_index, join_timeout) as watchdog:
        return train_from_paths(paths, strategy="multiworker", callbacks=[watchdog.disarm_after_first_step()],
                                **train_options)
