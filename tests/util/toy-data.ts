// A toy language for training tests: sequences of ids uniform over 8 tokens (10..17), which IA3
// alone can learn on a frozen random model (a random model starts near ln(vocab) nats; the best
// possible loss is ln 8 ≈ 2.08). Seeded: the same seed gives the same examples.
import type { Example } from '../../src/train/data.js';

export function toyData(n: number, len: number, seed: number): Example[] {
  let s = seed;
  const rand = (k: number): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % k;
  };
  return Array.from({ length: n }, () => ({ input_ids: Array.from({ length: len }, () => 10 + rand(8)) }));
}
