// Gapless playback of streamed PCM with Web Audio.
//
// Every chunk becomes one AudioBufferSourceNode, scheduled to start exactly where the
// previous one ends (sample-accurate on the context clock). The context runs at the
// model's sample rate, so no chunk is resampled on its own: resampling each buffer
// separately is what makes clicks at chunk boundaries.

const START_LEAD_S = 0.08; // head room before the first chunk of a turn
const LATE_LEAD_S = 0.02; // head room when the stream has fallen behind the clock
const MIN_AHEAD_S = 0.005; // about one render quantum
const FADE_S = 0.003; // fade-in applied only after a gap (underrun), never between chunks

/** Decode base64 little-endian s16 mono PCM into float32 samples. */
export function decodePcm16(b64) {
  const bin = atob(b64);
  const n = bin.length >> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
    if (v >= 0x8000) v -= 0x10000;
    out[i] = v / 32768;
  }
  return out;
}

export class Player {
  constructor() {
    this.ctx = null;
    this.rate = 0;
    this.nextTime = 0; // context time where the next chunk of the current stream starts
    this.sources = new Set();
  }

  /** Create (or resume) the AudioContext; call from a user gesture when possible. */
  unlock(sampleRate) {
    if (!this.ctx || (sampleRate && sampleRate !== this.rate && !this.busy())) {
      if (this.ctx) this.ctx.close().catch(() => {});
      try {
        this.ctx = new AudioContext(sampleRate ? { sampleRate } : undefined);
      } catch (_e) {
        this.ctx = new AudioContext(); // rate not supported: let each buffer be resampled
      }
      this.rate = this.ctx.sampleRate;
      this.nextTime = 0;
    }
    if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    return this.ctx;
  }

  now() {
    return this.ctx ? this.ctx.currentTime : 0;
  }

  busy() {
    return this.ctx !== null && this.nextTime > this.ctx.currentTime;
  }

  /** Start a new stream (a new turn): its first chunk gets the start lead. */
  resetStream() {
    this.nextTime = 0;
  }

  /**
   * Schedule one chunk right after the previous one.
   * @returns {{start: number, duration: number, gap: boolean}} context times in seconds;
   *   `gap` is true when the chunk could not follow the previous one seamlessly
   */
  schedule(samples, sampleRate) {
    const ctx = this.unlock(this.rate || sampleRate);
    const now = ctx.currentTime;
    let start = this.nextTime;
    // Contiguous unless the clock has (almost) caught up with the stream: an underrun.
    const gap = start < now + MIN_AHEAD_S;
    if (gap) {
      start = now + (this.nextTime === 0 ? START_LEAD_S : LATE_LEAD_S);
      fadeIn(samples, Math.round(FADE_S * sampleRate));
    }
    const buffer = ctx.createBuffer(1, samples.length, sampleRate);
    buffer.copyToChannel(samples, 0);
    const src = ctx.createBufferSource();
    src.buffer = buffer;
    src.connect(ctx.destination);
    src.onended = () => this.sources.delete(src);
    src.start(start);
    this.sources.add(src);
    this.nextTime = start + buffer.duration;
    return { start, duration: buffer.duration, gap };
  }

  /** Silence everything at once (barge-in). */
  stopAll() {
    for (const src of this.sources) {
      try {
        src.stop();
        src.disconnect();
      } catch (_e) {
        /* already stopped */
      }
    }
    this.sources.clear();
    this.nextTime = 0;
  }
}

function fadeIn(samples, n) {
  const m = Math.min(n, samples.length);
  for (let i = 0; i < m; i++) samples[i] *= i / m;
}
