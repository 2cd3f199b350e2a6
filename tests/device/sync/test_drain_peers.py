"""The outbox drained to clouds of two releases over the real Mosquitto: a 0.1.0 cloud (which refuses a
whole batch over one field it does not know) gets the events without the fields added since, and its
own reader, run from git history, accepts the batch; a cloud of this release gets them whole."""

from __future__ import annotations

import json
import time
from uuid import uuid4

from device.sync.link import LinkConfig, MqttLink, drain
from device.sync.store import Store
from protocol import messages
from protocol.topics import Channel, topic
from protocol.versions import LEGACY, Peer
from tests.device.sync.test_sync import BROKER, Subscriber
from tests.protocol import previous
from tests.protocol.golden import make


def _drained(tmp_path, peer) -> bytes:
    device_id = f"drain-{uuid4().hex[:8]}"
    store = Store(tmp_path / f"{device_id}.db")
    store.append([event.model_dump(mode="json", exclude_none=True) for event in
                  make.fixtures()["event_batch"].events])
    sub = Subscriber(topic(device_id, Channel.EVENTS))
    link = MqttLink(LinkConfig(device_id=device_id, broker_url=BROKER))
    try:
        link.start(timeout=10)
        assert drain(store, link, peer=peer) == 9 and store.depth() == 0
        deadline = time.time() + 10
        while not sub.messages and time.time() < deadline:
            time.sleep(0.05)
    finally:
        link.close()
        sub.close()
        store.close()
    (batch,) = [payload for _, payload, _ in sub.messages]
    return batch


def test_a_strict_cloud_gets_the_events_it_reads(tmp_path):
    batch = _drained(tmp_path, LEGACY)
    matched = next(e for e in json.loads(batch)["events"] if e["type"] == "intent.matched")
    assert "stage" not in matched and "confidence" not in matched
    (answer,) = previous.decode([batch])
    assert answer["ok"], answer.get("error")
    assert len(answer["message"]["events"]) == 9


def test_a_cloud_of_this_release_gets_them_whole(tmp_path):
    batch = messages.decode(_drained(tmp_path, Peer(release="0.2.0")))
    matched = next(e for e in batch.events if e.type == "intent.matched")
    assert (matched.stage, matched.confidence) == ("semantic", 0.87)
