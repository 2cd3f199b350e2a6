"""Running ingest: one worker thread inside another process (``serve`` on embedded defaults), or
N supervised worker processes (``voxfleet cloud ingest --workers N``) on a shared subscription.

Each worker has a stable MQTT client id (``voxfleet-ingest-{name}-{index}``, name = host name by
default) so that a worker that dies and is started again resumes its persistent session on the
broker and gets back what it had not acknowledged. Run the same ``--workers`` count on the same
host: a session whose worker never returns keeps its queued messages until the broker expires it
(Mosquitto: ``persistent_client_expiration``).
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import signal
import socket
import threading
import time

from sqlalchemy.orm import sessionmaker

from cloud.config import CloudConfig
from cloud.ingest.worker import IngestWorker

log = logging.getLogger("cloud.ingest")

RESTART_BACKOFF_MAX_S = 30.0
STOP_TIMEOUT_S = 30.0


def worker_id(index: int | str, name: str | None = None) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "-", name or socket.gethostname())[:100]
    return f"voxfleet-ingest-{base}-{index}"


def start_ingest_thread(config: CloudConfig, *, name: str | None = None, index: int | str = "serve",
                        sessions: sessionmaker | None = None) -> IngestWorker:
    """One worker in this process (its threads are daemons); call ``.stop()`` on the result to end it.

    For ``voxfleet cloud serve`` on embedded defaults, where the broker runs in the same process and
    has no shared subscriptions. ``sessions``: the app's session factory, to share its engine.
    """
    return IngestWorker(config, worker_id(index, name), sessions=sessions).start()


def _worker_main(data_dir: str, wid: str, level: int) -> None:
    """A worker process: runs until SIGTERM, then finishes its cycle in hand and stops."""
    logging.basicConfig(level=level, format="%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s")
    from cloud.config import load_config

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; Ctrl-C reaches it too
    IngestWorker(load_config(data_dir), wid).run_until(stop)


def run_workers(config: CloudConfig, count: int, *, name: str | None = None,
                stop: threading.Event | None = None) -> int:
    """Run ``count`` worker processes until SIGTERM/SIGINT (or ``stop``); restart any that dies.

    Returns the process exit status (0 after a clean stop).
    """
    if count < 1:
        raise ValueError("at least one ingest worker is needed")
    if count > 1 and config.embedded_broker:
        raise ValueError("the embedded broker has no shared subscriptions: run one ingest worker, or "
                         "use Mosquitto/EMQX (VOXFLEET_BROKER_URL) for several")
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    # spawn, not fork: a forked child would inherit this process's threads' locks half-held.
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    ids = [worker_id(i, name) for i in range(count)]
    processes: dict[str, multiprocessing.process.BaseProcess] = {}
    restarts: dict[str, int] = dict.fromkeys(ids, 0)
    due: dict[str, float] = dict.fromkeys(ids, 0.0)

    def launch(wid: str) -> None:
        process = context.Process(target=_worker_main, args=(str(config.data_dir), wid, level),
                                  name=wid, daemon=False)
        process.start()
        processes[wid] = process
        log.info("ingest: started worker %s (pid %s)", wid, process.pid)

    for wid in ids:
        launch(wid)
    while not stop.wait(0.5):
        for wid in ids:
            process = processes.get(wid)
            if process is not None and process.is_alive():
                continue
            if process is not None:
                restarts[wid] += 1
                delay = min(2.0 ** (restarts[wid] - 1), RESTART_BACKOFF_MAX_S)
                log.error("ingest: worker %s (pid %s) exited with %s; restarting it in %.0fs", wid,
                          process.pid, process.exitcode, delay)
                due[wid] = time.monotonic() + delay
                processes.pop(wid)
            if time.monotonic() >= due[wid]:
                launch(wid)
    log.info("ingest: stopping %d workers", len(processes))
    for process in processes.values():
        if process.is_alive():
            process.terminate()  # SIGTERM: each finishes its cycle in hand
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes.values():
        process.join(max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            log.error("ingest: worker %s did not stop in %.0fs; killing it", process.name, STOP_TIMEOUT_S)
            process.kill()
            process.join(5)
    return 0
