// The LM head fused with the causal-LM cross-entropy (internal op), so that training never holds
// the whole-vocabulary logits.
//
//   LMHeadCrossEntropy (hidden [..., E], labels [...], W_0, …, W_k-1)
//                      → (loss [], count [], dhidden [..., E] when the node declares it)
//   attrs: ignore_index (−100), reduction ('mean' | 'sum'), transB (0: W_b is [E, V_b]; 1: [V_b, E]),
//          chunk_rows (0: chosen for the device)
//
// The logits are hidden · [W_0 | W_1 | …]: the weight arrives as one block, or as column blocks of
// the vocabulary when it exceeds a binding (the legaliser splits it, compile/legalize.ts). The
// GPU computes them one chunk of rows × one vocabulary block at a time into a scratch buffer (the
// tiled matmul kernels, offset into the rows of `hidden`), folding each into per-row online
// log-sum-exp state (shaders/lm-head.wgsl); memory is chunk × block, whatever batch × sequence ×
// vocabulary is. `dhidden` = ∂loss/∂hidden (for dloss = 1) is computed in the same pass when the
// node declares it — the reverse pass asks for it (autograd/vjp.ts), so a training step reads each
// chunk's logits once: with a single block, the chunk's gradient overwrites its logits and goes
// straight through the head's transpose; with several blocks the chunk's logits are computed again
// once the row statistics are complete. The head's weight gets no gradient (it is frozen).
// Semantics otherwise as CrossEntropyLoss (loss.ts): a label counts when it is not ignore_index and
// lies in [0, V); 0 and count 0 when nothing counts. No bias: the heads of GPT-2, Llama, Qwen and
// their kin have none (withLoss leaves a head with a bias to the unfused loss).

import text from '../../shaders/lm-head.wgsl?raw';
import { ShapeError } from '../errors.js';
import { grid, type Program } from '../gpu/kernel.js';
import { bindingLimit, type DeviceTraits } from '../gpu/traits.js';
import { Shader } from '../gpu/wgsl.js';
import type { Attrs } from '../ir/graph.js';
import { sizeOf, tensor, type RefTensor, type TensorType } from '../ir/tensor.js';
import { checkLabels, labelCountProgram, lossAttributes } from './loss.js';
import { lowerMatmul } from './matmul.js';
import { ROW_WG, rowLayout } from './normalization.js';
import type { BufferRef, Inputs, LoweringContext, LoweringSteps, OpContext, OpDef } from './types.js';
import { attrInt, need } from './util.js';

export const lmHeadShader = new Shader('lm-head.wgsl', text, {
  prelude: ['grid', 'f32max', 'lse'],
  structs: {
    Params: [
      ['rows', 'u32'], // rows of this chunk (lh_loss: all rows; lh_add: elements)
      ['row0', 'u32'], // first row of the chunk (lh_add: first element of y)
      ['v', 'u32'], // width of this vocabulary block
      ['v0', 'u32'], // first vocabulary column of the block
      ['vocab', 'u32'], // the whole vocabulary
      ['ignore', 'i32'], // ignore_index
      ['mean', 'u32'], // 1: reduction 'mean', 0: 'sum'
      ['first', 'u32'], // 1: the block initialises the row state
    ],
  },
});

const kernel = (name: string, inputs: string[], outputs: string[]) => lmHeadShader.kernel({ name: `lm-head.${name}`, entryPoint: name, inputs, outputs, uniforms: 'Params' });
const statsKernel = kernel('lh_stats', ['block', 'labels'], ['state']);
const gradKernel = kernel('lh_grad', ['labels', 'state', 'count'], ['block']);
const gradScalarKernel = kernel('lh_grad1', ['labels', 'state', 'count'], ['block']);
const lossKernel = kernel('lh_loss', ['state', 'labels'], ['loss', 'count']);
const addKernel = kernel('lh_add', ['x'], ['y']);

/** Scratch bytes a chunk of logits may take by default: enough rows for long matmuls, little memory. */
export const LM_HEAD_CHUNK_BYTES = 16 << 20;

interface HeadConfig {
  readonly rows: number;
  readonly e: number;
  /** Width of each vocabulary block. */
  readonly blocks: readonly number[];
  readonly vocab: number;
  readonly transB: boolean;
  readonly ignore: number;
  readonly mean: boolean;
}

