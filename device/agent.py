"""The bus bridge: OVOS messagebus -> voice sessions -> protocol events in the outbox -> the cloud.

Runs as a supervised service beside the OVOS services (``python -m device.agent``). Every finished
exchange is written to the local store (its events to the outbox, a summary to the local history)
before anything is sent; when the device is paired (``DATA_DIR/cloud.json``) the outbox is drained
to the broker continuously, and ``run/sync.json`` tells the rest of the device how far behind it is.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

from ovos_utils.log import LOG

from device import heartbeat
from device.events import session_events
from device.link import LinkError, MqttLink, drain, load_link_config
from device.sessions import SESSION_ANNOUNCE, BusEvent, SessionBuilder, VoiceSession, ms_between
from device.store import Store
from protocol import messages
from protocol.topics import Channel


def bus_timings(s: VoiceSession) -> dict[str, float | None]:
    """Stage timings the bus alone can tell (the audio itself is not visible here)."""
    ms = ms_between
    return {
        "record_end_to_transcript": ms(s.utterance_at, s.record_end_at),
        "transcript_to_intent": ms(s.matched_at, s.utterance_at),
        "intent_to_answer": ms(s.speak_at, s.matched_at),
        "answer_to_audio": ms(s.audio_start_at, s.speak_at),
        "record_end_to_audio": ms(s.audio_start_at, s.record_end_at),
    }


class Agent:
    def __init__(self, data_dir: str | Path, announce=None) -> None:
        self.data_dir = Path(data_dir)
        self.store = Store(self.data_dir / "store.db")
        self.builder = SessionBuilder(on_start=announce)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.recorded = 0

    # -- from the bus ----------------------------------------------------------------------------------

    def on_message(self, raw: str) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        event = BusEvent(time.time(), str(msg.get("type", "")), msg.get("data") or {},
                         msg.get("context") or {})
        with self.lock:
            finished = self.builder.feed(event)
        for session in finished:
            self.record(session)

    def record(self, session: VoiceSession) -> None:
        timings = bus_timings(session)
        try:
            self.store.append(session_events(session, timings))
            self.store.record_session({
                "session_id": session.session_id, "started_at": session.started_at,
                "wake_word": session.wake_word, "transcript": session.transcript, "intent": session.intent,
                "answer": session.answer, "end_state": session.end_state, "timings_ms": timings})
            self.recorded += 1
        except Exception:  # never lose the bridge over one session; the log says which
            LOG.exception(f"could not record session {session.session_id}")

    def expire_loop(self) -> None:
        while not self.stop.wait(1.0):
            with self.lock:
                finished = self.builder.expire(time.time())
            for session in finished:
                self.record(session)

    # -- to the cloud ------------------------------------------------------------------------------

    def write_sync_state(self, last_sync: float | None) -> None:
        state = {"outbox_depth": self.store.depth(), "oldest_queued_age_s": self.store.oldest_age(),
                 "dropped_total": self.store.dropped_total(), "last_sync": last_sync,
                 "recorded_sessions": self.recorded}
        target = self.data_dir / "run" / "sync.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, target)

    def sync_loop(self, heartbeat_every: float = 30.0) -> None:
        link, last_sync, last_beat = None, None, 0.0
        while not self.stop.is_set():
            try:
                if link is None and (self.data_dir / "cloud.json").exists():
                    link = MqttLink(load_link_config(self.data_dir / "cloud.json"))
                    link.start(timeout=10)
                if link is not None and link.connected.is_set():
                    drain(self.store, link)
                    last_sync = time.time()
                    if time.time() - last_beat >= heartbeat_every:
                        link.publish(Channel.HEARTBEAT,
                                     messages.encode(heartbeat.build(self.data_dir, self.store)), qos=0)
                        last_beat = time.time()
            except LinkError as exc:
                LOG.warning(f"sync: {exc}; events stay queued")
                if link is not None and not link.connected.is_set():
                    link.client.loop_stop()
                    link = None
            except Exception:  # a bad pairing file, a full disk: log it, keep recording, try again
                LOG.exception("sync loop error; retrying")
            try:
                self.write_sync_state(last_sync)
            except (OSError, sqlite3.Error):
                LOG.exception("cannot write run/sync.json")
            self.stop.wait(1.0)
        if link is not None:
            link.close()


def main() -> None:
    from ovos_bus_client import MessageBusClient
    from ovos_bus_client.message import Message
    from ovos_utils.process_utils import ProcessStatus

    bus = MessageBusClient()  # host and port from the device's mycroft.conf

    def announce(session: VoiceSession) -> None:
        bus.emit(Message(SESSION_ANNOUNCE, {"session_id": session.session_id},
                         {"session": {"session_id": session.ovos_session_id}}))

    agent = Agent(os.environ["VOXFLEET_DATA_DIR"], announce=announce)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stop.set())
    bus.on("message", agent.on_message)
    bus.run_in_thread()
    bus.connected_event.wait()
    threads = [threading.Thread(target=agent.expire_loop, daemon=True),
               threading.Thread(target=agent.sync_loop, daemon=True)]
    for thread in threads:
        thread.start()
    status = ProcessStatus("agent", bus, namespace="voxfleet")
    status.set_started()
    status.set_ready()
    agent.stop.wait()
    with agent.lock:
        finished = agent.builder.flush()
    for session in finished:
        agent.record(session)
    for thread in threads:
        thread.join(timeout=15)
    bus.close()
    agent.store.close()


if __name__ == "__main__":
    main()
