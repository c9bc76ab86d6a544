// Examples → batches: deterministic shuffles, bucket edges, padding on both sides (ids, masks,
// position_ids as HF builds them), CAUSAL_LM labels with −100 at pads, SEQ_CLS labels, truncation,
// batch slicing, and an InputError naming the example and field for every malformed input.
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.js';
import {
  DEFAULT_BUCKETS,
  batches,
  bucketLength,
  bucketsUpTo,
  collate,
  shuffled,
  type CollateOptions,
  type Example,
} from '../../src/train/data.js';

const rows = (t: { data: BigInt64Array; dims: number[] }): number[][] => {
  const [b, l] = t.dims as [number, number];
  return Array.from({ length: b }, (_, i) => Array.from(t.data.subarray(i * l, (i + 1) * l), Number));
};

const ALL = ['input_ids', 'attention_mask', 'token_type_ids', 'position_ids'];
const causal = (over: Partial<CollateOptions> = {}): CollateOptions => ({
  task: 'CAUSAL_LM',
  padTokenId: 9,
  buckets: [4, 6],
  maxLength: 6,
  inputNames: ALL,
  ...over,
});
const cls = (over: Partial<CollateOptions> = {}): CollateOptions => causal({ task: 'SEQ_CLS', ...over });

describe('shuffled', () => {
  const items = Array.from({ length: 50 }, (_, i) => i);

  it('is a permutation, deterministic in (seed, epoch), and leaves the input alone', () => {
    const a = shuffled(items, 42, 0);
    expect([...a].sort((x, y) => x - y)).toEqual(items);
    expect(shuffled(items, 42, 0)).toEqual(a);
    expect(a).not.toEqual(items);
    expect(items[0]).toBe(0);
    expect(items[49]).toBe(49);
  });

  it('differs across epochs and seeds, including large and negative seeds', () => {
    const orders = [shuffled(items, 42, 0), shuffled(items, 42, 1), shuffled(items, 43, 0), shuffled(items, 2 ** 40, 0), shuffled(items, -7, 0)];
    const keys = new Set(orders.map((o) => o.join(',')));
    expect(keys.size).toBe(orders.length);
    // Seeds that differ only above bit 32 must not collide.
    expect(shuffled(items, 2 ** 40, 0)).not.toEqual(shuffled(items, 0, 0));
  });

  it('handles empty and single-item lists, and rejects non-integer seed/epoch', () => {
    expect(shuffled([], 1, 1)).toEqual([]);
    expect(shuffled(['x'], 1, 1)).toEqual(['x']);
    expect(() => shuffled(items, 1.5, 0)).toThrow(/seed/);
    expect(() => shuffled(items, 1, Number.NaN)).toThrow(/epoch/);
  });
});

describe('buckets', () => {
  it('bucketLength picks the smallest bucket ≥ len, at the edges', () => {
    expect(bucketLength(1, DEFAULT_BUCKETS)).toBe(16);
    expect(bucketLength(16, DEFAULT_BUCKETS)).toBe(16);
    expect(bucketLength(17, DEFAULT_BUCKETS)).toBe(32);
    expect(bucketLength(512, DEFAULT_BUCKETS)).toBe(512);
    expect(bucketLength(5, [8, 4, 6])).toBe(6); // order of the list does not matter
  });

  it('bucketLength rejects a length past the largest bucket, naming it, and bad arguments', () => {
    expect(() => bucketLength(513, DEFAULT_BUCKETS)).toThrow(InputError);
    expect(() => bucketLength(513, DEFAULT_BUCKETS)).toThrow(/513.*512/);
    expect(() => bucketLength(0, DEFAULT_BUCKETS)).toThrow(/length/);
    expect(() => bucketLength(3, [])).toThrow(/buckets/);
    expect(() => bucketLength(3, [4, 0])).toThrow(/buckets/);
  });

  it('bucketsUpTo keeps the defaults ≤ maxLength and adds maxLength', () => {
    expect(bucketsUpTo(100)).toEqual([16, 32, 64, 100]);
    expect(bucketsUpTo(128)).toEqual([16, 32, 64, 128]);
    expect(bucketsUpTo(10)).toEqual([10]);
    expect(bucketsUpTo(1024)).toEqual([16, 32, 64, 128, 256, 512, 1024]);
    expect(() => bucketsUpTo(0)).toThrow(/maxLength/);
  });
});