function config(inputs: Inputs<TensorType>, attrs: Attrs, ctx: OpContext): HeadConfig {
  const hidden = need(inputs, 0, ctx);
  const labels = need(inputs, 1, ctx);
  const lead = checkLabels(hidden, labels, 'hidden', ctx);
  const e = hidden.dims[lead.length]!;
  const transB = attrInt(attrs, 'transB', 0);
  if (transB !== 0 && transB !== 1) throw new ShapeError(ctx.opType, ctx.nodeName, `transB must be 0 or 1, got ${transB}`);
  const blocks: number[] = [];
  for (let i = 2; i < inputs.length; i++) {
    const w = need(inputs, i, ctx);
    if (w.dtype !== hidden.dtype) throw new ShapeError(ctx.opType, ctx.nodeName, `weight block ${i - 2} is ${w.dtype}, hidden is ${hidden.dtype}`);
    const [a, b] = w.dims;
    if (w.dims.length !== 2 || (transB ? b : a) !== e) {
      throw new ShapeError(ctx.opType, ctx.nodeName, `weight block ${i - 2} [${w.dims.join(',')}] must be [${transB ? `V, ${e}` : `${e}, V`}]`);
    }
    blocks.push(transB ? a! : b!);
  }
  if (blocks.length === 0) throw new ShapeError(ctx.opType, ctx.nodeName, 'needs at least one weight block');
  const vocab = blocks.reduce((s, v) => s + v, 0);
  if (vocab === 0) throw new ShapeError(ctx.opType, ctx.nodeName, 'the vocabulary is empty');
  return { rows: sizeOf(lead), e, blocks, vocab, transB: transB === 1, ...lossAttributes(attrs, ctx) };
}

/** Rows per chunk: `chunk_rows` when given, else as many as LM_HEAD_CHUNK_BYTES (and the binding limit) allow. */
export function chunkRows(c: Pick<HeadConfig, 'rows' | 'e' | 'blocks'>, device: DeviceTraits, asked = 0): number {
  if (asked > 0) return Math.min(asked, Math.max(1, c.rows));
  const widest = Math.max(...c.blocks, c.e);
  const budget = Math.min(LM_HEAD_CHUNK_BYTES, bindingLimit(device));
  let rows = Math.max(1, Math.floor(budget / (4 * widest)));
  // Whole tiles of the matmul kernels (64 or 128 rows) when the chunk has more than one.
  if (rows >= 128) rows -= rows % 64;
  return Math.min(rows, Math.max(1, c.rows));
}

