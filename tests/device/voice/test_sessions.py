from hypothesis import given, settings
from hypothesis import strategies as st

from device.voice.sessions import IDLE_TIMEOUT, BusEvent, SessionBuilder, build_sessions

DATE_TIME = "ovos-skill-date-time.openvoiceos"
TIMER = "voxfleet-skill-timer.voxfleet"
UNKNOWN = "ovos-skill-fallback-unknown.openvoiceos"
T0 = 1_700_000_000.0


def ctx(session="default", **extra):
    return {"session": {"session_id": session}, **extra}


def ev(t, type_, data=None, session="default", **context):
    return BusEvent(T0 + t, type_, data or {}, ctx(session, **context))


def heard(t, text, session="default", wake=True):
    """Wake word (optional), recording, transcript: what the listener emits for one command."""
    events = []
    if wake:
        events.append(ev(t, "recognizer_loop:wakeword", {"key_phrase": "hey_jarvis"}, session))
    events += [
        ev(t + 0.1, "recognizer_loop:record_begin", session=session),
        ev(t + 2.0, "recognizer_loop:record_end", session=session),
        ev(t + 2.3, "recognizer_loop:utterance", {"utterances": [text], "lang": "en-US"}, session),
    ]
    return events


def answered(t, skill=DATE_TIME, intent="what.time.is.it.intent", answer="It's ten past three.",
             session="default"):
    return [
        ev(t, f"{skill}:{intent}", {"utterance": "what time is it"}, session, skill_id=skill),
        ev(t + 0.01, "mycroft.skill.handler.start", {"name": "handle"}, session, skill_id=skill),
        ev(t + 0.1, "speak", {"utterance": answer}, session, skill_id=skill),
        ev(t + 0.12, "mycroft.skill.handler.complete", {"name": "handle"}, session, skill_id=skill),
        ev(t + 0.13, "ovos.utterance.handled", {"name": "handle"}, session, skill_id=skill),
        ev(t + 0.3, "recognizer_loop:audio_output_start", session=session),
        ev(t + 1.5, "recognizer_loop:audio_output_end", session=session),
    ]


def full_exchange(t=0.0, session="default"):
    return heard(t, "what time is it", session) + answered(t + 2.5, session=session)


def test_full_answered_exchange():
    (s,) = build_sessions(full_exchange())
    assert s.closed
    assert s.ovos_session_id == "default"
    assert s.wake_word == "hey_jarvis"
    assert s.transcript == "what time is it"
    assert s.intent == f"{DATE_TIME}:what.time.is.it.intent"
    assert s.skill_id == DATE_TIME
    assert s.fallback_skill is None
    assert s.answer == "It's ten past three."
    assert s.end_state == "answered"
    assert (s.wake_at, s.record_begin_at, s.record_end_at, s.utterance_at) == (
        T0, T0 + 0.1, T0 + 2.0, T0 + 2.3)
    assert s.intent_at == s.matched_at == T0 + 2.5
    assert s.speak_at == T0 + 2.6
    assert s.handled_at == T0 + 2.63
    assert s.audio_start_at == T0 + 2.8
    assert s.audio_end_at == T0 + 4.0
    assert s.started_at == T0


def test_session_closes_on_audio_output_end_not_before():
    builder = SessionBuilder()
    events = full_exchange()
    for event in events[:-1]:
        assert builder.feed(event) == []
    assert len(builder.open_sessions()) == 1
    (done,) = builder.feed(events[-1])
    assert done.end_state == "answered"
    assert builder.open_sessions() == []


def test_complete_intent_failure_is_not_understood():
    events = heard(0, "what is the airspeed of a swallow") + [
        ev(2.5, "mycroft.audio.play_sound", {"uri": "snd/error.mp3"}),
        ev(2.5, "complete_intent_failure", {"utterances": ["what is the airspeed of a swallow"]}),
        ev(2.5, "ovos.utterance.handled"),
    ]
    builder = SessionBuilder()
    done = [s for e in events for s in builder.feed(e)]
    (s,) = done  # nothing is said, so handled is enough to finish it
    assert s.intent is None
    assert s.failed_at == T0 + 2.5
    assert s.end_state == "not_understood"