describe('collate', () => {
  const two: Example[] = [{ input_ids: [5, 6, 7] }, { input_ids: [1, 2] }];

  it('right padding: ids, mask, token types, positions, causal labels with −100 at pads', () => {
    const b = collate(two, causal());
    expect(Object.keys(b.inputs).sort()).toEqual([...ALL].sort());
    expect(b.inputs.input_ids!.dims).toEqual([2, 4]);
    expect(rows(b.inputs.input_ids!)).toEqual([[5, 6, 7, 9], [1, 2, 9, 9]]);
    expect(rows(b.inputs.attention_mask!)).toEqual([[1, 1, 1, 0], [1, 1, 0, 0]]);
    expect(rows(b.inputs.token_type_ids!)).toEqual([[0, 0, 0, 0], [0, 0, 0, 0]]);
    expect(rows(b.inputs.position_ids!)).toEqual([[0, 1, 2, 3], [0, 1, 2, 3]]);
    expect(b.labels.dims).toEqual([2, 4]);
    expect(rows(b.labels)).toEqual([[5, 6, 7, -100], [1, 2, -100, -100]]);
    expect(b.tokens).toBe(5);
    expect(b.examples).toBe(2);
  });

  it('left padding: pads first, positions count real tokens and pads get 1', () => {
    const b = collate(two, causal({ paddingSide: 'left' }));
    expect(rows(b.inputs.input_ids!)).toEqual([[9, 5, 6, 7], [9, 9, 1, 2]]);
    expect(rows(b.inputs.attention_mask!)).toEqual([[0, 1, 1, 1], [0, 0, 1, 1]]);
    expect(rows(b.inputs.position_ids!)).toEqual([[1, 0, 1, 2], [1, 1, 0, 1]]);
    expect(rows(b.labels)).toEqual([[-100, 5, 6, 7], [-100, -100, 1, 2]]);
  });

  it('pads to the bucket of the longest row, not to the largest bucket', () => {
    expect(collate([{ input_ids: [1, 2, 3, 4, 5] }], causal()).inputs.input_ids!.dims).toEqual([1, 6]);
    expect(collate([{ input_ids: [1] }], causal({ buckets: [2, 16] })).inputs.input_ids!.dims).toEqual([1, 2]);
  });

  it('produces only the model inputs asked for', () => {
    const b = collate(two, causal({ inputNames: ['input_ids', 'attention_mask'] }));
    expect(Object.keys(b.inputs).sort()).toEqual(['attention_mask', 'input_ids']);
  });

  it('uses given labels as-is, pads them with −100', () => {
    const b = collate([{ input_ids: [5, 6, 7], labels: [-100, -100, 7] }, { input_ids: [1], labels: [4] }], causal());
    expect(rows(b.labels)).toEqual([[-100, -100, 7, -100], [4, -100, -100, -100]]);
  });

  it('honours a given attention mask: its 0s are not tokens, not labels, and shape left positions', () => {
    const ex: Example[] = [{ input_ids: [0, 5, 6], attention_mask: [0, 1, 1] }];
    const r = collate(ex, causal());
    expect(rows(r.inputs.attention_mask!)).toEqual([[0, 1, 1, 0]]);
    expect(rows(r.labels)).toEqual([[-100, 5, 6, -100]]);
    expect(r.tokens).toBe(2);
    const l = collate(ex, causal({ paddingSide: 'left' }));
    expect(rows(l.inputs.position_ids!)).toEqual([[1, 1, 0, 1]]);
  });

  it('truncates to maxLength keeping the beginning (ids, mask and labels together)', () => {
    const b = collate(
      [{ input_ids: [1, 2, 3, 4, 5, 6, 7, 8], attention_mask: [1, 1, 1, 1, 1, 1, 1, 0], labels: [11, 12, 13, 14, 15, 16, 17, 18] }],
      causal({ maxLength: 5 }),
    );
    expect(rows(b.inputs.input_ids!)).toEqual([[1, 2, 3, 4, 5, 9]]);
    expect(rows(b.labels)).toEqual([[11, 12, 13, 14, 15, -100]]);
    expect(b.tokens).toBe(5);
  });

  it('SEQ_CLS: one label per example, dims [batch]', () => {
    const b = collate([{ input_ids: [5, 6, 7], label: 2 }, { input_ids: [1], label: 0 }], cls());
    expect(b.labels.dims).toEqual([2]);
    expect(Array.from(b.labels.data, Number)).toEqual([2, 0]);
    expect(rows(b.inputs.input_ids!)).toEqual([[5, 6, 7, 9], [1, 9, 9, 9]]);
  });

  it('throws an InputError naming the example index and field for every malformed example', () => {
    const bad: [Example, CollateOptions, RegExp][] = [
      [{ input_ids: [] }, causal(), /example 1: input_ids/],
      [{ input_ids: [1, 2.5] }, causal(), /example 1: input_ids\[1\]/],
      [{ input_ids: [1, -3] }, causal(), /example 1: input_ids\[1\]/],
      [{ input_ids: [1, 2], attention_mask: [1] }, causal(), /example 1: attention_mask has length 1, input_ids 2/],
      [{ input_ids: [1, 2], attention_mask: [1, 2] }, causal(), /example 1: attention_mask\[1\]/],
      [{ input_ids: [1, 2], labels: [1] }, causal(), /example 1: labels has length 1/],
      [{ input_ids: [1, 2], labels: [1, -5] }, causal(), /example 1: labels\[1\]/],
      [{ input_ids: [1, 2] }, cls(), /example 1: label is missing/],
      [{ input_ids: [1, 2], label: -1 }, cls(), /example 1: label must be/],
      [{ input_ids: [1, 2], label: 0.5 }, cls(), /example 1: label must be/],
    ];
    for (const [ex, opts, msg] of bad) {
      const call = () => collate([{ input_ids: [1], label: 0 }, ex], opts);
      expect(call).toThrow(InputError);
      expect(call).toThrow(msg);
    }
  });

  it('rejects bad options and inputs it cannot build', () => {
    expect(() => collate([], causal())).toThrow(/empty/);
    expect(() => collate(two, causal({ padTokenId: -1 }))).toThrow(/padTokenId/);
    expect(() => collate(two, causal({ maxLength: 0 }))).toThrow(/maxLength/);
    expect(() => collate(two, causal({ inputNames: ['attention_mask'] }))).toThrow(/input_ids/);
    expect(() => collate(two, causal({ inputNames: ['input_ids', 'pixel_values'] }))).toThrow(/pixel_values/);
    expect(() => collate(two, causal({ paddingSide: 'middle' as 'left' }))).toThrow(/paddingSide/);
    // maxLength beyond every bucket: the longest row cannot be bucketed.
    expect(() => collate([{ input_ids: [1, 2, 3, 4, 5, 6, 7] }], causal({ maxLength: 8 }))).toThrow(/7.*6/);
  });
});

