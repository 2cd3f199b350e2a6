"""Ingest: device messages from the broker into the database, each stored once, none lost.

    from cloud.ingest import start_ingest_thread
    worker = start_ingest_thread(config)      # one worker in this process (``serve``)
    ...
    worker.stop()

    voxfleet cloud ingest --data-dir DIR --workers 4   # N processes on a shared subscription

Modules, one job each: ``validate`` (topic and payload against protocol/, rejection reasons),
``store`` (one transaction per cycle of messages, through the scoping layer), ``sessions`` (a
session's row from its events), ``stats`` (counters, the ``ingest_workers`` table, throttled
rejection logs), ``worker`` (MQTT, manual acks after commit, retries), ``runner`` (thread and
process supervision).

Decisions:
- Order. One worker handles its messages in arrival order (paho delivers in order per
  connection; a cycle is written in that order and acknowledged in that order). Across workers
  on a shared subscription, a device's batches may be committed in any order, so storage does not
  depend on it: events keep their device ``seq`` (queries order by it), a session's row is
  recomputed from the stored set of its events ordered by ``seq`` (rows locked ``FOR UPDATE`` on
  PostgreSQL so two workers on one session take turns), presence and heartbeats only move forward
  in time (``ts`` newer than the stored one).
- Locks. Two workers often hold batches of the same sessions (a session cut by a batch boundary),
  so every worker takes its row locks in one fixed order: tenant by tenant (sorted), within a
  tenant first the session rows (inserted, then locked, each step sorted), then device rows
  (sorted by device). They take turns and never deadlock; should PostgreSQL still abort a cycle as
  a deadlock or a serialization failure, it is retried at once (nothing was acknowledged).
- Cost. Rows go in bulk (PostgreSQL: COPY into a staging table, one INSERT per table per tenant
  per cycle, cloud/scoping.py), reference checks are made once per id per cycle, and a session
  created in a cycle is summarized from that cycle's events without reading anything back.
- Tap frames (live bus view) are validated, counted (``tap_frames``) and dropped: with a shared
  subscription each worker would see only a share of them, so a live view must subscribe to the
  one device's tap topic itself, while someone watches.
- ``dropped`` of an event batch (detail events the device's outbox had to drop) is added to the
  device's ``device_ingest.events_dropped`` once (not again when the batch is redelivered) and to
  the worker's ``dropped_reported``.
- Statistics: per worker, in memory, written to ``ingest_workers`` every 5 s and at stop:
  received, stored messages and events, duplicates, rejections by reason, tap frames, last message
  time, lag (now minus the newest event ``ts`` of the last committed cycle).
"""

from cloud.ingest.runner import run_workers, start_ingest_thread, worker_id
from cloud.ingest.validate import Reason
from cloud.ingest.worker import IngestWorker

__all__ = ["IngestWorker", "Reason", "run_workers", "start_ingest_thread", "worker_id"]
