// Seeded randomness for the page: the eval subset and the sampled text must be the same on every
// run with the same seed, which Math.random cannot give. mulberry32 is a few lines, well
// distributed for this purpose, and not worth a dependency.

/** mulberry32: a 32-bit PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded Fisher–Yates shuffle (a copy). */
export function seededShuffle<T>(items: readonly T[], seed: number): T[] {
  const random = mulberry32(seed);
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * Top-k sampling from one row of logits: the k largest, softmax at `temperature`, one draw.
 * `random` supplies the draw, so a seeded generator gives the same text every time.
 */
export function sampleTopK(logits: ArrayLike<number>, k: number, temperature: number, random: () => number): number {
  const n = logits.length;
  const kk = Math.max(1, Math.min(k, n));
  // Partial selection: keep the k best indices sorted by logit, descending (k is small).
  const best: number[] = [];
  for (let i = 0; i < n; i++) {
    const v = logits[i]!;
    if (best.length === kk && v <= logits[best[kk - 1]!]!) continue;
    let pos = best.length === kk ? kk - 1 : best.length;
    while (pos > 0 && logits[best[pos - 1]!]! < v) pos--;
    best.splice(pos, 0, i);
    if (best.length > kk) best.pop();
  }
  const t = Math.max(1e-6, temperature);
  const top = logits[best[0]!]!;
  const weights = best.map((i) => Math.exp((logits[i]! - top) / t));
  const sum = weights.reduce((s, w) => s + w, 0);
  let r = random() * sum;
  for (let j = 0; j < best.length; j++) {
    r -= weights[j]!;
    if (r < 0) return best[j]!;
  }
  return best[best.length - 1]!;
}

/** Softmax of a few logits (class scores). */
export function softmax(logits: readonly number[]): number[] {
  const m = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}
