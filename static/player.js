// Gapless playback of streamed PCM with Web Audio.
//
// Every chunk becomes one AudioBufferSourceNode, scheduled to start exactly where the
// previous one ends (sample-accurate on the context clock). The context runs at the
// model's sample rate, so no chunk is resampled on its own: resampling each buffer
// separately is what makes clicks at chunk boundaries.
//
// Where the stream cannot be seamless (the synthesis fell behind the clock, or Stop),
// short fades replace hard edges: each chunk's tail has a fade-out scheduled that is
// cancelled when the next chunk arrives in time, and a chunk after a gap fades in.

const START_LEAD_S = 0.08; // head room before the first chunk of a turn
const LATE_LEAD_S = 0.02; // head room when the stream has fallen behind the clock
const MIN_AHEAD_S = 0.02; // a chunk arriving later than this before the previous one ends is a gap
const FADE_S = 0.003; // edge fades at gaps (never between contiguous chunks)
const STOP_FADE_S = 0.005; // Stop: silent within 5 ms, without a click

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
  /** @param {{makeContext?: (sampleRate: number) => BaseAudioContext}} options (tests pass an OfflineAudioContext) */
  constructor(options = {}) {
    this.makeContext = options.makeContext || ((rate) => new AudioContext(rate ? { sampleRate: rate } : undefined));
    this.ctx = null;
    this.rate = 0;
    this.nextTime = 0; // context time where the next chunk of the current stream starts
    this.sources = new Set();
    this.master = null; // GainNode all chunks go through; replaced on Stop
    this.tail = null; // {gain, end} of the last chunk: its fade-out is pending
  }

  /** Create (or resume) the AudioContext; call from a user gesture when possible. */
  unlock(sampleRate) {
    if (!this.ctx || (sampleRate && sampleRate !== this.rate && !this.busy())) {
      if (this.ctx) this.ctx.close().catch(() => {});
      try {
        this.ctx = this.makeContext(sampleRate);
      } catch (_e) {
        this.ctx = this.makeContext(0); // rate not supported: let each buffer be resampled
      }
      this.rate = this.ctx.sampleRate;
      this.nextTime = 0;
      this.master = null;
      this.tail = null;
    }
    if (this.ctx.state === "suspended" && this.ctx.resume) this.ctx.resume().catch(() => {});
    if (!this.master) {
      this.master = this.ctx.createGain();
      this.master.connect(this.ctx.destination);
    }
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
    const gap = start < now + MIN_AHEAD_S; // the clock has (almost) caught up: an underrun
    if (gap) {
      start = now + (this.nextTime === 0 ? START_LEAD_S : LATE_LEAD_S);
      fadeIn(samples, Math.round(FADE_S * sampleRate));
    } else if (this.tail) {
      this.tail.gain.gain.cancelScheduledValues(0); // seamless: the previous chunk keeps full level
      this.tail.gain.gain.value = 1;
    }
    const buffer = ctx.createBuffer(1, samples.length, sampleRate);
    buffer.copyToChannel(samples, 0);
    const src = ctx.createBufferSource();
    src.buffer = buffer;
    const gain = ctx.createGain();
    const end = start + buffer.duration;
    if (buffer.duration > 2 * FADE_S) {
      gain.gain.setValueAtTime(1, end - FADE_S); // cancelled if the next chunk comes in time
      gain.gain.linearRampToValueAtTime(0, end);
    }
    src.connect(gain).connect(this.master);
    src.onended = () => {
      this.sources.delete(src);
      gain.disconnect();
    };
    src.start(start);
    this.sources.add(src);
    this.tail = { gain, end };
    this.nextTime = end;
    return { start, duration: buffer.duration, gap };
  }

  /** Silence everything at once (barge-in): a 5 ms fade, then the sources stop. */
  stopAll() {
    if (!this.ctx) return;
    const now = this.ctx.currentTime;
    if (this.master) {
      this.master.gain.setValueAtTime(this.master.gain.value, now);
      this.master.gain.linearRampToValueAtTime(0, now + STOP_FADE_S);
      const old = this.master;
      setTimeout(() => old.disconnect(), 50);
    }
    for (const src of this.sources) {
      try {
        src.stop(now + STOP_FADE_S);
      } catch (_e) {
        /* already stopped */
      }
    }
    this.sources.clear();
    this.master = null; // the next turn gets a fresh master at full level
    this.tail = null;
    this.nextTime = 0;
  }
}

function fadeIn(samples, n) {
  const m = Math.min(n, samples.length);
  for (let i = 0; i < m; i++) samples[i] *= i / m;
}