describe('batches', () => {
  const data: Example[] = Array.from({ length: 7 }, (_, i) => ({ input_ids: [i + 1], label: i }));
  const base = { ...cls(), batchSize: 3, seed: 1, epoch: 0 };
  const labelsOf = (bs: Iterable<{ labels: { data: BigInt64Array } }>) => [...bs].map((b) => Array.from(b.labels.data, Number));

  it('keeps order without shuffling and keeps the short last batch', () => {
    expect(labelsOf(batches(data, { ...base, shuffle: false }))).toEqual([[0, 1, 2], [3, 4, 5], [6]]);
  });

  it('drops the short last batch when asked', () => {
    expect(labelsOf(batches(data, { ...base, shuffle: false, dropLast: true }))).toEqual([[0, 1, 2], [3, 4, 5]]);
  });

  it('shuffles as shuffled(seed, epoch) does, covering every example once', () => {
    const got = labelsOf(batches(data, base)).flat();
    expect(got).toEqual(shuffled(data, 1, 0).map((e) => e.label));
    expect([...got].sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(labelsOf(batches(data, { ...base, epoch: 1 })).flat()).not.toEqual(got);
  });

  it('counts examples and tokens per batch', () => {
    const bs = [...batches(data, { ...base, shuffle: false })];
    expect(bs.map((b) => [b.examples, b.tokens])).toEqual([[3, 3], [3, 3], [1, 1]]);
  });

  it('validates batchSize and every example (with its dataset index) before the first batch', () => {
    expect(() => batches(data, { ...base, batchSize: 0 }).next()).toThrow(/batchSize/);
    const withBad = [...data, { input_ids: [1] }];
    const gen = batches(withBad, { ...base, shuffle: false });
    expect(() => gen.next()).toThrow(/example 7: label is missing/);
  });

  it('yields nothing for an empty dataset', () => {
    expect([...batches([], base)]).toEqual([]);
  });
});
