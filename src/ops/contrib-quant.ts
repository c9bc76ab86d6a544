// onnxruntime's 4-bit weight-only quantised product (com.microsoft MatMulNBits), expanded at load:
//
//   MatMulNBits(A, B, scales, zero_points?, g_idx?, bias?) = A · Wᵀ (+ bias), where
//   W[n, k] = (code(n, k) − zp(n, k / block)) · scale(n, k / block), zp = 8 without zero points
//                                                                    → MatMul(A, W4) (→ Add bias)
// B is [N, blocks, block/2] uint8 (element 2j of a block in the low nibble), scales [N·blocks]
// (float32 or float16), zero points [N·⌈blocks/2⌉] uint8 in 4-bit pairs. The expansion repacks B,
// scales and zero points into ONE frozen weight W4 [K, N] (in, out: the layout of an fp32 export's
// MatMul weight, so module discovery, IA3 placement and the MatMul gradient rule see a plain linear
// layer) stored `q4b<block>[z]` (ir/dtype.ts): the matmul kernels dequantise it as they load B,
// forward and in the transposed dX product, and no f32 copy of it exists on the GPU. The CPU
// executor dequantises it (initializerToRef), which is the oracle on the same IR.
//
// Numerics: the product is dequantise-then-f32 whatever `accuracy_level` says. onnxruntime's CPU
// kernel may quantise A to int8 blocks for accuracy_level 4; the fixtures' recorded
// onnxruntime-web outputs agree with the dequantised float64 product within their tolerance, and so
// does this one (tests/gpu/precision.test.ts). Refused: bits other than 4, g_idx, zero points that
// are not uint8, weights that are not initializers.

import { ShapeError } from '../errors.js';
import { packQ4, q4Layout } from '../ir/dtype.js';
import { initializerData, type Attrs } from '../ir/graph.js';
import { tensor, type RefTensor, type TensorType } from '../ir/tensor.js';
import type { ExpandedOpDef, Expander, Inputs, OpContext } from './types.js';
import { attrInt, need } from './util.js';

const MS = 'com.microsoft';

interface NBits {
  readonly K: number;
  readonly N: number;
  readonly block: number;
  readonly blocks: number;
}

function nbits(attrs: Attrs, fail: (reason: string) => never): NBits {
  const K = attrInt(attrs, 'K', 0);
  const N = attrInt(attrs, 'N', 0);
  const bits = attrInt(attrs, 'bits', 4);
  const block = attrInt(attrs, 'block_size', 0);
  if (bits !== 4) fail(`bits=${bits}: only 4-bit weights are supported`);
  if (K <= 0 || N <= 0) fail(`attributes K and N must be positive, got K=${K}, N=${N}`);
  if (block < 16 || (block & (block - 1)) !== 0) fail(`block_size must be a power of two ≥ 16, got ${block}`);
  return { K, N, block, blocks: Math.ceil(K / block) };
}

function shape(inputs: Inputs<TensorType>, attrs: Attrs, ctx: OpContext): TensorType[] {
  const a = need(inputs, 0, ctx);
  const p = nbits(attrs, (r) => {
    throw new ShapeError(ctx.opType, ctx.nodeName, r);
  });
  if (a.dims[a.dims.length - 1] !== p.K) throw new ShapeError(ctx.opType, ctx.nodeName, `A's last dim must be K=${p.K}, got [${a.dims.join(',')}]`);
  return [{ dtype: a.dtype, dims: [...a.dims.slice(0, -1), p.N] }];
}

/** The float64 product, dequantising B's bytes as onnxruntime's documentation defines them. */
function reference(inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor[] {
  const [a, b, scales, zp] = [need(inputs, 0, ctx), need(inputs, 1, ctx), need(inputs, 2, ctx), inputs[3]];
  const bias = inputs[5];
  const [outType] = shape(inputs, attrs, ctx);
  const { K, N, block, blocks } = nbits(attrs, (r) => {
    throw new ShapeError(ctx.opType, ctx.nodeName, r);
  });
  const w = new Float64Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const blk = Math.floor(k / block);
      const byte = b.data[(n * blocks + blk) * (block / 2) + Math.floor((k % block) / 2)]!;
      const code = k % 2 === 0 ? byte & 15 : byte >> 4;
      const zb = zp ? zp.data[n * Math.ceil(blocks / 2) + (blk >> 1)]! : 0x88;
      const z = blk % 2 === 0 ? zb & 15 : zb >> 4;
      w[k * N + n] = (code - z) * scales.data[n * blocks + blk]!;
    }
  }
  const out = tensor(outType!.dtype, outType!.dims);
  const rows = a.data.length / K;
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < N; n++) {
      let s = bias ? bias.data[n]! : 0;
      for (let k = 0; k < K; k++) s += a.data[r * K + k]! * w[k * N + n]!;
      out.data[r * N + n] = s;
    }
  }
  return [out];
}

function expand(x: Expander, attrs: Attrs): void {
  const p = nbits(attrs, (r) => x.unsupported(r));
  const a = x.need(0, 'A');
  const [bName, sName] = [x.need(1, 'B'), x.need(2, 'scales')];
  const zName = x.input(3);
  if (x.input(4) !== undefined) x.unsupported('g_idx (act-order) is not supported');
  const [b, scales, zp] = [x.initializer(bName), x.initializer(sName), zName === undefined ? undefined : x.initializer(zName)];
  if (!b || !scales || (zName !== undefined && !zp)) x.unsupported('B, scales and zero_points must be initializers (frozen weights)');
  // Read on the CPU to repack (the streaming load keeps every tensor a MatMulNBits reads in memory).
  const use = `the 4-bit weight repacking of node '${x.node.name}'`;
  const [bData, sData, zData] = [initializerData(b, use), initializerData(scales, use), zp ? initializerData(zp, use) : undefined];
  if (b.dtype !== 'uint8' || bData.length !== p.N * p.blocks * (p.block / 2)) {
    x.unsupported(`B must be uint8 [${p.N}, ${p.blocks}, ${p.block / 2}], got ${b.dtype} [${b.dims.join(',')}]`);
  }
  if (scales.dims.reduce((m, d) => m * d, 1) !== p.N * p.blocks) x.unsupported(`scales must hold N·blocks = ${p.N * p.blocks} values`);
  if (zp && (zp.dtype !== 'uint8' || zData!.length !== p.N * Math.ceil(p.blocks / 2))) {
    x.unsupported(`zero_points must be uint8 4-bit pairs [${p.N * Math.ceil(p.blocks / 2)}], got ${zp.dtype} [${zp.dims.join(',')}]`);
  }
  const words = packQ4(q4Layout(p.K, p.N, p.block), bData as Uint8Array, sData as ArrayLike<number>, zData as Uint8Array | undefined);
  const w = x.weight(
    { dtype: scales.dtype, dims: [p.K, p.N], data: words, storage: zp ? `q4b${p.block}z` : `q4b${p.block}` },
    [bName, sName, ...(zName ? [zName] : [])],
    bName.replace(/_Q4$/, ''),
  );
  const out = x.node.outputs[0]!;
  const bias = x.input(5);
  if (bias === undefined) x.op('MatMul', [a, w], {}, out);
  else x.op('Add', [x.op('MatMul', [a, w]), bias], {}, out);
}

export const contribQuantOps = {
  MatMulNBits: {
    domain: MS,
    doc: 'A · Wᵀ (+ bias) with W in 4-bit blocks (with or without zero points): one MatMul on the weight kept packed, dequantised in the matmul kernels.',
    shape,
    reference,
    expand,
  },
} satisfies Record<string, ExpandedOpDef>;
