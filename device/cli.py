"""``voxfleet device ...``: run the voice stack, feed it audio, inspect its models."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from device.offline import force_offline

force_offline()

DATA_DIR_HELP = ("Device data folder (settings, logs, audio). "
                 "Default: $VOXFLEET_DATA_DIR or ~/.local/share/voxfleet")


def _settings_options(func):
    """Options that override settings.json for this run only."""
    options = [
        click.option("--wake-word",
                     help="Bundled wake word: hey_jarvis (default), hey_mycroft, alexa, hey_rhasspy."),
        click.option("--wake-threshold", type=float, help="Wake word score needed, 0-1 (default 0.5)."),
        click.option("--stt-model", help="Speech recognition model: tiny.en (default) or base."),
        click.option("--audio-in", type=click.Choice(["spool", "alsa", "sounddevice"]),
                     help="Microphone: spool (files and streams, default), alsa or sounddevice."),
        click.option("--audio-out", type=click.Choice(["wav", "alsa"]),
                     help="Speaker: wav (keep answers as files, default) or alsa."),
        click.option("--bus-port", type=int, help="Port of the OVOS messagebus (default 8181)."),
        click.option("--tuning", type=click.Choice(["voxfleet", "stock"]),
                     help="voxfleet (default) or OVOS's stock listener and intent settings."),
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=DATA_DIR_HELP),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _load(data_dir, **overrides):
    from device.paths import DevicePaths
    from device.settings import SettingsError, load_settings

    try:
        paths = DevicePaths.at(data_dir)
        return paths, load_settings(paths.root, **overrides)
    except (SettingsError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc


def _fail(message: str, code: int = 1) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _say(text: str) -> None:
    click.echo(f"{time.strftime('%H:%M:%S')} {text}", err=True)


@contextlib.contextmanager
def _stdout_for_results():
    """Keep stdout for our results only.

    OVOS libraries log to ``sys.stdout`` (ovos_utils.log); a script reading ``--json`` lines must
    not get log lines among them. Everything written to ``sys.stdout`` while this is active goes to
    stderr; the results go to the real stdout through the returned stream. Entered before any
    OVOS module is imported, so their log handlers bind to stderr.
    """
    real = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield real
    finally:
        sys.stdout = real


@click.group()
def device() -> None:
    """The appliance: the OVOS voice stack and its models."""


@device.command()
@_settings_options
def run(data_dir, **overrides) -> None:
    """Start and supervise the OVOS services until Ctrl-C or SIGTERM."""
    from device.models import ModelNotFound
    from device.stack.supervisor import StackError, Supervisor, services_for

    paths, settings = _load(data_dir, **overrides)
    supervisor = Supervisor(paths, settings, services=services_for(settings), on_event=_say,
                            overrides=overrides)
    try:
        supervisor.start()
    except (StackError, ModelNotFound) as exc:
        _fail(str(exc))
    _say(f"voice stack ready: say \"{settings.wake_word.replace('_', ' ')}\" "
         f"(logs in {paths.logs}, audio input: {settings.audio_in})")
    if settings.audio_in == "spool":
        _say(f"drop 16 kHz mono WAV files into {paths.spool}, or use `voxfleet device listen`")
    supervisor.wait()


@device.command()
@click.option("--wav", "wavs", multiple=True, required=True,
              type=click.Path(path_type=Path), help="A WAV file to play to the device; repeat for more.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line for each voice session.")
@_settings_options
def listen(wavs, as_json, data_dir, **overrides) -> None:
    """Play WAV files into the voice stack and print each voice session.

    Uses the stack already running on this data folder (`voxfleet device run`), or starts one for
    the duration of the command. A file with no wake word in it gives no session.
    """
    from device.models import ModelNotFound
    from device.stack.supervisor import StackError
    from device.voice.audio import AudioError, load_wav
    from device.voice.listen import running_stack

    # Refuse bad files before spending a minute starting the stack.
    for wav in wavs:
        try:
            load_wav(wav)
        except AudioError as exc:
            _fail(str(exc), code=2)
    paths, settings = _load(data_dir, **overrides)
    if running_stack(paths) and any(v is not None for v in overrides.values()):
        _say("note: a stack is already running on this data folder; its settings apply, not these options")
    try:
        with _stdout_for_results() as out:
            reports = _play(paths, settings, [(Path(w), None) for w in wavs], as_json, out,
                            on_event=None if as_json else _say)
    except AudioError as exc:
        _fail(str(exc), code=2)
    except (StackError, ModelNotFound) as exc:
        _fail(str(exc))
    if not as_json:
        _print_table(reports)


def _play(paths, settings, files, as_json: bool, out, on_event=None, narrate: bool = False) -> list:
    """Play (path, spoken text or None) pairs through the stack; write JSON lines or narrate."""
    from device.voice.listen import Listener

    reports = []
    with Listener(paths, settings, on_event=on_event) as listener:
        for path, text in files:
            if narrate:
                _say(f"playing: hey {settings.wake_word.split('_')[-1]}, {text}")
            for report in listener.listen(path):
                reports.append(report)
                if as_json:
                    out.write(json.dumps(report.to_dict()) + "\n")
                    out.flush()
                elif narrate:
                    t = report.timings_ms
                    _say(f"  heard {report.transcript!r} -> {report.intent or 'no intent'} -> "
                         f"{report.answer!r} ({t.get('end_of_speech_to_first_audio')} ms to answer)")
    return reports


def _print_table(reports) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Voice sessions", show_lines=False)
    for column in ("file", "transcript", "intent", "answer", "speech→audio ms"):
        table.add_column(column, overflow="fold")
    for r in reports:
        table.add_row(Path(r.file).name, r.transcript or "-", r.intent or "-", r.answer or "-",
                      str(r.timings_ms.get("end_of_speech_to_first_audio") or "-"))
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped or logged: do not squeeze the table into 80 columns
    console.print(table)
    if not reports:
        click.echo("no voice sessions (no wake word heard)")


@device.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=DATA_DIR_HELP)
@click.option("--once", is_flag=True, help="Drain the outbox, then exit (0 when it is empty).")
@click.option("--timeout", type=float, default=15.0, show_default=True,
              help="Seconds to wait for the broker to connect and to acknowledge each batch.")
def sync(data_dir, once, timeout) -> None:
    """Send the outbox to the cloud's broker (pairing record: DATA_DIR/cloud.json)."""
    import signal

    from device.paths import DevicePaths
    from device.sync import cloud_peer
    from device.sync.link import LinkError, MqttLink, drain, load_link_config
    from device.sync.store import Store, StoreError
    from protocol.versions import LEGACY

    paths = DevicePaths.at(data_dir)
    try:
        store = Store(paths.root / "store.db")
    except StoreError as exc:  # a store this release cannot use, or no room to open it
        _fail(str(exc))
    try:
        config = load_link_config(paths.root / "cloud.json")
        link = MqttLink(config)
        link.start(timeout=timeout)
    except LinkError as exc:
        _fail(f"{exc}; {store.depth()} events stay queued")
    # Written for the cloud's release, as the agent does (a 0.1.0 cloud refuses fields it does not know).
    peer = (cloud_peer.probe(config.cloud_url) if config.cloud_url else None) or LEGACY
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while True:
            sent = drain(store, link, ack_timeout=timeout, peer=peer)
            if sent:
                _say(f"delivered {sent} events")
            if once or stop["now"]:
                break
            time.sleep(1.0)
    except LinkError as exc:
        _fail(f"{exc}; {store.depth()} events stay queued")
    except KeyboardInterrupt:
        pass
    finally:
        link.close()
    if once and store.depth():
        _fail(f"{store.depth()} events are still queued")


