// The com.microsoft contrib ops on small random inputs, one case per attribute form, as one-node
// graphs (shared by the CPU expansion and gradient tests and the GPU tests): every input either a
// runtime feed or an initializer (weights, caches, totals, as real graphs hold them).
import type { DataType } from '../../src/ir/dtype.js';
import type { Attrs, Graph, Initializer } from '../../src/ir/graph.js';
import { tensor, type RefTensor } from '../../src/ir/tensor.js';
import type { ExpandedOpType } from '../../src/ops/registry.js';
import { randomInts, randomTensor } from './tensors.js';

export interface CaseInput {
  readonly t: RefTensor;
  /** An initializer of the graph (weights, caches, constants) rather than a runtime feed. */
  readonly init?: boolean;
}

export interface ContribCase {
  readonly name: string;
  readonly op: ExpandedOpType;
  readonly attrs?: Attrs;
  /** Inputs in order; undefined where an optional input is omitted. */
  readonly inputs: readonly (CaseInput | undefined)[];
  /** Output slots the node declares (others are ''); default: the first. */
  readonly outputs?: readonly number[];
  /**
   * Outputs a loss reads for gradients (default: the float outputs among `outputs`). Not the norm
   * statistics (their gradient is not implemented) nor presents built by GatherElements.
   */
  readonly lossOutputs?: readonly number[];
}

let seed = 100;
const f = (dims: number[], lo = -1, hi = 1): CaseInput => ({ t: randomTensor(dims, seed++, lo, hi) });
const w = (dims: number[], lo = -0.5, hi = 0.5): CaseInput => ({ t: randomTensor(dims, seed++, lo, hi), init: true });
const ints = (dtype: DataType, dims: number[], values: number[], init = false): CaseInput => ({ t: tensor(dtype, dims, values), ...(init ? { init } : {}) });
const ids = (dims: number[], hi: number): CaseInput => ({ t: randomInts(dims, seed++, 0, hi, 'int32') });

/** Rotary caches [positions, half] of angles p·θ_k, as the genai builder writes them. */
function caches(positions: number, half: number): [CaseInput, CaseInput] {
  const cos = tensor('float32', [positions, half]);
  const sin = tensor('float32', [positions, half]);
  for (let p = 0; p < positions; p++) {
    for (let k = 0; k < half; k++) {
      const a = p / 10000 ** (k / half);
      cos.data[p * half + k] = Math.fround(Math.cos(a));
      sin.data[p * half + k] = Math.fround(Math.sin(a));
    }
  }
  return [{ t: cos, init: true }, { t: sin, init: true }];
}

