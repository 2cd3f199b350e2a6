// Records the browser's microphone and encodes it as 16-bit mono WAV, so the device needs no
// decoder for compressed formats (MediaRecorder gives Opus/WebM, which would need ffmpeg there).
// Usage: VoxRecorder.record(seconds, onTick) -> Promise<Blob> (audio/wav); VoxRecorder.stop().
(function () {
  "use strict";

  let current = null;
  // The worklet's address comes from the <script data-worklet="..."> tag that loads this file.
  const WORKLET_URL = document.currentScript && document.currentScript.dataset.worklet;

  function available() {
    return Boolean(window.isSecureContext && navigator.mediaDevices &&
                   navigator.mediaDevices.getUserMedia && window.AudioWorkletNode);
  }

  function unavailableReason() {
    if (!window.isSecureContext) {
      return "This browser allows the microphone only on HTTPS pages or on localhost. " +
             "Upload a WAV recording instead, or use the device's microphone.";
    }
    return "This browser cannot record audio here. Upload a WAV recording instead.";
  }

  function encodeWav(chunks, rate) {
    let length = 0;
    for (const chunk of chunks) length += chunk.length;
    const buffer = new ArrayBuffer(44 + length * 2);
    const view = new DataView(buffer);
    const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
    text(0, "RIFF");
    view.setUint32(4, 36 + length * 2, true);
    text(8, "WAVE");
    text(12, "fmt ");
    view.setUint32(16, 16, true);
    view.setUint16(20, 1, true);        // PCM
    view.setUint16(22, 1, true);        // mono
    view.setUint32(24, rate, true);
    view.setUint32(28, rate * 2, true); // bytes per second
    view.setUint16(32, 2, true);        // block align
    view.setUint16(34, 16, true);       // bits per sample
    text(36, "data");
    view.setUint32(40, length * 2, true);
    let offset = 44;
    for (const chunk of chunks) {
      for (let i = 0; i < chunk.length; i++, offset += 2) {
        const s = Math.max(-1, Math.min(1, chunk[i]));
        view.setInt16(offset, s < 0 ? s * 0x8000 : s * 0x7fff, true);
      }
    }
    return new Blob([buffer], { type: "audio/wav" });
  }

  function connect(stream) {
    // 16 kHz is what the device wants. A browser that cannot run a context at that rate, or cannot
    // feed a microphone at another rate into it (Firefox), records at its own rate and the device
    // resamples.
    try {
      const context = new AudioContext({ sampleRate: 16000 });
      try {
        return { context, source: context.createMediaStreamSource(stream) };
      } catch (err) {
        context.close();
      }
    } catch (err) { /* fall through to the browser's own rate */ }
    const context = new AudioContext();
    return { context, source: context.createMediaStreamSource(stream) };
  }

  async function openMicrophone() {
    try {
      return await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
      });
    } catch (err) {
      if (err.name === "NotAllowedError") {
        throw new Error("The browser was not allowed to use the microphone. Allow it for this page " +
                        "(site settings) and try again.");
      }
      if (err.name === "NotFoundError") throw new Error("No microphone was found on this phone or computer.");
      throw new Error("The microphone could not be opened: " + (err.message || err.name));
    }
  }

  async function record(seconds, onTick) {
    if (!available()) throw new Error(unavailableReason());
    if (current) throw new Error("A recording is already running.");
    const stream = await openMicrophone();
    let context, source;
    try {
      ({ context, source } = connect(stream));
    } catch (err) {
      stream.getTracks().forEach((track) => track.stop());
      throw new Error("This browser cannot record audio here: " + (err.message || err.name));
    }
    const chunks = [];
    let timer = null;
    try {
      await context.audioWorklet.addModule(WORKLET_URL);
      const node = new AudioWorkletNode(context, "vox-recorder");
      node.port.onmessage = (event) => chunks.push(event.data);
      source.connect(node);
      // Some browsers only run nodes that reach the output; the worklet writes no output, so silence.
      node.connect(context.destination);
      await new Promise((resolve) => {
        const started = Date.now();
        current = { stop: resolve };
        timer = setInterval(() => {
          const left = seconds - (Date.now() - started) / 1000;
          if (onTick) onTick(Math.max(0, left));
          if (left <= 0) resolve();
        }, 100);
      });
      source.disconnect();
      node.disconnect();
      node.port.onmessage = null;
    } finally {
      clearInterval(timer);
      current = null;
      stream.getTracks().forEach((track) => track.stop());
      await context.close();
    }
    return encodeWav(chunks, context.sampleRate);
  }

  function stop() {
    if (current) current.stop();
  }

  window.VoxRecorder = { record, stop, available, unavailableReason, encodeWav };
})();