@device.command("setup-web")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=DATA_DIR_HELP)
@click.option("--host", default="0.0.0.0", show_default=True,
              help="Address to listen on. Only LAN clients (private, loopback, link-local) are answered.")
@click.option("--port", type=int, help="Port (default: setup_web_port from settings.json, 8080).")
def setup_web(data_dir, host, port) -> None:
    """Serve the local setup web page (first boot, network, voice, cloud pairing, status)."""
    from device.web.serve import serve

    paths, settings = _load(data_dir)
    port = port or settings.setup_web_port
    _say(f"setup web on http://{host}:{port}/ (data folder {paths.root}); Ctrl-C stops it")
    try:
        serve(paths, host, port)
    except OSError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        pass


@device.command()
@click.option("--cloud", "cloud_url", required=True, help="The cloud's web address, e.g. https://cloud.example.com")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=DATA_DIR_HELP)
def pair(cloud_url, data_dir) -> None:
    """Pair this device with a cloud: show a code, wait until an admin claims it, keep the credentials."""
    from device.paths import DevicePaths
    from device.sync import pairing

    paths = DevicePaths.at(data_dir)
    try:
        pairing.check_cloud(cloud_url)
        secret = pairing.new_secret()
        code = pairing.request_code(cloud_url, secret)
        minutes = max(1, round((code.expires_at - datetime.now(UTC)).total_seconds() / 60))
        _say(f"pairing code: {code.code}  (enter it in the cloud's portal or API within {minutes} minutes)")
        click.echo(code.code)  # stdout: the code alone, for scripts
        credentials = pairing.wait_for_claim(cloud_url, code, secret)
        target = pairing.save_pairing(paths.root, cloud_url, credentials)
    except pairing.PairingFailed as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("pairing cancelled", code=130)
    _say(f"paired with {credentials.get('tenant')} / {credentials.get('project')} as "
         f"{credentials['device_key']}; credentials in {target}")


