"""The heartbeat describes the device truthfully and always validates against the contract."""

from __future__ import annotations

import json
import time

from device.sync import heartbeat
from device.sync.store import Store
from protocol import messages


def test_heartbeat_reports_outbox_and_services(tmp_path):
    store = Store(tmp_path / "store.db")
    store.append([{"event_id": "e1", "type": "usage"}, {"event_id": "e2", "type": "wake_word"}])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "health.json").write_text(json.dumps(
        {"updated": time.time(),
         "services": {"listener": {"state": "ready"}, "core": {"state": "restarting"}}}))
    beat = heartbeat.build(tmp_path, store)
    assert beat.outbox_depth == 2 and beat.oldest_queued_age_s is not None
    assert beat.services == {"listener": "ready", "core": "restarting"}
    assert beat.versions["voxfleet"] and beat.versions["ovos-core"]
    assert 0 <= beat.memory_percent <= 100 and beat.uptime_s > 0
    assert messages.decode(messages.encode(beat)) == beat


def test_stale_health_is_unknown_not_ready(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "health.json").write_text(json.dumps(
        {"updated": time.time() - 3600, "services": {"listener": {"state": "ready"}}}))
    assert heartbeat.service_states(tmp_path) == {"listener": "unknown"}
    assert heartbeat.service_states(tmp_path / "nowhere") == {}


def test_temperature_is_a_number_or_none():
    value = heartbeat.temperature_c()
    assert value is None or -60 < value < 200