def test_fallback_answer_is_not_understood():
    events = heard(0, "what is the airspeed of a swallow") + [
        ev(2.5, f"ovos.skills.fallback.{UNKNOWN}.request", {"skill_id": UNKNOWN}, skill_id=UNKNOWN),
        ev(2.6, "speak", {"utterance": "I don't know how to answer that."}, skill_id=UNKNOWN),
        ev(2.7, "ovos.utterance.handled"),
        ev(2.8, "recognizer_loop:audio_output_start"),
        ev(4.0, "recognizer_loop:audio_output_end"),
    ]
    (s,) = build_sessions(events)
    assert s.intent is None
    assert s.fallback_skill == UNKNOWN
    assert s.answer == "I don't know how to answer that."
    assert s.end_state == "not_understood"


def test_no_speech_closes_the_session():
    builder = SessionBuilder()
    events = heard(0, "x")[:-1] + [ev(2.2, "recognizer_loop:speech.recognition.unknown")]
    done = [s for e in events for s in builder.feed(e)]
    (s,) = done
    assert s.end_state == "no_speech"
    assert s.transcript is None
    assert builder.open_sessions() == []


def test_second_wake_word_closes_the_first_as_it_stands():
    first = heard(0, "what time is it")
    builder = SessionBuilder()
    assert [s for e in first for s in builder.feed(e)] == []
    (closed,) = builder.feed(ev(3.0, "recognizer_loop:wakeword", {"key_phrase": "hey_jarvis"}))
    assert closed.transcript == "what time is it"
    assert closed.intent is None
    assert closed.end_state == "open"
    (current,) = builder.open_sessions()
    assert current.session_id != closed.session_id
    assert current.wake_at == T0 + 3.0
    assert current.transcript is None


def test_speech_from_another_skill_is_not_attributed():
    events = heard(0, "what time is it") + answered(2.5)
    timer_rings = ev(2.55, "speak", {"utterance": "Your five minute timer is done."}, skill_id=TIMER)
    events.insert(len(events) - 5, timer_rings)  # after the intent matched, before the answer
    (s,) = build_sessions(events)
    assert s.answers == ["It's ten past three."]
    assert s.end_state == "answered"


def test_speech_before_the_match_is_not_attributed():
    events = heard(0, "what time is it")
    events.append(ev(2.4, "speak", {"utterance": "Your timer is done."}, skill_id=TIMER))
    events += answered(2.5)
    (s,) = build_sessions(events)
    assert s.answers == ["It's ten past three."]


def test_missing_audio_output_end_keeps_it_open_until_flush():
    builder = SessionBuilder()
    for event in full_exchange()[:-1]:
        assert builder.feed(event) == []
    (still_open,) = builder.open_sessions()
    assert still_open.end_state == "answered"
    assert still_open.audio_end_at is None
    (flushed,) = builder.flush()
    assert flushed is still_open and flushed.closed
    assert builder.open_sessions() == []


def test_missing_audio_output_end_expires_after_idle_timeout():
    builder = SessionBuilder()
    events = full_exchange()[:-1]
    for event in events:
        builder.feed(event)
    last = events[-1].t
    assert builder.expire(last + IDLE_TIMEOUT - 1) == []
    (expired,) = builder.expire(last + IDLE_TIMEOUT + 1)
    assert expired.transcript == "what time is it"
    assert builder.open_sessions() == []


def test_late_event_expires_a_stale_session():
    builder = SessionBuilder()
    for event in full_exchange()[:-1]:
        builder.feed(event)
    done = builder.feed(ev(100.0, "recognizer_loop:wakeword", {"key_phrase": "hey_jarvis"}))
    assert [s.transcript for s in done] == ["what time is it"]
    assert len(builder.open_sessions()) == 1