@device.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=DATA_DIR_HELP)
def agent(data_dir) -> None:
    """Run the sync agent on its own (`run` starts it with the stack; on a device, systemd does).

    Needs the device's messagebus running; reads the bus address from the device's mycroft.conf.
    """
    import os

    from device.paths import DevicePaths
    from device.stack.config import service_env

    paths = DevicePaths.at(data_dir)
    if not paths.mycroft_conf.exists():
        _fail(f"{paths.mycroft_conf} does not exist: start the stack once with `voxfleet device run`")
    os.environ.update(service_env(paths))
    from device.sync.agent import main

    main()


@device.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=DATA_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(data_dir, as_json) -> None:
    """Health of each service of the stack running on this data folder (exit 1 if not all ready)."""
    from device.paths import DevicePaths
    from device.voice.listen import running_stack

    paths = DevicePaths.at(data_dir)
    record = running_stack(paths)
    try:
        health = json.loads((paths.run / "health.json").read_text())
    except (OSError, ValueError):
        health = {"services": {}}
    services = health.get("services", {}) if record else {}
    try:
        sync_state = json.loads((paths.run / "sync.json").read_text())
    except (OSError, ValueError):
        sync_state = None
    if as_json:
        click.echo(json.dumps({"running": bool(record), "updated": health.get("updated"),
                               "services": services, "sync": sync_state}, indent=2))
    elif not record:
        click.echo(f"no voice stack is running on {paths.root}")
    else:
        for name, info in services.items():
            click.echo(f"{name:<11} {info['state']:<11} pid {info['pid'] or '-':<8} "
                       f"restarts {info['restarts']:<3} {info['rss_mb'] or '-'} MB")
        if sync_state is not None:
            link = ("connected to " + str(sync_state.get("broker_url")) if sync_state.get("connected")
                    else "not connected" if sync_state.get("broker_url") else "not paired")
            last = sync_state.get("last_sync")
            click.echo(f"sync        {link}; {sync_state.get('outbox_depth', 0)} events queued; last sync "
                       + (time.strftime("%H:%M:%S", time.localtime(last)) if last else "never"))
    ok = bool(record) and bool(services) and all(i["state"] == "ready" for i in services.values())
    sys.exit(0 if ok else 1)


@device.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json) -> None:
    """List the bundled models and where they resolved (or which package is missing)."""
    from device.models import catalogue

    rows = catalogue()
    if as_json:
        click.echo(json.dumps([{"kind": r.entry.kind, "name": r.entry.name, "packages": r.entry.packages,
                                "path": r.path, "error": r.error} for r in rows], indent=2))
    else:
        for r in rows:
            status = r.path if r.path else click.style(f"MISSING: {r.error}", fg="red")
            click.echo(f"{r.entry.kind:<10} {r.entry.name:<18} {status}")
    if any(r.error for r in rows):
        sys.exit(1)


@device.command("samples")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the WAV files (and a JSON file beside each with its timing).")
@click.option("--voice", type=click.Choice(["piper", "espeak"]), default="piper", show_default=True)
@click.option("--wake-word", default="hey_jarvis", show_default=True)
def samples_cmd(out, voice, wake_word) -> None:
    """Speak the bundled sample commands into WAV files, with the device's own voices."""
    from device.voice import samples

    speaker = samples.PiperVoice() if voice == "piper" else samples.EspeakVoice()
    for command in samples.commands_for(voice):
        sample = samples.synthesize(speaker, command.text, out, wake_word=wake_word)
        click.echo(str(sample.path))


@device.command()
@click.option("--voice", type=click.Choice(["piper", "espeak"]), default="piper", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line for each voice session.")
@_settings_options
def demo(voice, as_json, data_dir, **overrides) -> None:
    """Start the stack, speak every sample command to it, and print what it answered."""
    from device.models import ModelNotFound
    from device.stack.supervisor import StackError
    from device.voice import samples

    paths, settings = _load(data_dir, **overrides)
    with _stdout_for_results() as out:
        speaker = samples.PiperVoice() if voice == "piper" else samples.EspeakVoice()
        commands = samples.commands_for(voice)
        _say(f"speaking {len(commands)} sample commands with {speaker.name}")
        files = [samples.synthesize(speaker, c.text, paths.root / "samples" / voice,
                                    wake_word=settings.wake_word) for c in commands]
        try:
            reports = _play(paths, settings, [(f.path, f.text) for f in files], as_json, out,
                            on_event=_say, narrate=True)
        except (StackError, ModelNotFound) as exc:
            _fail(str(exc))
    if not as_json:
        _print_table(reports)
        click.echo(f"answers kept as WAV files in {paths.answers}")
