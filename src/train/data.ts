// Training examples → shuffled, padded int64 batches for the compiled training step.
//
// The compiled graph is specialised to fixed shapes, so every batch is padded to one of a few
// sequence-length buckets (the plan for each bucket is built once and reused). Invariants:
//   - shuffling is a pure function of (items, seed, epoch): a resumed run sees the same order;
//   - every row of a batch has the bucket length; real tokens keep their order, pads are
//     padTokenId in input_ids, 0 in attention_mask and −100 in CAUSAL_LM labels (the loss's
//     ignore_index), so pads never contribute to the loss;
//   - the inputs produced are exactly the model's `inputNames`, int64 like HF's tokenizers output;
//   - a malformed example throws InputError naming its index and the field, before any batch of
//     it is built, rather than silently training on garbage.

import { InputError } from '../errors.js';
import { isFloat, type DataType } from '../ir/dtype.js';
import type { InputDecl } from '../ir/graph.js';

/** One tokenized training example, with the field names of HF datasets/tokenizers. */
export interface Example {
  input_ids: readonly number[];
  /** 1 for real tokens, 0 for pads; all ones when absent. */
  attention_mask?: readonly number[];
  /** SEQ_CLS class index (≥ 0). */
  label?: number;
  /** CAUSAL_LM per-token targets (−100 = ignored); the input ids when absent. */
  labels?: readonly number[];
}

/** A batch ready to feed: model inputs and labels, int64 row-major, dims [batch, length]. */
export interface Batch {
  inputs: Record<string, { data: BigInt64Array; dims: number[] }>;
  /**
   * Inputs that are not int64: float32 masks of models that declare them float (old GPT-2 exports),
   * and those fed empty ({@link EmptyInput}: caches with a past of 0, `use_cache_branch` false).
   */
  other?: Record<string, { data: Float32Array | Uint8Array; dims: number[] }>;
  /** CAUSAL_LM: [batch, length] with −100 at pads; SEQ_CLS: [batch]. */
  labels: { data: BigInt64Array; dims: number[] };
  /** Real (attention_mask 1) tokens in the batch, for tokens/s. */
  tokens: number;
  /** Examples in the batch (rows). */
  examples: number;
}

/** Options of {@link collate}. */
export interface CollateOptions {
  task: 'CAUSAL_LM' | 'SEQ_CLS';
  padTokenId: number;
  /** Allowed padded lengths; see {@link bucketsUpTo}. */
  buckets: readonly number[];
  /** Examples are truncated to this many tokens, keeping the beginning. */
  maxLength: number;
  /** The model's graph inputs; only these are produced. */
  inputNames: readonly string[];
  /** Where pads go; 'right' (default) as HF tokenizers for training. */
  paddingSide?: 'right' | 'left';
  /** Inputs fed empty (a decoder's key/value cache, `use_cache_branch`); see {@link emptyInputsOf}. */
  emptyInputs?: readonly EmptyInput[];
  /** Known inputs the model declares float (an old export's float attention_mask): made float32. */
  floatInputs?: readonly string[];
}

/**
 * A model input that training feeds without examples: a key/value cache with no past (a past
 * length of 0, as generation starts), or a merged decoder's `use_cache_branch` = false (the branch
 * without a past). `dims` has 'batch' where the batch size goes.
 */
export interface EmptyInput {
  readonly name: string;
  readonly dtype: DataType;
  readonly dims: readonly (number | 'batch')[];
}

/**
 * The declared inputs training feeds empty: optimum's `past_key_values.<i>.key/value` (and the
 * older `past_<i>`), whose symbolic dims other than the batch (the symbol of input_ids' first dim)
 * become 0, and `use_cache_branch`. Caches without a symbolic past dim are left out (collate then
 * names them as inputs it cannot build).
 */
export function emptyInputsOf(inputs: readonly InputDecl[]): EmptyInput[] {
  const batch = inputs.find((d) => d.name === 'input_ids')?.dims?.[0];
  const out: EmptyInput[] = [];
  for (const d of inputs) {
    if (d.name === 'use_cache_branch' && d.dtype === 'bool' && d.dims?.every((x) => typeof x === 'number')) {
      out.push({ name: d.name, dtype: d.dtype, dims: d.dims as number[] });
    } else if (/^past(_|\.|$)/.test(d.name) && isFloat(d.dtype) && d.dims) {
      const dims = d.dims.map((x) => (typeof x === 'number' ? x : x === batch ? 'batch' : 0));
      if (dims.includes(0)) out.push({ name: d.name, dtype: d.dtype, dims });
    }
  }
  return out;
}