/** The cases, freshly drawn (deterministic seeds). */
export function contribCases(): ContribCase[] {
  seed = 100;
  const [cos8, sin8] = caches(12, 4);
  const [cos4, sin4] = caches(12, 2);
  const [cosG, sinG] = caches(16, 4);
  const [cosGp, sinGp] = caches(16, 2);
  return [
    { name: 'Gelu', op: 'Gelu', inputs: [f([2, 3, 8], -3, 3)] },
    { name: 'BiasGelu', op: 'BiasGelu', inputs: [f([2, 3, 8], -3, 3), w([8])] },
    { name: 'FastGelu with bias', op: 'FastGelu', inputs: [f([2, 3, 8], -3, 3), w([8])] },
    { name: 'FastGelu without bias', op: 'FastGelu', inputs: [f([3, 8], -3, 3)] },
    { name: 'QuickGelu', op: 'QuickGelu', inputs: [f([2, 3, 8], -3, 3)] },
    { name: 'QuickGelu alpha 1.3', op: 'QuickGelu', attrs: { alpha: 1.3 }, inputs: [f([2, 5], -3, 3)] },
    { name: 'BiasAdd', op: 'BiasAdd', inputs: [f([2, 3, 8]), w([8]), f([2, 3, 8])] },

    { name: 'SkipLayerNormalization, every output', op: 'SkipLayerNormalization', attrs: { epsilon: 1e-5 }, inputs: [f([2, 3, 8]), f([2, 3, 8]), w([8], 0.5, 1.5), w([8]), w([8])], outputs: [0, 1, 2, 3], lossOutputs: [0, 3] },
    { name: 'SkipLayerNormalization, no beta or bias, skip [1, S, H]', op: 'SkipLayerNormalization', inputs: [f([2, 3, 8]), f([1, 3, 8]), w([8], 0.5, 1.5)], outputs: [0, 3] },
    { name: 'SkipLayerNormalization, skip [S, H]', op: 'SkipLayerNormalization', inputs: [f([2, 3, 8]), f([3, 8]), w([8], 0.5, 1.5), w([8])] },
    { name: 'SkipSimplifiedLayerNormalization, inv_std and sum', op: 'SkipSimplifiedLayerNormalization', attrs: { epsilon: 1e-6 }, inputs: [f([2, 3, 8]), f([2, 3, 8]), w([8], 0.5, 1.5), w([8])], outputs: [0, 2, 3], lossOutputs: [0, 3] },
    { name: 'SkipSimplifiedLayerNormalization, output only', op: 'SkipSimplifiedLayerNormalization', inputs: [f([2, 3, 8]), f([2, 3, 8]), w([8], 0.5, 1.5)] },

    { name: 'EmbedLayerNormalization, segments and mask', op: 'EmbedLayerNormalization', attrs: { epsilon: 1e-12 }, inputs: [ids([2, 5], 10), ids([2, 5], 2), w([10, 8]), w([6, 8]), w([2, 8]), w([8], 0.5, 1.5), w([8]), ints('int32', [2, 5], [1, 1, 1, 0, 0, 1, 1, 1, 1, 1])], outputs: [0, 1, 2], lossOutputs: [0] },
    { name: 'EmbedLayerNormalization, position_ids [B, S], no segments or mask', op: 'EmbedLayerNormalization', inputs: [ids([2, 5], 10), undefined, w([10, 8]), w([9, 8]), undefined, w([8], 0.5, 1.5), w([8]), undefined, ints('int64', [2, 5], [0, 1, 2, 3, 4, 3, 4, 5, 6, 7])], outputs: [0, 1, 2], lossOutputs: [0, 2] },
    { name: 'EmbedLayerNormalization, position_ids [1, S]', op: 'EmbedLayerNormalization', inputs: [ids([2, 4], 10), undefined, w([10, 8]), w([9, 8]), undefined, w([8], 0.5, 1.5), w([8]), undefined, ints('int64', [1, 4], [2, 3, 4, 5])] },

    { name: 'RotaryEmbedding [B, S, N·H], position_ids [B, S]', op: 'RotaryEmbedding', inputs: [f([2, 4, 16]), ints('int64', [2, 4], [0, 1, 2, 3, 5, 6, 7, 8]), cos8, sin8] },
    { name: 'RotaryEmbedding interleaved', op: 'RotaryEmbedding', attrs: { interleaved: 1 }, inputs: [f([2, 4, 16]), ints('int64', [2, 4], [0, 1, 2, 3, 5, 6, 7, 8]), cos8, sin8] },
    { name: 'RotaryEmbedding, a start position', op: 'RotaryEmbedding', inputs: [f([2, 4, 16]), ints('int64', [1], [3]), cos8, sin8] },
    { name: 'RotaryEmbedding [B, N, S, H]', op: 'RotaryEmbedding', inputs: [f([2, 2, 4, 8]), ints('int64', [2, 4], [0, 1, 2, 3, 4, 5, 6, 7]), cos8, sin8] },
    { name: 'RotaryEmbedding [B, N, S, H], a start position', op: 'RotaryEmbedding', attrs: { interleaved: 1 }, inputs: [f([2, 2, 4, 8]), ints('int64', [], [2]), cos8, sin8] },
    { name: 'RotaryEmbedding, partial rotary dim', op: 'RotaryEmbedding', attrs: { rotary_embedding_dim: 4, num_heads: 2 }, inputs: [f([2, 4, 16]), ints('int64', [2, 4], [0, 1, 2, 3, 1, 2, 3, 4]), cos4, sin4] },

    { name: 'Attention, no mask', op: 'Attention', attrs: { num_heads: 2 }, inputs: [f([2, 4, 8]), w([8, 24]), w([24])] },
    { name: 'Attention, raw 2-D mask, filter finfo.min', op: 'Attention', attrs: { num_heads: 2, mask_filter_value: -3.4028234663852886e38 }, inputs: [f([2, 4, 8]), w([8, 24]), w([24]), ints('int32', [2, 4], [1, 1, 1, 0, 1, 1, 1, 1])] },
    { name: 'Attention, 1-D end positions', op: 'Attention', attrs: { num_heads: 2 }, inputs: [f([2, 4, 8]), w([8, 24]), w([24]), ints('int32', [2], [3, 4])] },
    { name: 'Attention, 1-D end and start positions', op: 'Attention', attrs: { num_heads: 2 }, inputs: [f([2, 4, 8]), w([8, 24]), w([24]), ints('int32', [4], [4, 3, 1, 0])] },
    { name: 'Attention, 3-D mask', op: 'Attention', attrs: { num_heads: 2 }, inputs: [f([2, 3, 8]), w([8, 24]), w([24]), ints('int32', [2, 3, 3], [1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0])] },
    { name: 'Attention, 4-D mask', op: 'Attention', attrs: { num_heads: 2 }, inputs: [f([1, 3, 8]), w([8, 24]), w([24]), ints('int32', [1, 1, 4, 4], [1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1])] },
    { name: 'Attention, unidirectional with past and present', op: 'Attention', attrs: { num_heads: 2, unidirectional: 1 }, inputs: [f([2, 2, 8]), w([8, 24]), w([24]), ints('int32', [2, 5], [1, 1, 1, 1, 1, 0, 1, 1, 1, 1]), f([2, 2, 2, 3, 4])], outputs: [0, 1], lossOutputs: [0] },
    { name: 'Attention, attention_bias, qkv_hidden_sizes, scale', op: 'Attention', attrs: { num_heads: 2, qkv_hidden_sizes: [8, 8, 12], scale: 0.3 }, inputs: [f([2, 3, 8]), w([8, 28]), w([28]), undefined, undefined, f([1, 2, 3, 3])] },

    { name: 'MultiHeadAttention, separate Q/K/V with packed bias and raw mask', op: 'MultiHeadAttention', attrs: { num_heads: 2 }, inputs: [f([2, 4, 8]), f([2, 5, 8]), f([2, 5, 8]), w([24]), ints('int32', [2, 5], [1, 1, 1, 1, 0, 1, 1, 1, 1, 1])] },
    { name: 'MultiHeadAttention, key lengths, attention_bias', op: 'MultiHeadAttention', attrs: { num_heads: 2, mask_filter_value: -1000 }, inputs: [f([2, 3, 8]), f([2, 4, 8]), f([2, 4, 12]), undefined, ints('int32', [2], [2, 4]), f([2, 1, 3, 4])] },
    { name: 'MultiHeadAttention, packed QKV', op: 'MultiHeadAttention', attrs: { num_heads: 2 }, inputs: [f([2, 4, 2, 3, 4])] },
    { name: 'MultiHeadAttention, packed KV', op: 'MultiHeadAttention', attrs: { num_heads: 2, scale: 0.4 }, inputs: [f([2, 3, 8]), f([2, 5, 2, 2, 4])] },
    { name: 'MultiHeadAttention, K/V in heads', op: 'MultiHeadAttention', attrs: { num_heads: 2 }, inputs: [f([2, 3, 8]), f([2, 2, 5, 4]), f([2, 2, 5, 4])] },
    { name: 'MultiHeadAttention, unidirectional with past and presents', op: 'MultiHeadAttention', attrs: { num_heads: 2, unidirectional: 1 }, inputs: [f([2, 3, 8]), f([2, 3, 8]), f([2, 3, 8]), w([24]), undefined, undefined, f([2, 2, 2, 4]), f([2, 2, 2, 4])], outputs: [0, 1, 2], lossOutputs: [0] },

    { name: 'GroupQueryAttention, packed, rotary, first prompt', op: 'GroupQueryAttention', attrs: { num_heads: 4, kv_num_heads: 2, do_rotary: 1, scale: 0.3 }, inputs: [f([2, 4, 64]), undefined, undefined, undefined, undefined, ints('int32', [2], [3, 1]), ints('int32', [], [4], true), cosG, sinG], outputs: [0, 1, 2], lossOutputs: [0] },
    { name: 'GroupQueryAttention, separate, token generation with a padded past', op: 'GroupQueryAttention', attrs: { num_heads: 4, kv_num_heads: 2, do_rotary: 1, rotary_interleaved: 1 }, inputs: [f([2, 1, 32]), f([2, 1, 16]), f([2, 1, 16]), f([2, 2, 5, 8]), f([2, 2, 5, 8]), ints('int32', [2], [5, 3]), ints('int32', [1], [6], true), cosG, sinG], outputs: [0, 1, 2], lossOutputs: [0] },
    { name: 'GroupQueryAttention, continued prompt, partial rotary, window, softcap', op: 'GroupQueryAttention', attrs: { num_heads: 2, kv_num_heads: 1, do_rotary: 1, local_window_size: 2, softcap: 2 }, inputs: [f([1, 3, 32]), undefined, undefined, f([1, 1, 3, 8]), f([1, 1, 3, 8]), ints('int32', [1], [5]), ints('int32', [1], [6], true), cosGp, sinGp], outputs: [0, 1, 2], lossOutputs: [0] },
    { name: 'GroupQueryAttention, no rotary, equal heads', op: 'GroupQueryAttention', attrs: { num_heads: 2, kv_num_heads: 2 }, inputs: [f([2, 3, 16]), f([2, 3, 16]), f([2, 3, 16]), undefined, undefined, ints('int32', [2], [2, 1]), ints('int32', [], [3], true)] },
    // MatMulNBits: every block size, K not a multiple of the block (a padded last block), an odd
    // block count (a lone zero-point nibble), with and without zero points, with a bias.
    ...([
      [16, 40, 12, false, false],
      [16, 48, 8, true, true],
      [32, 64, 20, true, false],
      [64, 96, 16, false, true],
      [128, 64, 12, true, false],
      [256, 300, 8, true, true],
    ] as const).map(([block, K, N, zp, bias]): ContribCase => {
      const blocks = Math.ceil(K / block);
      return {
        name: `MatMulNBits block ${block}, K ${K}, N ${N}${zp ? ', zero points' : ''}${bias ? ', bias' : ''}`,
        op: 'MatMulNBits',
        attrs: { K, N, bits: 4, block_size: block, accuracy_level: 4 },
        inputs: [
          f([2, 3, K]),
          { t: randomInts([N, blocks, block / 2], seed++, 0, 256, 'uint8'), init: true },
          w([N * blocks], 0.01, 0.1),
          zp ? { t: randomInts([N * Math.ceil(blocks / 2)], seed++, 0, 256, 'uint8'), init: true } : undefined,
          undefined,
          bias ? w([N]) : undefined,
        ],
      };
    }),
  ];
}