def test_remote_client_session_does_not_mix_with_default():
    local = heard(0, "what time is it")
    remote = [
        ev(0.5, "recognizer_loop:utterance", {"utterances": ["set a timer for ten seconds"]}, "remote-1"),
        ev(0.6, f"{TIMER}:timer.set.intent", {"utterance": "set a timer for ten seconds"}, "remote-1",
           skill_id=TIMER),
        ev(0.7, "speak", {"utterance": "Timer set for ten seconds."}, "remote-1", skill_id=TIMER),
        ev(0.8, "ovos.utterance.handled", session="remote-1"),
        ev(0.9, "recognizer_loop:audio_output_start", session="remote-1"),
        ev(1.5, "recognizer_loop:audio_output_end", session="remote-1"),
    ]
    events = sorted(local + remote + answered(2.5), key=lambda e: e.t)
    sessions = {s.ovos_session_id: s for s in build_sessions(events)}
    assert set(sessions) == {"default", "remote-1"}
    assert sessions["remote-1"].transcript == "set a timer for ten seconds"
    assert sessions["remote-1"].answer == "Timer set for ten seconds."
    assert sessions["remote-1"].wake_word is None
    assert sessions["default"].transcript == "what time is it"
    assert sessions["default"].answer == "It's ten past three."
    assert sessions["default"].end_state == sessions["remote-1"].end_state == "answered"


def test_typed_utterance_without_wake_word_forms_a_session():
    events = heard(0, "what time is it", wake=False)[2:] + answered(2.5)
    (s,) = build_sessions(events)
    assert s.wake_word is None and s.wake_at is None and s.record_begin_at is None
    assert s.transcript == "what time is it"
    assert s.started_at == s.utterance_at == T0 + 2.3
    assert s.end_state == "answered"


def test_handler_exception_is_an_error():
    skill = DATE_TIME
    events = heard(0, "what time is it") + [
        ev(2.5, f"{skill}:what.time.is.it.intent", skill_id=skill),
        ev(2.51, "mycroft.skill.handler.start", {"name": "handle"}, skill_id=skill),
        ev(2.6, "speak", {"utterance": "An error occurred while processing a request in Date Time"},
           skill_id=skill),
        ev(2.61, "mycroft.skill.handler.error", {"exception": "KeyError('x')"}, skill_id=skill),
        ev(2.62, "mycroft.skill.handler.complete", {"name": "handle", "exception": "KeyError('x')"},
           skill_id=skill),
        ev(2.63, "ovos.utterance.handled", skill_id=skill),
        ev(2.7, "recognizer_loop:audio_output_start"),
        ev(4.0, "recognizer_loop:audio_output_end"),
    ]
    (s,) = build_sessions(events)
    assert s.errors == ["KeyError('x')"]
    assert s.end_state == "error"


def test_stop_global():
    events = heard(0, "stop") + [
        ev(2.5, "stop:global", {"utterance": "stop"}, skill_id="stop.openvoiceos"),
        ev(2.6, "ovos.utterance.handled"),
    ]
    (s,) = build_sessions(events)
    assert s.intent == "stop:global"
    assert s.skill_id == "stop.openvoiceos"
    assert s.end_state == "handled"


def test_stop_of_an_active_skill_closes_on_its_stop_response():
    """ovos-core sends no "handled" for stop:skill; the skill's stop.response ends the exchange."""
    builder = SessionBuilder()
    closed = []
    for event in heard(0, "stop that") + [
        ev(2.5, "stop:skill", {"skill_id": "ovos-skill-volume.openvoiceos"}, skill_id="stop.openvoiceos"),
        ev(2.6, "ovos-skill-volume.openvoiceos.stop"),
        ev(2.7, "ovos-skill-volume.openvoiceos.stop.response", {"result": False}),
    ]:
        closed += builder.feed(event)
    assert len(closed) == 1 and closed[0].intent == "stop:skill"
    assert closed[0].end_state == "handled" and builder.open_sessions() == []


def test_scheduled_skill_event_is_not_taken_for_the_intent():
    """The date-time skill's hourly chime fired mid-exchange once and was counted as the match."""
    chime = "ovos-skill-date-time.openvoiceos:ovos-skill-date-time.openvoiceos_handle_play_hour_chime"
    events = heard(0, "what is the volume") + [
        ev(2.45, chime, {}, skill_id="ovos-skill-date-time.openvoiceos"),
    ] + answered(2.5, skill="ovos-skill-volume.openvoiceos", intent="current_volume",
                 answer="The volume is at 70")
    (s,) = build_sessions(events)
    assert s.intent == "ovos-skill-volume.openvoiceos:current_volume"
    assert s.answer == "The volume is at 70"


