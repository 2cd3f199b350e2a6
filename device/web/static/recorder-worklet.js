// AudioWorklet processor for recorder.js: hands each block of microphone samples (mono, float32)
// to the page. Runs on the audio thread, so it only copies; encoding happens on the page.
class VoxRecorderProcessor extends AudioWorkletProcessor {
  process(inputs) {
    const input = inputs[0];
    if (input && input.length) {
      const channels = input.length;
      const mono = new Float32Array(input[0].length);
      for (let c = 0; c < channels; c++) {
        const data = input[c];
        for (let i = 0; i < data.length; i++) mono[i] += data[i] / channels;
      }
      this.port.postMessage(mono, [mono.buffer]);
    }
    return true;
  }
}

registerProcessor("vox-recorder", VoxRecorderProcessor);