/** float64 reference: every output, from the whole logits. */
function reference(inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor[] {
  const c = config(inputs, attrs, ctx);
  const h = need(inputs, 0, ctx);
  const labels = need(inputs, 1, ctx).data;
  const blocks = inputs.slice(2).map((w) => w!.data);
  const { rows, e, vocab } = c;
  // W[k, v] of the whole head, through its blocks.
  const col = new Int32Array(vocab);
  const off = new Int32Array(vocab);
  let v = 0;
  c.blocks.forEach((width, b) => {
    for (let j = 0; j < width; j++, v++) {
      col[v] = b;
      off[v] = j;
    }
  });
  const w = (k: number, u: number): number => {
    const width = c.blocks[col[u]!]!;
    return blocks[col[u]!]![c.transB ? off[u]! * e + k : k * width + off[u]!]!;
  };
  const z = new Float64Array(vocab);
  const grads: { r: number; p: Float64Array; label: number }[] = [];
  let sum = 0;
  let count = 0;
  for (let r = 0; r < rows; r++) {
    const label = labels[r]!;
    if (label === c.ignore || !(label >= 0 && label < vocab)) continue;
    let m = -Infinity;
    for (let u = 0; u < vocab; u++) {
      let s = 0;
      for (let k = 0; k < e; k++) s += h.data[r * e + k]! * w(k, u);
      z[u] = s;
      m = Math.max(m, s);
    }
    let se = 0;
    for (let u = 0; u < vocab; u++) se += Math.exp(z[u]! - m);
    const lse = m + Math.log(se);
    sum += lse - z[label]!;
    count++;
    grads.push({ r, p: z.map((x) => Math.exp(x - lse)), label });
  }
  const coef = c.mean && count > 0 ? 1 / count : 1;
  const dh = tensor(h.dtype, h.dims);
  for (const { r, p, label } of grads) {
    p[label]! -= 1;
    for (let k = 0; k < e; k++) {
      let s = 0;
      for (let u = 0; u < vocab; u++) s += p[u]! * w(k, u);
      dh.data[r * e + k] = coef * s;
    }
  }
  return [
    { dtype: h.dtype, dims: [], data: Float64Array.of(c.mean && count > 0 ? sum / count : sum) },
    { dtype: 'float32', dims: [], data: Float64Array.of(count) },
    dh,
  ];
}

type Step = LoweringSteps['steps'][number];

/** The matmul lowering's steps with A, B and Y bound to the given buffers (it binds only in 0, in 1, out 0). */
function product(a: TensorType, b: TensorType, transB: boolean, ctx: LoweringContext, refs: { a: BufferRef; b: BufferRef; y: BufferRef }, offsets: { aOffset?: number; yOffset?: number }): Step[] {
  const lowered = lowerMatmul('FusedMatMul', [a, b], { transB: transB ? 1 : 0 }, ctx, offsets);
  return lowered.steps.map((s) => ({ program: s.program, bindings: s.bindings.map((r): BufferRef => ('out' in r ? refs.y : 'in' in r && r.in === 1 ? refs.b : refs.a)) }));
}

function lower(inputs: Inputs<TensorType>, outputs: readonly TensorType[], attrs: Attrs, ctx: LoweringContext): LoweringSteps {
  const c = config(inputs, attrs, ctx);
  const grad = outputs.length >= 3;
  const { rows: R, e: E, blocks } = c;
  const chunk = chunkRows(c, ctx.device, attrInt(attrs, 'chunk_rows', 0));
  const widest = Math.max(...blocks);
  const multi = blocks.length > 1;
  // Scratch: 0 row state (vec4 per row), 1 a chunk of logits, 2 the count, 3 a chunk of ∂hidden.
  const temps = [16 * Math.max(1, R), 4 * Math.max(1, chunk * widest), 4, ...(grad && multi ? [4 * Math.max(1, chunk * E)] : [])];
  const base = { ignore: c.ignore, mean: c.mean ? 1 : 0, vocab: c.vocab };
  const steps: Step[] = [];
  const rowProgram = (k: typeof statsKernel, rows: number, row0: number, v: number, v0: number, first: boolean): Program => {
    const vec = v % 4 === 0 ? 1 : 0;
    const { WG, TPR, workgroups } = rowLayout(vec ? v / 4 : v, rows, ctx.device);
    return { kernel: k, overrides: { WG, TPR, VEC: vec }, uniforms: { ...base, rows, row0, v, v0, first: first ? 1 : 0 }, workgroups };
  };
  const wType = (b: number): TensorType => need(inputs, 2 + b, ctx);
  if (grad && R > 0) {
    steps.push({ program: labelCountProgram(R, c.vocab, c.ignore), bindings: [{ in: 1 }, { tmp: 2 }] });
  }
  for (let r0 = 0; r0 < R; r0 += chunk) {
    const rc = Math.min(chunk, R - r0);
    const logits = (b: number): Step[] =>
      product({ dtype: 'float32', dims: [rc, E] }, wType(b), c.transB, ctx, { a: { in: 0 }, b: { in: 2 + b }, y: { tmp: 1 } }, { aOffset: r0 * E });
    let v0 = 0;
    blocks.forEach((v, b) => {
      steps.push(...logits(b), { program: rowProgram(statsKernel, rc, r0, v, v0, b === 0), bindings: [{ tmp: 1 }, { in: 1 }, { tmp: 0 }] });
      v0 += v;
    });
    if (!grad) continue;
    v0 = 0;
    blocks.forEach((v, b) => {
      // With one block the logits of the chunk are still in the scratch buffer.
      if (multi) steps.push(...logits(b));
      steps.push({ program: rowProgram(v % 4 === 0 ? gradKernel : gradScalarKernel, rc, r0, v, v0, false), bindings: [{ in: 1 }, { tmp: 0 }, { tmp: 2 }, { tmp: 1 }] });
      const g: TensorType = { dtype: 'float32', dims: [rc, v] };
      if (b === 0) {
        steps.push(...product(g, wType(b), !c.transB, ctx, { a: { tmp: 1 }, b: { in: 2 + b }, y: { out: 2 } }, { yOffset: r0 * E }));
      } else {
        steps.push(...product(g, wType(b), !c.transB, ctx, { a: { tmp: 1 }, b: { in: 2 + b }, y: { tmp: 3 } }, {}));
        const n = rc * E;
        steps.push({
          program: { kernel: addKernel, overrides: { WG: ROW_WG, TPR: ROW_WG, VEC: 0 }, uniforms: { ...base, rows: n, row0: r0 * E, v: 0, v0: 0, first: 0 }, workgroups: grid(Math.ceil(n / ROW_WG)) },
          bindings: [{ tmp: 3 }, { out: 2 }],
        });
      }
      v0 += v;
    });
  }
  steps.push({
    program: { kernel: lossKernel, overrides: { WG: ROW_WG, TPR: ROW_WG, VEC: 0 }, uniforms: { ...base, rows: R, row0: 0, v: 0, v0: 0, first: 0 }, workgroups: [1, 1, 1] },
    bindings: [{ tmp: 0 }, { in: 1 }, { out: 0 }, outputs.length >= 2 ? { out: 1 } : { tmp: 2 }],
  });
  return { temps, steps };
}

export const lmHeadOps = {
  LMHeadCrossEntropy: {
    domain: 'ia3',
    doc: "LM head fused with softmax cross-entropy, in chunks of rows and vocabulary blocks: (hidden [..., E], labels [...], W blocks [E, V_b] or transB [V_b, E]) → (loss [], count [], dhidden [..., E] if declared); attrs ignore_index, reduction, transB, chunk_rows",
    shape(inputs, attrs, ctx) {
      const hidden = need(inputs, 0, ctx);
      config(inputs, attrs, ctx);
      return [
        { dtype: hidden.dtype, dims: [] },
        { dtype: 'float32', dims: [] },
        { dtype: hidden.dtype, dims: [...hidden.dims] },
      ];
    },
    reference,
    gpu: (inputs, outputs, attrs, ctx) => lower(inputs, outputs, attrs, ctx),
  },
} satisfies Record<string, OpDef>;