/** Options of {@link batches}. */
export interface BatchOptions extends CollateOptions {
  batchSize: number;
  seed: number;
  epoch: number;
  /** Shuffle each epoch (default true). */
  shuffle?: boolean;
  /** Drop the last batch when it is smaller than batchSize (default false). */
  dropLast?: boolean;
}

/** Inputs {@link collate} knows how to build. */
const KNOWN_INPUTS = ['input_ids', 'attention_mask', 'token_type_ids', 'position_ids'] as const;

/** TensorFlow exports of google-research/bert name the inputs after its feature tensors. */
const INPUT_ALIASES: Readonly<Record<string, (typeof KNOWN_INPUTS)[number]>> = {
  'input_ids:0': 'input_ids',
  'input_mask:0': 'attention_mask',
  'segment_ids:0': 'token_type_ids',
};

/** The known input an input name stands for (itself, or the one a TensorFlow name aliases). */
/** The known input a model input name stands for (a TensorFlow alias, or itself). */
export const knownInput = (name: string): string => INPUT_ALIASES[name] ?? name;
/** CrossEntropy's ignore_index in the loss graph (see loss.ts). */
const IGNORE = -100;

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

// --- shuffling ---------------------------------------------------------------------------------

/** murmur3's 32-bit finaliser: spreads every input bit over the whole word. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** mulberry32: a small, fast, well-distributed 32-bit PRNG; returns floats in [0, 1). */
export function mulberry32(state: number): () => number {
  let a = state >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Both 32-bit halves of a safe integer (which may be negative or exceed 2³²). */
function words(n: number): [number, number] {
  return [n >>> 0, Math.floor(n / 4294967296) >>> 0];
}

/**
 * A copy of `items` in a pseudo-random order that depends only on `seed` and `epoch`
 * (Fisher–Yates driven by mulberry32). Seed and epoch are hashed together, so consecutive seeds or
 * epochs give unrelated orders, not shifted ones.
 *
 * @throws InputError naming `seed` or `epoch` when it is not a safe integer.
 */
export function shuffled<T>(items: readonly T[], seed: number, epoch: number): T[] {
  if (!isInt(seed)) throw new InputError(`seed must be an integer, got ${String(seed)}`);
  if (!isInt(epoch)) throw new InputError(`epoch must be an integer, got ${String(epoch)}`);
  let h = 0x9e3779b9;
  for (const w of [...words(seed), ...words(epoch)]) h = fmix32((h ^ w) + 0x7f4a7c15);
  const random = mulberry32(h);
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}

// --- buckets -----------------------------------------------------------------------------------

/** Padded lengths used when the caller does not choose: powers of two, one plan each. */
export const DEFAULT_BUCKETS: readonly number[] = Object.freeze([16, 32, 64, 128, 256, 512]);

function validateBuckets(buckets: readonly number[]): void {
  if (buckets.length === 0) throw new InputError('buckets must not be empty');
  for (const b of buckets) {
    if (!isInt(b) || b < 1) throw new InputError(`buckets must be positive integers, got ${String(b)}`);
  }
}

/**
 * The padded length for a sequence of `len` tokens: the smallest bucket ≥ `len`.
 *
 * @throws InputError naming the length when it exceeds every bucket (truncate first), or when
 *   `len` or a bucket is not a positive integer.
 */
export function bucketLength(len: number, buckets: readonly number[]): number {
  if (!isInt(len) || len < 1) throw new InputError(`sequence length must be a positive integer, got ${String(len)}`);
  validateBuckets(buckets);
  let best = Infinity;
  for (const b of buckets) if (b >= len && b < best) best = b;
  if (best === Infinity) {
    throw new InputError(`sequence length ${len} is longer than the largest bucket ${Math.max(...buckets)}; truncate it first`);
  }
  return best;
}

/**
 * The buckets for sequences truncated to `maxLength`: the {@link DEFAULT_BUCKETS} ≤ maxLength,
 * then maxLength itself if it is not one of them, so that the longest rows are not padded past
 * the truncation length (and never need a bucket the model was not planned for).
 *
 * @throws InputError naming maxLength when it is not a positive integer.
 */
export function bucketsUpTo(maxLength: number): number[] {
  if (!isInt(maxLength) || maxLength < 1) throw new InputError(`maxLength must be a positive integer, got ${String(maxLength)}`);
  const out = DEFAULT_BUCKETS.filter((b) => b <= maxLength);
  if (!out.includes(maxLength)) out.push(maxLength);
  return out;
}

// --- collation ---------------------------------------------------------------------------------

/** One example after validation and truncation. */
interface Row {
  ids: readonly number[];
  mask: readonly number[];
  /** CAUSAL_LM only: per-token targets before padding. */
  targets: readonly number[];
  /** SEQ_CLS only. */
  label: number;
}

function validateOptions(opts: CollateOptions): void {
  if (opts.task !== 'CAUSAL_LM' && opts.task !== 'SEQ_CLS') {
    throw new InputError(`task must be 'CAUSAL_LM' or 'SEQ_CLS', got '${String(opts.task)}'`);
  }
  if (!isInt(opts.padTokenId) || opts.padTokenId < 0) {
    throw new InputError(`padTokenId must be a non-negative integer, got ${String(opts.padTokenId)}`);
  }
  if (!isInt(opts.maxLength) || opts.maxLength < 1) {
    throw new InputError(`maxLength must be a positive integer, got ${String(opts.maxLength)}`);
  }
  validateBuckets(opts.buckets);
  const side = opts.paddingSide ?? 'right';
  if (side !== 'right' && side !== 'left') throw new InputError(`paddingSide must be 'right' or 'left', got '${String(side)}'`);
  if (!opts.inputNames.some((n) => knownInput(n) === 'input_ids')) throw new InputError("inputNames must include 'input_ids'");
  for (const name of opts.inputNames) {
    if (!(KNOWN_INPUTS as readonly string[]).includes(knownInput(name)) && !opts.emptyInputs?.some((e) => e.name === name)) {
      throw new InputError(`model input '${name}' cannot be built from examples (known: ${KNOWN_INPUTS.join(', ')})`);
    }
  }
}

/** Validates example `i` and truncates it to maxLength. */
function prepare(ex: Example, i: number, opts: CollateOptions): Row {
  const where = `example ${i}`;
  if (typeof ex !== 'object' || ex === null) throw new InputError(`${where} is ${ex === undefined ? 'missing (the dataset has a hole there)' : `not an object (${String(ex)})`}`);
  const ids = ex.input_ids as readonly number[] | undefined;
  if (!Array.isArray(ids) || ids.length === 0) throw new InputError(`${where}: input_ids must be a non-empty array`);
  const n = ids.length;
  for (let t = 0; t < n; t++) {
    if (!isInt(ids[t]) || ids[t]! < 0) {
      throw new InputError(`${where}: input_ids[${t}] must be a non-negative integer, got ${String(ids[t])}`);
    }
  }
  let mask: readonly number[];
  if (ex.attention_mask === undefined) {
    mask = new Array<number>(n).fill(1);
  } else {
    mask = ex.attention_mask;
    if (!Array.isArray(mask) || mask.length !== n) {
      throw new InputError(`${where}: attention_mask has length ${Array.isArray(mask) ? mask.length : 'none'}, input_ids ${n}`);
    }
    for (let t = 0; t < n; t++) {
      if (mask[t] !== 0 && mask[t] !== 1) throw new InputError(`${where}: attention_mask[${t}] must be 0 or 1, got ${String(mask[t])}`);
    }
  }
  let targets: readonly number[] = [];
  let label = 0;
  if (opts.task === 'CAUSAL_LM') {
    if (ex.labels !== undefined) {
      if (!Array.isArray(ex.labels) || ex.labels.length !== n) {
        throw new InputError(`${where}: labels has length ${Array.isArray(ex.labels) ? ex.labels.length : 'none'}, input_ids ${n}`);
      }
      for (let t = 0; t < n; t++) {
        const v = ex.labels[t];
        if (!isInt(v) || (v < 0 && v !== IGNORE)) {
          throw new InputError(`${where}: labels[${t}] must be a token id ≥ 0 or ${IGNORE}, got ${String(v)}`);
        }
      }
      targets = ex.labels;
    } else {
      // Tokens the example itself marks as padding (mask 0) are ignored like the pads we add.
      targets = ids.map((id, t) => (mask[t] === 1 ? id : IGNORE));
    }
  } else {
    if (ex.label === undefined) throw new InputError(`${where}: label is missing (SEQ_CLS needs a class index)`);
    if (!isInt(ex.label) || ex.label < 0) throw new InputError(`${where}: label must be an integer ≥ 0, got ${String(ex.label)}`);
    label = ex.label;
  }
  // Keep the beginning, as HF tokenizers' default truncation_side 'right'.
  const m = Math.min(n, opts.maxLength);
  return { ids: ids.slice(0, m), mask: mask.slice(0, m), targets: targets.slice(0, m), label };
}

/**
 * Validates the options and every example (as {@link collate} would, without building a batch) and
 * returns them truncated to maxLength, for checks that need the values (ids against a vocabulary).
 *
 * @throws InputError as {@link collate}, and for a dataset that is not an array or has holes.
 */
export function validateExamples(examples: readonly Example[], opts: CollateOptions): { ids: readonly number[]; targets: readonly number[]; label: number }[] {
  validateOptions(opts);
  if (!Array.isArray(examples)) throw new InputError('the dataset must be an array of examples');
  const rows: Row[] = [];
  // An index loop, not forEach/map: those skip the holes of a sparse array.
  for (let i = 0; i < examples.length; i++) rows.push(prepare(examples[i]!, i, opts));
  return rows;
}

/**
 * Pads `examples` into one batch: each is truncated to `maxLength`, then every row is padded to
 * `bucketLength(longest row)` on `paddingSide`. Produces only the inputs in `inputNames`:
 * - `input_ids` (pads = padTokenId), `attention_mask` (1 real, 0 pad), `token_type_ids` (all 0);
 * - `position_ids`: right padding → 0, 1, 2, … along the row, as HF models default to (the real
 *   tokens get 0..len−1; pads, which are masked, keep counting); left padding → as HF's
 *   `cumsum(attention_mask) − 1` with masked positions set to 1, so the first real token is 0;
 * - TensorFlow's `input_ids:0`, `input_mask:0`, `segment_ids:0` as the three above;
 * - `emptyInputs`: a decoder's caches with a past of 0 and `use_cache_branch` false; `floatInputs` as float32.
 *
 * Labels: CAUSAL_LM → `labels` (or the input ids, with the example's own mask-0 tokens ignored),
 * −100 at pads, dims [batch, length]; SEQ_CLS → each example's `label`, dims [batch].
 *
 * @throws InputError naming the example index and field for a malformed example (empty or
 *   non-integer input_ids, attention_mask or labels of the wrong length or values, missing or
 *   negative label), and naming the option for invalid options or an input it cannot build.
 */
export function collate(examples: readonly Example[], opts: CollateOptions): Batch {
  validateOptions(opts);
  if (examples.length === 0) throw new InputError('cannot collate an empty list of examples');
  const rows = examples.map((ex, i) => prepare(ex, i, opts));
  const longest = rows.reduce((a, r) => Math.max(a, r.ids.length), 0);
  const len = bucketLength(longest, opts.buckets);
  const left = (opts.paddingSide ?? 'right') === 'left';
  const b = rows.length;
  const ids = new BigInt64Array(b * len).fill(BigInt(opts.padTokenId));
  const mask = new BigInt64Array(b * len); // pads: 0
  const pos = new BigInt64Array(b * len);
  const causal = opts.task === 'CAUSAL_LM';
  const labels = causal ? new BigInt64Array(b * len).fill(BigInt(IGNORE)) : new BigInt64Array(b);
  let tokens = 0;
  rows.forEach((r, i) => {
    const row = i * len;
    const start = left ? len - r.ids.length : 0;
    for (let t = 0; t < r.ids.length; t++) {
      const at = row + start + t;
      ids[at] = BigInt(r.ids[t]!);
      mask[at] = BigInt(r.mask[t]!);
      tokens += r.mask[t]!;
      if (causal) labels[at] = BigInt(r.targets[t]!);
    }
    if (left) {
      // HF (generation's prepare_inputs): position_ids = attention_mask.cumsum(-1) - 1, then
      // masked_fill_(attention_mask == 0, 1): positions count real tokens only.
      let seen = 0;
      for (let t = 0; t < len; t++) {
        if (mask[row + t] === 1n) pos[row + t] = BigInt(seen++);
        else pos[row + t] = 1n;
      }
    } else {
      for (let t = 0; t < len; t++) pos[row + t] = BigInt(t);
    }
    if (!causal) labels[i] = BigInt(r.label);
  });
  const all: Record<string, BigInt64Array> = {
    input_ids: ids,
    attention_mask: mask,
    token_type_ids: new BigInt64Array(b * len),
    position_ids: pos,
  };
  const inputs: Batch['inputs'] = {};
  const other: NonNullable<Batch['other']> = {};
  for (const name of opts.inputNames) {
    const e = opts.emptyInputs?.find((x) => x.name === name);
    if (e) {
      const dims = e.dims.map((d) => (d === 'batch' ? b : d));
      const n = dims.reduce((p, d) => p * d, 1);
      other[name] = { data: e.dtype === 'bool' ? new Uint8Array(n) : new Float32Array(n), dims };
    } else if (opts.floatInputs?.includes(name)) {
      other[name] = { data: Float32Array.from(all[knownInput(name)]!, Number), dims: [b, len] };
    } else {
      inputs[name] = { data: all[knownInput(name)]!, dims: [b, len] };
    }
  }
  const batch: Batch = { inputs, labels: { data: labels, dims: causal ? [b, len] : [b] }, tokens, examples: b };
  return Object.keys(other).length > 0 ? { ...batch, other } : batch;
}

/**
 * The batches of one epoch: `examples` shuffled by (seed, epoch) unless `shuffle` is false, cut
 * into runs of `batchSize` (the last, shorter one kept unless `dropLast`), each collated.
 * Every example is validated before the first batch is yielded, so a bad example late in the
 * dataset fails the epoch at its start, not after minutes of training.
 *
 * @throws InputError naming batchSize, or as {@link collate} (example indices are positions in
 *   `examples`, not in the shuffled order).
 */
export function* batches(examples: readonly Example[], opts: BatchOptions): Generator<Batch> {
  if (!isInt(opts.batchSize) || opts.batchSize < 1) {
    throw new InputError(`batchSize must be a positive integer, got ${String(opts.batchSize)}`);
  }
  validateExamples(examples, opts);
  const order = opts.shuffle === false ? examples.slice() : shuffled(examples, opts.seed, opts.epoch);
  const full = Math.floor(order.length / opts.batchSize) * opts.batchSize;
  const end = opts.dropLast ? full : order.length;
  for (let s = 0; s < end; s += opts.batchSize) {
    yield collate(order.slice(s, s + opts.batchSize), opts);
  }
}

/**
 * Labels of a batch that the loss counts: CAUSAL_LM — positions after the first whose label is
 * not −100 (the loss predicts token t+1 from position t); SEQ_CLS — labels that are not −100.
 */
export function countedLabels(batch: Batch, task: CollateOptions['task']): number {
  const labels = batch.labels.data;
  let n = 0;
  if (task === 'CAUSAL_LM') {
    const len = batch.labels.dims[1]!;
    for (let i = 0; i < labels.length; i++) if (i % len !== 0 && labels[i] !== BigInt(IGNORE)) n++;
  } else {
    for (const v of labels) if (v !== BigInt(IGNORE)) n++;
  }
  return n;
}

/** The batch cut into pieces of at most `rows` rows (the last may be shorter), in order. */
export function splitRows(batch: Batch, rows: number): Batch[] {
  const total = batch.examples;
  if (rows >= total) return [batch];
  const pieces: Batch[] = [];
  for (let r0 = 0; r0 < total; r0 += rows) {
    const r1 = Math.min(total, r0 + rows);
    const cut = <T extends BigInt64Array | Float32Array | Uint8Array>(t: { data: T; dims: number[] }) => {
      const per = t.data.length / total;
      return { data: t.data.slice(r0 * per, r1 * per) as T, dims: [r1 - r0, ...t.dims.slice(1)] };
    };
    const inputs: Batch['inputs'] = {};
    for (const [name, t] of Object.entries(batch.inputs)) inputs[name] = cut(t);
    const piece: Batch = { inputs, labels: cut(batch.labels), tokens: 0, examples: r1 - r0 };
    if (batch.other) {
      // Float masks and empty caches lead with the batch; a flag such as use_cache_branch ([1]) has none.
      const other: NonNullable<Batch['other']> = {};
      for (const [name, t] of Object.entries(batch.other)) other[name] = t.dims[0] === total ? cut(t) : t;
      piece.other = other;
    }
    const mask = inputs.attention_mask?.data ?? piece.other?.attention_mask?.data;
    if (mask) for (const v of mask) piece.tokens += Number(v);
    else piece.tokens = inputs.input_ids?.data.length ?? 0;
    pieces.push(piece);
  }
  return pieces;
}
