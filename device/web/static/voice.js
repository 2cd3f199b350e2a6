// The voice pages' test panels: record (browser or device microphone) or upload a WAV, send it with
// the page's CSRF field, show the wake word score against the threshold or the transcript; and the
// voice preview, played in an <audio> element.
(function () {
  "use strict";

  function $(root, selector) { return root.querySelector(selector); }

  function setStatus(panel, text, isError) {
    const status = $(panel, "[data-status]");
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function fmt(value, digits) { return Number(value).toFixed(digits); }

  function showWake(panel, r) {
    const result = $(panel, "[data-result]");
    result.hidden = false;
    const bar = $(result, "[data-score-bar]");
    bar.style.width = Math.min(100, r.score * 100) + "%";
    bar.classList.toggle("pass", r.detected);
    $(result, "[data-threshold-mark]").style.left = (r.threshold * 100) + "%";
    $(result, "[data-score]").textContent = fmt(r.score, 3);
    $(result, "[data-threshold]").textContent = fmt(r.threshold, 2);
    $(result, "[data-verdict]").textContent = r.detected
      ? "Detected: the device would wake up."
      : "Not detected: the score stays below the threshold.";
    $(result, "[data-peak-at]").textContent = fmt(r.peak_at, 2) + " s";
    $(result, "[data-level]").textContent = fmt(r.level_dbfs, 1) + " dBFS";
    $(result, "[data-seconds]").textContent = fmt(r.seconds, 1) + " s";
  }

  function showSpeech(panel, r) {
    const result = $(panel, "[data-result]");
    result.hidden = false;
    $(result, "[data-transcript]").textContent = r.text || "(nothing recognised)";
    $(result, "[data-model]").textContent = r.model;
    $(result, "[data-seconds]").textContent = fmt(r.seconds, 1) + " s";
    $(result, "[data-decode-ms]").textContent = fmt(r.decode_ms, 0) + " ms";
    $(result, "[data-load-ms]").textContent = r.load_ms > 0 ? fmt(r.load_ms, 0) + " ms" : "already loaded";
    $(result, "[data-rtf]").textContent = fmt(r.real_time_factor, 3);
    $(result, "[data-level]").textContent = fmt(r.level_dbfs, 1) + " dBFS";
  }

  async function send(panel, fill) {
    const form = $(panel, "form[data-test-form]");
    const data = new FormData(form);
    for (const name of ["wake_word", "threshold", "stt_model"]) {
      const field = document.querySelector("[data-setting='" + name + "']");
      if (field) data.set(name, field.value);
    }
    data.delete("audio");
    fill(data);
    setStatus(panel, "Checking…");
    const response = await fetch(form.action, { method: "POST", body: data, credentials: "same-origin",
                                                 headers: { "Accept": "application/json" } });
    let body;
    try {
      body = await response.json();
    } catch (err) {
      throw new Error("The device answered " + response.status + " " + response.statusText + ".");
    }
    if (!response.ok) throw new Error(body.error || ("The device answered " + response.status + "."));
    (panel.dataset.kind === "wake" ? showWake : showSpeech)(panel, body);
    setStatus(panel, body.warning || "");
  }

  function guard(panel, buttons, task) {
    return async () => {
      buttons.forEach((b) => { b.disabled = true; });
      const previous = $(panel, "[data-result]");
      if (previous) previous.hidden = true;  // never show an old result beside a new test
      setStatus(panel, "");
      try {
        await task();
      } catch (err) {
        setStatus(panel, err.message || String(err), true);
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    };
  }

  function setUpPanel(panel) {
    const seconds = () => Number($(panel, "[data-seconds-choice]").value);
    const browserButton = $(panel, "[data-record-browser]");
    const deviceButton = $(panel, "[data-record-device]");
    const uploadButton = $(panel, "[data-upload]");
    const buttons = [browserButton, deviceButton, uploadButton].filter(Boolean);

    if (!window.VoxRecorder.available()) {
      browserButton.disabled = true;
      const note = $(panel, "[data-browser-unavailable]");
      note.textContent = window.VoxRecorder.unavailableReason();
      note.hidden = false;
    } else {
      browserButton.addEventListener("click", guard(panel, buttons, async () => {
        const wav = await window.VoxRecorder.record(seconds(), (left) => {
          setStatus(panel, "Recording… " + left.toFixed(1) + " s left");
        });
        await send(panel, (data) => data.set("audio", wav, "browser-recording.wav"));
      }));
    }
    if (deviceButton) {
      deviceButton.addEventListener("click", guard(panel, buttons, async () => {
        setStatus(panel, "Recording on the device for " + seconds() + " s…");
        await send(panel, (data) => {
          data.set("source", "device");
          data.set("seconds", String(seconds()));
        });
      }));
    }
    uploadButton.addEventListener("click", guard(panel, buttons, async () => {
      const input = $(panel, "input[type=file]");
      if (!input.files.length) throw new Error("Choose a WAV file first.");
      await send(panel, (data) => data.set("audio", input.files[0], input.files[0].name));
    }));
  }

  function setUpPreview(panel) {
    const button = $(panel, "[data-preview]");
    const player = $(panel, "audio");
    button.addEventListener("click", guard(panel, [button], async () => {
      const form = $(panel, "form[data-preview-form]");
      const data = new FormData(form);
      const voice = document.querySelector("[data-setting='tts_voice']");
      if (voice) data.set("voice", voice.value);
      setStatus(panel, "Synthesising on the device…");
      const response = await fetch(form.action, { method: "POST", body: data, credentials: "same-origin" });
      if (!response.ok) {
        let message = "The device answered " + response.status + ".";
        try { message = (await response.json()).error || message; } catch (err) { /* not JSON */ }
        throw new Error(message);
      }
      const wav = await response.blob();
      if (player.dataset.url) URL.revokeObjectURL(player.dataset.url);
      player.dataset.url = URL.createObjectURL(wav);
      player.src = player.dataset.url;
      player.hidden = false;
      setStatus(panel, "Playing " + (wav.size / 1024).toFixed(0) + " kB of speech.");
      await player.play();
    }));
  }

  function setUpThreshold() {
    const range = document.querySelector("[data-setting='threshold']");
    const shown = document.querySelector("[data-threshold-value]");
    if (range && shown) range.addEventListener("input", () => { shown.textContent = Number(range.value).toFixed(2); });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-voice-test]").forEach(setUpPanel);
    document.querySelectorAll("[data-voice-preview]").forEach(setUpPreview);
    setUpThreshold();
  });
})();
