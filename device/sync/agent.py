"""The sync agent: OVOS messagebus -> voice sessions -> outbox -> the cloud, and the cloud's orders back.

Runs as a supervised service beside the OVOS services (``voxfleet-agent``). Every finished
exchange is written to the local store (its events to the outbox, a summary to the local history)
before anything is sent; when the device is paired (``DATA_DIR/cloud.json``) the outbox is drained
to the broker continuously, and ``run/sync.json`` tells the rest of the device how far behind it is.

Four threads, each with one job: the bus client's (messages in), ``expire_loop`` (closes exchanges
that went quiet), ``sync_loop`` (the broker link: batches, results, heartbeats, tap frames) and
``work_loop`` (desired configurations and commands, one at a time, in arrival order, so a restart
for a new configuration never races a command).

The cloud may run another release than the device (a fleet upgrades unevenly): what the device
writes is encoded for the cloud as ``device.sync.cloud_peer`` found it (a 0.1.0 cloud gets only what
0.1.0 read), and what it reads from the cloud may carry fields it does not know, which are ignored
and counted (``unknown_fields`` in ``run/sync.json`` and the heartbeat).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from ovos_utils.log import LOG

from device.files import write_atomic
from device.settings import DeviceSettings, SettingsError, load_settings
from device.stack.supervisor import RESTART_REQUEST
from device.sync import capabilities, cloud_peer, commands, heartbeat
from device.sync.desired import ConfigApplier, RestartError
from device.sync.events import session_events
from device.sync.link import LinkError, MqttLink, drain, load_link_config
from device.sync.store import OutboxFull, Store
from device.sync.tap import BusTap
from device.voice.sessions import SESSION_ANNOUNCE, BusEvent, SessionBuilder, VoiceSession, ms_between
from protocol import messages
from protocol.topics import Channel
from protocol.versions import LEGACY, Peer

RESTART_TIMEOUT = 240.0
MAX_PENDING_SESSIONS = 1000  # held in memory while the disk is full


@dataclass(frozen=True)
class DesiredOrder:
    """A desired config to apply, with the fields of it this release does not know (to name back)."""

    desired: messages.DesiredConfig
    ignored: list[str]


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
    def __init__(self, data_dir: str | Path, announce=None, bus=None, heartbeat_every: float = 30.0,
                 batch_age: float = 1.0) -> None:
        self.data_dir = Path(data_dir)
        self.store = Store(self.data_dir / "store.db")
        self.builder = SessionBuilder(on_start=announce)
        self.bus = bus
        self.heartbeat_every = heartbeat_every
        self.batch_age = batch_age
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.wake = threading.Event()  # something to send: don't wait for the next tick
        self.recorded = 0
        self.rejected_down = 0
        self.pending: list[list[dict]] = []  # sessions' events that found the disk full
        self.tap: BusTap | None = None
        self.link: MqttLink | None = None
        self.work: queue.Queue = queue.Queue()
        self.acks: list[messages.ConfigAck] = []
        self.applier = ConfigApplier(self.data_dir, restart=self.restart_services)
        self._report_wanted = threading.Event()
        self._reported = threading.Event()
        self.cloud: Peer = LEGACY  # until the cloud says otherwise (device/sync/cloud_peer.py)
        self._cloud_asked_at = 0.0
        self._ask_cloud = threading.Event()  # set on every (re)connection to the broker
        self._announced: messages.Capabilities | None = None
        self.unknown_fields = 0
        self._unknown_logged: set[str] = set()
        self._interrupted_commands()

    # -- from the bus ----------------------------------------------------------------------------------

    def on_message(self, raw: str) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        event = BusEvent(time.time(), str(msg.get("type", "")), msg.get("data") or {},
                         msg.get("context") or {})
        tap = self.tap
        if tap is not None:
            tap.offer(event.type, event.data, event.t)
        with self.lock:
            finished = self.builder.feed(event)
        for session in finished:
            self.record(session)

    def record(self, session: VoiceSession) -> None:
        timings = bus_timings(session)
        try:
            self.store.record_session({
                "session_id": session.session_id, "started_at": session.started_at,
                "wake_word": session.wake_word, "transcript": session.transcript, "intent": session.intent,
                "answer": session.answer, "end_state": session.end_state, "timings_ms": timings})
        except sqlite3.Error:  # local history is a convenience; the events below are what matter
            LOG.exception(f"could not keep session {session.session_id} in the local history")
        try:
            events = session_events(session, timings)
        except Exception:  # a session the schemas refuse is a bug; the log says which
            LOG.exception(f"could not turn session {session.session_id} into events")
            return
        self._queue_events(events)
        self.recorded += 1
        self.wake.set()

    def _queue_events(self, events: list[dict]) -> None:
        try:
            self.store.append(events)
        except OutboxFull as exc:
            LOG.error(f"{exc}; holding the session in memory until there is room")
            with self.lock:
                self.pending.append(events)
                if len(self.pending) > MAX_PENDING_SESSIONS:
                    # Keep the billable units of the oldest session, drop its details.
                    oldest = self.pending.pop(0)
                    self.pending[0] = [e for e in oldest if e["type"] == "usage"] + self.pending[0]

    def retry_pending(self) -> None:
        with self.lock:
            waiting, self.pending = self.pending, []
        for events in waiting:
            self._queue_events(events)

    def expire_loop(self) -> None:
        while not self.stop.wait(1.0):
            with self.lock:
                finished = self.builder.expire(time.time())
            for session in finished:
                self.record(session)
            tap = self.tap
            if tap is not None and tap.expired(time.time()):
                self.tap = None
                self.flush_tap(tap)
                LOG.info(f"bus tap ended after its duration; {tap.forwarded} messages forwarded")

    # -- what commands do ------------------------------------------------------------------------------

    def end_sessions(self) -> list[str]:
        with self.lock:
            ended = self.builder.cancel_all()
        if self.bus is not None:
            from ovos_bus_client.message import Message

            self.bus.emit(Message("recognizer_loop:record_stop"))
            self.bus.emit(Message("mycroft.stop"))
        for session in ended:
            self.record(session)
        return [s.session_id for s in ended]

    def speak(self, text: str, lang: str | None, timeout: float) -> bool:
        if self.bus is None:
            raise RuntimeError("no messagebus connection")
        from ovos_bus_client.message import Message

        started = threading.Event()
        self.bus.once("recognizer_loop:audio_output_start", lambda _m: started.set())
        data = {"utterance": text, "lang": lang} if lang else {"utterance": text}
        self.bus.emit(Message("speak", data, {"source": "voxfleet.cloud", "destination": ["audio"]}))
        return started.wait(timeout)

    def restart_services(self, names: list[str]) -> None:
        if self.bus is None:
            raise RestartError("no messagebus connection to reach the supervisor")
        from ovos_bus_client.message import Message

        reply = self.bus.wait_for_response(Message(RESTART_REQUEST, {"services": names}),
                                           timeout=RESTART_TIMEOUT)
        if reply is None:
            raise RestartError(f"no supervisor answered within {RESTART_TIMEOUT:.0f}s")
        if not reply.data.get("ok"):
            raise RestartError(str(reply.data.get("error") or "the supervisor gave no reason"))

    def report_now(self, timeout: float = 20.0) -> int:
        self._reported.clear()
        self._report_wanted.set()
        self.wake.set()
        if not self._reported.wait(timeout):
            raise RuntimeError(f"not connected to the broker; nothing sent within {timeout:.0f}s")
        return self.store.depth()

    def flush_tap(self, tap: BusTap) -> None:
        link = self.link
        if link is None or not link.connected.is_set():
            return
        for frame in tap.frames():
            link.publish(Channel.TAP, messages.encode(frame, peer=self.cloud), qos=0)

    # -- from the cloud (network thread: record, then queue; never block) ------------------------------

    def on_down(self, channel: Channel, payload: bytes) -> None:
        if channel is Channel.DESIRED_CONFIG and not payload:
            LOG.info("the cloud cleared the desired configuration; the applied one stays")
            return
        try:
            decoded = messages.read(payload)
        except messages.MessageError as exc:
            self._reject_down(channel, payload, str(exc))
            return
        message = decoded.message
        self._count_unknown(decoded.unknown)
        if channel is Channel.DESIRED_CONFIG and isinstance(message, messages.DesiredConfig):
            prefix = "desired_config.config."
            ignored = sorted({path[len(prefix):].split(".")[0] for path in decoded.unknown
                              if path.startswith(prefix)})
            self.work.put(DesiredOrder(message, ignored))
        elif channel is Channel.COMMANDS and isinstance(message, messages.Command):
            command_id = str(message.command_id)
            seen = self.store.command_seen(command_id)
            if seen is not None:
                LOG.info(f"command {command_id} delivered again; it already has its result")
                self.wake.set()
                return
            self.store.begin_command(command_id, message.action)
            self.work.put(message)
        else:
            self._reject_down(channel, payload, f"a {message.kind} message does not belong on {channel}")

    def _count_unknown(self, unknown: tuple[str, ...]) -> None:
        """A newer cloud's fields: ignored, counted, and each named in the log once."""
        if not unknown:
            return
        self.unknown_fields += len(unknown)
        new = [path for path in unknown if path not in self._unknown_logged]
        if new and len(self._unknown_logged) < 1000:
            self._unknown_logged.update(new)
            LOG.info(f"ignored fields this release does not know: {', '.join(new)}")

    def _reject_down(self, channel: Channel, payload: bytes, reason: str) -> None:
        self.rejected_down += 1
        LOG.warning(f"rejected a message on {channel} ({len(payload)} bytes): {reason}")
        if channel is not Channel.COMMANDS:
            return
        # A command we can still identify gets its one result, so the cloud is not left waiting.
        try:
            raw = json.loads(payload)
            command_id = str(UUID(str(raw["command_id"])))
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            return
        if self.store.command_seen(command_id) is None:
            self.store.begin_command(command_id, str(raw.get("action", "?"))[:64])
            self._finish(messages.CommandResult(command_id=UUID(command_id), status="rejected",
                                                detail=reason[: messages.MAX_TEXT]))

    def _finish(self, result: messages.CommandResult) -> None:
        self.store.finish_command(str(result.command_id), messages.encode(result).decode())
        self.wake.set()

    def _interrupted_commands(self) -> None:
        """Commands that were running when the agent died get an error result, not a second run."""
        rows = self.store.db.execute("SELECT command_id FROM commands WHERE state = 'running'").fetchall()
        for (command_id,) in rows:
            self._finish(messages.CommandResult(
                command_id=UUID(command_id), status="error",
                detail="interrupted: the device agent restarted while running it; not retried"))

    def work_loop(self) -> None:
        while not self.stop.is_set():
            try:
                message = self.work.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                if isinstance(message, DesiredOrder):
                    ack = self.applier.apply(message.desired, ignored=message.ignored)
                    if ack is not None:
                        with self.lock:
                            self.acks.append(ack)
                        self.wake.set()
                else:
                    self._finish(commands.execute(self, message))
            except Exception:  # one bad order must not stop the next ones
                LOG.exception(f"handling {type(message).__name__} failed")

    # -- to the cloud ------------------------------------------------------------------------------

    def write_sync_state(self, last_sync: float | None) -> None:
        link = self.link
        state = {"outbox_depth": self.store.depth(), "oldest_queued_age_s": self.store.oldest_age(),
                 "dropped_total": self.store.dropped_total(), "last_sync": last_sync,
                 "recorded_sessions": self.recorded, "rejected_down": self.rejected_down,
                 "outbox_full": bool(self.pending),
                 "connected": bool(link and link.connected.is_set()),
                 "broker_url": link.config.broker_url if link else None,
                 "cloud_release": self.cloud.release, "unknown_fields": self.unknown_fields}
        write_atomic(self.data_dir / "run" / "sync.json", json.dumps(state))

    def _pairing_stamp(self) -> float | None:
        try:
            return (self.data_dir / "cloud.json").stat().st_mtime
        except FileNotFoundError:
            return None

    def _relink(self) -> None:
        """Follow the pairing record: connect when it appears, reconnect when it changes."""
        if self.link is not None:
            self.link.close()
            self.link = None
        if self._pairing_stamp() is None:
            return
        link = MqttLink(load_link_config(self.data_dir / "cloud.json"), on_down=self.on_down,
                        online=self.online_presence, on_connected=self._ask_cloud.set)
        link.begin()
        self.link = link

    def heartbeat(self) -> messages.Heartbeat:
        return heartbeat.build(self.data_dir, self.store, outbox_full=bool(self.pending),
                               unknown_fields_total=self.unknown_fields)

    # -- what the device says about itself, for the cloud it talks to -----------------------------------

    def capabilities(self) -> messages.Capabilities:
        try:
            settings = load_settings(self.data_dir)
        except SettingsError as exc:  # announce what is installed all the same
            LOG.warning(f"settings unreadable while announcing capabilities: {exc}")
            settings = DeviceSettings()
        return capabilities.announce(settings)

    def online_presence(self) -> bytes:
        """The retained ``online`` presence, with capabilities for a cloud that reads them (paho's
        network thread asks for it at every connection: no network call here)."""
        caps = self._announced or self.capabilities()
        self._announced = caps
        presence = messages.Presence(state="online", ts=datetime.now(UTC), capabilities=caps)
        return messages.encode(presence, peer=self.cloud)

    def _learn_cloud(self, link: MqttLink) -> None:
        """Ask the cloud which release it runs after each connection and now and then; announce again
        when that or the device's own capabilities changed."""
        asked = self._ask_cloud.is_set()
        if asked or time.time() - self._cloud_asked_at >= cloud_peer.REFRESH_S:
            self._ask_cloud.clear()
            self._cloud_asked_at = time.time()
            url = link.config.cloud_url
            found = cloud_peer.probe(url) if url else None
            if found is not None and found != self.cloud:
                LOG.info(f"the cloud runs release {found.release or '0.1.0 (strict reader)'}")
                self.cloud = found
                self._announce(link)
                return
        caps = self.capabilities()
        if caps != self._announced:
            self._announced = caps
            self._announce(link)

    def _announce(self, link: MqttLink) -> None:
        link.publish(Channel.PRESENCE, self.online_presence(), retain=True)

    def _send(self, link: MqttLink, beat_due: bool) -> bool:
        """One round of sending; returns whether a heartbeat went out."""
        for command_id, result in self.store.unpublished_results():
            info = link.publish(Channel.COMMAND_RESULT, result.encode())
            info.wait_for_publish(15)
            if not info.is_published():
                raise LinkError("the broker did not acknowledge a command result")
            self.store.result_published(command_id)
        with self.lock:
            acks, self.acks = self.acks, []
        for ack in acks:
            link.publish(Channel.CONFIG_ACK, messages.encode(ack, peer=self.cloud))
        reporting = self._report_wanted.is_set()
        drain(self.store, link, max_age=0.0 if reporting else self.batch_age, peer=self.cloud)
        tap = self.tap
        if tap is not None:
            self.flush_tap(tap)
        if beat_due or reporting:
            link.publish(Channel.HEARTBEAT, messages.encode(self.heartbeat(), peer=self.cloud), qos=0)
            if reporting:
                self._report_wanted.clear()
                self._reported.set()
            return True
        return False

    def sync_loop(self) -> None:
        stamp, last_sync, last_beat, last_prune = None, None, 0.0, 0.0
        while not self.stop.is_set():
            self.wake.clear()
            try:
                if self._pairing_stamp() != stamp:
                    stamp = self._pairing_stamp()
                    self._relink()
                self.retry_pending()
                link = self.link
                if link is not None and link.connected.is_set():
                    due = time.time() - last_beat >= self.heartbeat_every
                    if due or self._ask_cloud.is_set():
                        self._learn_cloud(link)
                    if self._send(link, due):
                        last_beat = time.time()
                    last_sync = time.time()
                if time.time() - last_prune > 3600:
                    self.store.prune_commands()
                    last_prune = time.time()
            except LinkError as exc:
                LOG.warning(f"sync: {exc}; events stay queued")
            except Exception:  # a bad pairing file, a full disk: log it, keep recording, try again
                LOG.exception("sync loop error; retrying")
                stamp = None if self.link is None else stamp
            try:
                self.write_sync_state(last_sync)
            except (OSError, sqlite3.Error):
                LOG.exception("cannot write run/sync.json")
            self.wake.wait(min(1.0, self.batch_age) if self.store.depth() else 1.0)
        if self.link is not None:
            with contextlib.suppress(Exception):
                drain(self.store, self.link, ack_timeout=5)
            self.link.close()


def main() -> None:
    from ovos_bus_client import MessageBusClient
    from ovos_bus_client.message import Message
    from ovos_utils.process_utils import ProcessStatus

    bus = MessageBusClient()  # host and port from the device's mycroft.conf

    def announce(session: VoiceSession) -> None:
        bus.emit(Message(SESSION_ANNOUNCE, {"session_id": session.session_id},
                         {"session": {"session_id": session.ovos_session_id}}))

    agent = Agent(os.environ["VOXFLEET_DATA_DIR"], announce=announce, bus=bus,
                  heartbeat_every=float(os.environ.get("VOXFLEET_HEARTBEAT_SECONDS", "30")))
    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stop.set())
    bus.on("message", agent.on_message)
    bus.run_in_thread()
    bus.connected_event.wait()
    threads = [threading.Thread(target=loop, name=loop.__name__, daemon=True)
               for loop in (agent.expire_loop, agent.sync_loop, agent.work_loop)]
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
    agent.wake.set()
    for thread in threads:
        thread.join(timeout=15)
    bus.close()
    agent.store.close()


if __name__ == "__main__":
    main()
