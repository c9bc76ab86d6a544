// Checkpoint bytes (train/checkpoint.ts): a safetensors file with the state as JSON metadata,
// round-tripped bit for bit, and parsed as untrusted input — every truncation, flipped byte or
// edited field is a FormatError, never an untyped error or a checkpoint with holes.
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../src/errors.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { decodeCheckpoint, encodeCheckpoint, type Checkpoint } from '../../src/train/checkpoint.js';

const checkpoint: Checkpoint = {
  step: 6,
  epoch: 1,
  consumed: 2,
  args: { learningRate: 0.05, batchSize: 4, buckets: [8, 16] },
  fingerprint: { model: '0123456789abcd', adapters: 'fedcba98765432', dataset: '00000000000001' },
  tensors: [
    { name: 'ia3::default::h.0.attn.c_attn', values: Float32Array.of(1, -0, NaN, 1.5e-45), m: Float32Array.of(0.1, 0.2, 0.3, 0.4), v: Float32Array.of(1e-8, 2, 3, 4) },
    { name: 'mts::default::score.weight', values: Float32Array.of(3), m: Float32Array.of(0), v: Float32Array.of(0) },
  ],
};

const bits = (a: Float32Array): number[] => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

describe('checkpoint bytes', () => {
  it('round-trip every field, and every float bit for bit', () => {
    const back = decodeCheckpoint(encodeCheckpoint(checkpoint));
    expect({ ...back, tensors: [] }).toEqual({ ...checkpoint, tensors: [] });
    back.tensors.forEach((t, i) => {
      const want = checkpoint.tensors[i]!;
      expect(t.name).toBe(want.name);
      for (const k of ['values', 'm', 'v'] as const) expect(bits(t[k])).toEqual(bits(want[k]));
    });
    // Inspectable with any safetensors reader.
    const file = readSafetensors(encodeCheckpoint(checkpoint));
    expect(file.metadata.format).toBe('ia3-webgpu-checkpoint');
    expect([...file.tensors.keys()].sort()).toContain('exp_avg_sq/mts::default::score.weight');
  });

  it('refuses malformed files with a FormatError (300 seeded mutations and edited states)', () => {
    const bytes = encodeCheckpoint(checkpoint);
    let s = 99;
    const r = (n: number): number => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s % n;
    };
    let typed = 0;
    for (let i = 0; i < 300; i++) {
      const b = i % 2 === 0 ? bytes.slice(0, r(bytes.length)) : bytes.slice();
      if (i % 2 === 1) for (let k = 0; k < 1 + r(6); k++) b[r(b.length)] ^= 1 << r(8);
      try {
        decodeCheckpoint(b);
      } catch (e) {
        expect(e, `case ${i}`).toBeInstanceOf(FormatError);
        typed++;
      }
    }
    expect(typed).toBeGreaterThan(250);
    const tensors = { 'param/a': { dtype: 'F32' as const, shape: [2], data: Float32Array.of(1, 2) }, 'exp_avg/a': { dtype: 'F32' as const, shape: [1], data: Float32Array.of(0) }, 'exp_avg_sq/a': { dtype: 'F32' as const, shape: [2], data: Float32Array.of(0, 0) } };
    const state = (o: object) => JSON.stringify({ step: 1, epoch: 0, consumed: 1, args: {}, fingerprint: { model: 'm', adapters: 'a', dataset: 'd' }, order: ['a'], ...o });
    const cases: [Record<string, string>, RegExp][] = [
      [{ format: 'other', version: '1', state: state({}) }, /not a checkpoint/],
      [{ format: 'ia3-webgpu-checkpoint', version: '2', state: state({}) }, /version "2" is not supported/],
      [{ format: 'ia3-webgpu-checkpoint', version: '1', state: '{' }, /not JSON/],
      [{ format: 'ia3-webgpu-checkpoint', version: '1', state: state({ step: -1 }) }, /state.step must be a non-negative integer/],
      [{ format: 'ia3-webgpu-checkpoint', version: '1', state: state({ order: ['a', 'a'] }) }, /distinct tensor names/],
      [{ format: 'ia3-webgpu-checkpoint', version: '1', state: state({ order: ['b'] }) }, /unexpected tensor '(param|exp_avg|exp_avg_sq)\/a'/],
      [{ format: 'ia3-webgpu-checkpoint', version: '1', state: state({ fingerprint: {} }) }, /fingerprint/],
      [{ format: 'ia3-webgpu-checkpoint', version: '1', state: state({}) }, /moments of 'a' do not have its 2 elements/],
    ];
    for (const [meta, why] of cases) expect(() => decodeCheckpoint(writeSafetensors(tensors, meta))).toThrow(why);
  });
});
