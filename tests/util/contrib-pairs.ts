// The contrib-op fixtures of tests/fixtures/real/ paired with the plain export of the same model
// (tests/fixtures/<model>/, same weights): which files, the IA3 task, and feeds that make the two
// compute the same function — the optimised decoders take a past, which here is one key masked
// out (attention_mask 0), so they see the same tokens as the plain model.
// Pure data and functions: shared by the Node tests and the browser tests.
import type { TensorData } from '../../src/ir/tensor.js';

export type Ids = readonly (readonly number[])[];

export interface Pair {
  readonly name: string;
  /** Folder of the plain export, relative to tests/fixtures/ (its onnx/model.onnx). */
  readonly plain: string;
  /** Folder and file of the optimised export, relative to tests/fixtures/. */
  readonly optimized: string;
  readonly file: string;
  readonly task: 'SEQ_CLS' | 'CAUSAL_LM';
  /** Token ids within the vocabulary, and how many positions the models allow. */
  readonly vocab: number;
  readonly positions: number;
  /** Whether rows may be right-padded (the genai graphs' continued prompt needs full rows). */
  readonly padding: boolean;
  /**
   * How far the two functions may differ in float64: float32 rounding of precomputed tables (the
   * genai rotary caches against cos/sin computed in the graph), or a different function
   * (onnxruntime's --enable_gelu_approximation turns erf GELU into tanh GELU).
   */
  readonly tolerance: { readonly rtol: number; readonly atol: number };
  plainFeeds(ids: Ids, lengths: readonly number[]): Record<string, TensorData>;
  optimizedFeeds(ids: Ids, lengths: readonly number[]): Record<string, TensorData>;
}

const i64 = (rows: readonly (readonly number[])[]): TensorData => ({ data: BigInt64Array.from(rows.flat(), (v) => BigInt(v)), dims: [rows.length, rows[0]!.length] });
const mask = (ids: Ids, lengths: readonly number[], masked = 0): number[][] => ids.map((r, b) => [...Array<number>(masked).fill(0), ...r.map((_, j) => (j < lengths[b]! ? 1 : 0))]);
const positions = (ids: Ids): number[][] => ids.map((r) => r.map((_, j) => j));
const zeros = (dims: number[]): TensorData => ({ data: new Float32Array(dims.reduce((a, b) => a * b, 1)), dims });

function bert(file: string, tolerance = { rtol: 1e-6, atol: 1e-7 }): Pair {
  return {
    tolerance,
    name: `bert-ort-optimized/${file}`,
    plain: 'bert',
    optimized: 'real/bert-ort-optimized',
    file,
    task: 'SEQ_CLS',
    vocab: 100,
    positions: 32,
    padding: true,
    plainFeeds: (ids, lengths) => ({ input_ids: i64(ids), attention_mask: i64(mask(ids, lengths)), token_type_ids: i64(ids.map((r) => r.map((_, j) => (j >= r.length / 2 ? 1 : 0)))) }),
    optimizedFeeds(ids, lengths) {
      return this.plainFeeds(ids, lengths);
    },
  };
}

function llama(file: string, positionIds: boolean): Pair {
  return {
    tolerance: { rtol: 1e-5, atol: 1e-6 },
    name: `llama-genai/${file}`,
    plain: 'llama',
    optimized: 'real/llama-genai',
    file,
    task: 'CAUSAL_LM',
    vocab: 128,
    positions: 31,
    padding: false,
    plainFeeds: (ids, lengths) => ({ input_ids: i64(ids), attention_mask: i64(mask(ids, lengths)), position_ids: i64(positions(ids)) }),
    optimizedFeeds(ids, lengths) {
      const b = ids.length;
      const feeds: Record<string, TensorData> = { input_ids: i64(ids), attention_mask: i64(mask(ids, lengths, 1)) };
      if (positionIds) feeds.position_ids = i64(positions(ids));
      for (let l = 0; l < 2; l++) for (const kv of ['key', 'value']) feeds[`past_key_values.${l}.${kv}`] = zeros([b, 2, 1, 16]);
      return feeds;
    },
  };
}

export const PAIRS: readonly Pair[] = [
  bert('onnx/model_optimized.onnx'),
  // FastGelu (tanh) in place of the model's erf GELU: |Δ| of a few 1e-4 on logits of order 1.
  bert('onnx/model_optimized_mask_index.onnx', { rtol: 1e-3, atol: 1e-3 }),
  bert('onnx/model_optimized_mha.onnx'),
  {
    name: 'gpt2-ort-optimized/onnx/model_optimized.onnx',
    tolerance: { rtol: 1e-6, atol: 1e-7 },
    plain: 'gpt2',
    optimized: 'real/gpt2-ort-optimized',
    file: 'onnx/model_optimized.onnx',
    task: 'CAUSAL_LM',
    vocab: 120,
    positions: 31,
    padding: true,
    plainFeeds: (ids, lengths) => ({ input_ids: i64(ids), attention_mask: i64(mask(ids, lengths)) }),
    optimizedFeeds(ids, lengths) {
      const b = ids.length;
      return {
        input_ids: i64(ids),
        position_ids: i64(positions(ids)),
        attention_mask: { data: Float32Array.from(mask(ids, lengths, 1).flat()), dims: [b, ids[0]!.length + 1] },
        past_0: zeros([2, b, 4, 1, 8]),
        past_1: zeros([2, b, 4, 1, 8]),
      };
    },
  },
  llama('onnx/model.onnx', false),
  llama('onnx/model_rotary.onnx', true),
];

/** Every contrib-op fixture file of tests/fixtures/real/ (fixture, file); the q4f16 one holds MatMulNBits and GatherBlockQuantized in fp16. */
export const CONTRIB_FILES: readonly (readonly [string, string])[] = [
  ['bert-ort-optimized', 'onnx/model_optimized.onnx'],
  ['bert-ort-optimized', 'onnx/model_optimized_mask_index.onnx'],
  ['bert-ort-optimized', 'onnx/model_optimized_mha.onnx'],
  ['gpt2-ort-optimized', 'onnx/model_optimized.onnx'],
  ['llama-genai', 'onnx/model.onnx'],
  ['llama-genai', 'onnx/model_rotary.onnx'],
  ['qwen2-genai', 'onnx/model.onnx'],
  ['qwen2-genai', 'onnx/model_q4f16.onnx'],
];

/** Deterministic token rows [batch, seq] in [first, vocab) (first: the lowest id, past special tokens). */
export function tokenRows(batch: number, seq: number, vocab: number, seed: number, first = 1): number[][] {
  let s = seed >>> 0;
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return first + (s % (vocab - first));
  };
  return Array.from({ length: batch }, () => Array.from({ length: seq }, next));
}

/** Labels of token rows for a task: the ids themselves (CAUSAL_LM; the loss shifts them) or alternating classes (SEQ_CLS). */
export function labelsOf(pair: { readonly task: 'CAUSAL_LM' | 'SEQ_CLS' }, ids: number[][]): TensorData {
  return pair.task === 'SEQ_CLS'
    ? { data: BigInt64Array.from(ids.map((_, i) => BigInt(i % 2))), dims: [ids.length] }
    : { data: BigInt64Array.from(ids.flat(), (v) => BigInt(v)), dims: [ids.length, ids[0]!.length] };
}