def test_record_begin_before_wake_word_is_one_exchange():
    """The listener emits them from different threads; seen reversed, they must not make a phantom."""
    events = heard(0, "what time is it")
    events[0], events[1] = events[1], events[0]  # record_begin first
    sessions = build_sessions(events + answered(2.5))
    assert len(sessions) == 1
    assert sessions[0].wake_word == "hey_jarvis" and sessions[0].transcript == "what time is it"


def test_announced_id_is_adopted():
    """The agent names each exchange on the bus; every other listener reports that same id."""
    events = heard(0, "what time is it")
    events.insert(1, ev(0.01, "voxfleet.session.started", {"session_id": "agent-chosen-id"}))
    (s,) = build_sessions(events + answered(2.5))
    assert s.session_id == "agent-chosen-id"


def test_on_start_is_told_of_each_new_exchange():
    started = []
    builder = SessionBuilder(on_start=started.append)
    for event in full_exchange(0) + full_exchange(10):
        builder.feed(event)
    assert len(started) == 2 and started[0].session_id != started[1].session_id


def test_cancelled_utterance():
    events = heard(0, "what time is it, nevermind") + [
        ev(2.4, "mycroft.audio.play_sound", {"uri": "snd/cancel.mp3"}),
        ev(2.4, "ovos.utterance.cancelled"),
        ev(2.4, "ovos.utterance.handled"),
    ]
    (s,) = build_sessions(events)
    assert s.end_state == "cancelled"


def test_unrelated_colon_message_without_skill_is_not_taken_for_an_intent():
    events = heard(0, "what time is it") + [
        ev(2.4, "other.skill:some.intent", skill_id=TIMER),  # prefix does not name its skill
    ] + answered(2.5)
    (s,) = build_sessions(events)
    assert s.intent == f"{DATE_TIME}:what.time.is.it.intent"


def test_events_with_missing_fields_do_not_crash():
    events = [
        BusEvent(T0, "recognizer_loop:wakeword"),
        BusEvent(T0 + 1, "recognizer_loop:record_begin", {}, {"session": None}),
        BusEvent(T0 + 2, "recognizer_loop:utterance", {"utterances": None}, {"session": {}}),
        BusEvent(T0 + 2.1, "recognizer_loop:utterance", {"utterances": []}),
        BusEvent(T0 + 3, f"{DATE_TIME}:what.time.is.it.intent"),
        BusEvent(T0 + 3.1, "speak"),
        BusEvent(T0 + 3.2, "speak", {"utterance": ""}),
        BusEvent(T0 + 3.3, "mycroft.skill.handler.complete"),
        BusEvent(T0 + 3.4, "ovos.utterance.handled"),
        BusEvent(T0 + 3.5, "recognizer_loop:audio_output_end"),
        BusEvent(T0 + 4, "recognizer_loop:speech.recognition.unknown"),
        BusEvent(T0 + 5, ""),
    ]
    sessions = build_sessions(events)
    assert sessions
    assert all(s.answers == [] for s in sessions)
    assert all(s.ovos_session_id == "default" for s in sessions)


def two_exchanges():
    return full_exchange(0.0) + heard(10.0, "set a timer for ten seconds") + answered(
        12.5, skill=TIMER, intent="timer.set.intent", answer="Timer set for ten seconds.")


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_random_interleavings_and_drops_never_break(data):
    events = two_exchanges()
    kept = data.draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    order = data.draw(st.permutations([e for e, keep in zip(events, kept, strict=True) if keep]))
    sessions = build_sessions(order)
    ids = [s.session_id for s in sessions]
    assert len(ids) == len(set(ids))
    assert all(s.closed for s in sessions)
    known = {"It's ten past three.", "Timer set for ten seconds."}
    assert all(set(s.answers) <= known for s in sessions)