/** The case as a one-node graph (opsets ai.onnx 17, com.microsoft 1); `symbolic` declares batch and sequence dims as symbols. */
export function caseGraph(c: ContribCase, symbolic = false): { graph: Graph; feeds: Record<string, RefTensor>; outputs: string[] } {
  const initializers = new Map<string, Initializer>();
  const inputs: Graph['inputs'][number][] = [];
  const feeds: Record<string, RefTensor> = {};
  const names = c.inputs.map((inp, i) => {
    if (!inp) return '';
    const name = `in${i}`;
    if (inp.init) {
      const data =
        inp.t.dtype === 'int64' ? BigInt64Array.from(inp.t.data, (v) => BigInt(v)) : inp.t.dtype === 'int32' ? Int32Array.from(inp.t.data) : inp.t.dtype === 'uint8' ? Uint8Array.from(inp.t.data) : Float32Array.from(inp.t.data);
      initializers.set(name, { name, dtype: inp.t.dtype, dims: inp.t.dims, data });
    } else {
      const dims = inp.t.dims.map((d, k) => (symbolic && k < 2 && inp.t.dims.length >= 2 ? `${name}_d${k}` : d));
      inputs.push({ name, dtype: inp.t.dtype, dims });
      feeds[name] = inp.t;
    }
    return name;
  });
  const declared = c.outputs ?? [0];
  const last = Math.max(...declared);
  const outs = Array.from({ length: last + 1 }, (_, k) => (declared.includes(k) ? `out${k}` : ''));
  const graph: Graph = {
    name: c.name,
    opsets: new Map([['', 17], ['com.microsoft', 1]]),
    irVersion: 8,
    producer: 'contrib-cases',
    inputs,
    outputs: outs.filter((o) => o).map((name) => ({ name })),
    initializers,
    nodes: [{ name: `${c.op}_0`, opType: c.op, domain: 'com.microsoft', inputs: names, outputs: outs, attrs: c.attrs ?? {} }],
  };
  return { graph, feeds, outputs: outs.filter((o) => o) };
}
