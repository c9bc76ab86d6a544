// Half-precision, 4-bit and 8-bit frozen weights on the GPU (src/onnx/precision.ts, ops/contrib-quant.ts,
// ops/quantize.ts, ir/dtype.ts `f16x2`, `q4b…`, `i8c`; the 4-bit kernels against their references: tests/gpu/contrib.test.ts):
//   - the dynamic uint8 activation quantiser of q8 files and the Gathers that read 8-bit and 4-bit
//     tables, against their float64 references;
//   - the matmul kernels reading B as packed halves against the float64 reference: tiled (vec4 and
//     scalar stores) and small-M kernels, B plain and transposed (the dX product), aligned and
//     unaligned B rows, every fused input;
//   - the fp16 variants of tests/fixtures/real/ (whole-graph fp16 with f32 I/O; fp16 weights read
//     through Casts), the MatMulNBits ones (block 32 symmetric, block 128 with zero points, q4f16),
//     the QDQ int8 ones (per-channel DequantizeLinear weights), the q8 dynamic int8 ones
//     (DynamicQuantizeLinear → MatMulInteger, uint8 embedding tables) and the GatherBlockQuantized
//     one (INT4 embedding): forward against onnxruntime-web within the file's tolerance, the packed
//     weights' GPU bytes, module paths and IA3 state-dict keys/shapes and parameter counts equal to the fp32 export's,
//     IA3 gradients against the float64 CPU executor on the same IR, adapter files keyed like the
//     fp32 model's, and AdamW steps lowering the loss;
//   - streamed loads (weights to the GPU as the file is read) of the llama fp16 and q4 variants:
//     the storage each weight gets there, and logits and IA3 gradients equal to the in-memory load's.
// Packed storage needs no `shader-f16` (WGSL's core unpack2x16float), so nothing here depends on
// the adapter's features; the log line says whether the adapter has shader-f16 at all.
import { describe, expect, it } from 'vitest';
import { floatToHalf, halfToFloat, int8Value, packHalves, packInt8, packQ4, q4Layout, q4Value, type WeightStorage } from '../../src/ir/dtype.js';
import type { Attrs } from '../../src/ir/graph.js';
import { fromGpuBytes, tensor, toGpuArray, type RefTensor, type TensorData } from '../../src/ir/tensor.js';
import { loadModel, type Model } from '../../src/index.js';
import { context, runOnGpu, runReference } from '../../src/ops/execute.js';
import { lowerMatmul, matmulOps, type MatmulOpType } from '../../src/ops/matmul.js';
import { dynamicQuantParams } from '../../src/ops/quantize.js';
import { OPS } from '../../src/ops/registry.js';
import type { GpuLower } from '../../src/ops/types.js';
import { IA3Config } from '../../src/peft/config.js';
import { getPeftModel } from '../../src/peft/model.js';
import { fetchJson, ortDiffs, tensorData, type OrtReference, type Reference } from '../util/fixture-compare.js';
import { adamSteps } from '../util/adam.js';
import { labelsOf, tokenRows } from '../util/contrib-pairs.js';
import { getGpu } from '../util/gpu.js';
import { closeness, expectClose, randomInts, randomTensor } from '../util/tensors.js';

/** A random tensor whose values are exactly representable as halves (what a packed weight holds). */
function halfTensor(dims: number[], seed: number): RefTensor {
  const t = randomTensor(dims, seed);
  return { ...t, data: t.data.map((v) => halfToFloat(floatToHalf(v))) };
}

describe('packed halves', () => {
  it('round to nearest even and pack two per word, low half first', () => {
    expect(floatToHalf(1)).toBe(0x3c00);
    expect(floatToHalf(-2)).toBe(0xc000);
    expect(floatToHalf(65520)).toBe(0x7c00); // rounds up past the largest half
    expect(floatToHalf(2 ** -24)).toBe(1); // smallest subnormal
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // a tie rounds to even
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
    const words = packHalves([1, -2, 0.5]);
    expect(words.length).toBe(4); // padded to a 16-byte quad
    expect([words[0], words[1]]).toEqual([0xc0003c00, 0x3800]);
  });
});

describe('activations kept in half precision (PackHalf / UnpackHalf, ops/half.ts)', () => {
  // Both kernels against the float64 reference, word for word and value for value: round to
  // nearest even at every tie, halves' subnormals, overflow to ∞ in f16 (not in bf16), NaN, ±0, and
  // a tensor long enough that each invocation of the capped grid walks several quads.
  const special = [
    0, -0, 1, -2, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65504, 65519, 65520, -1e6, 3.4e38, 2 ** -14, 2 ** -24,
    2 ** -25, 3 * 2 ** -26, 1e-40, NaN, Infinity, -Infinity, 0.1, -0.3, 1234.5678,
  ];
  const same = (a: number, b: number): boolean => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
  for (const format of ['f16', 'bf16'] as const) {
    it(`${format}: special values and 40,000 random ones across magnitudes`, async () => {
      const gpu = await getGpu();
      const random = randomTensor([40000], 910);
      const values = [...special, ...Array.from(random.data, (v, i) => Math.fround(v * 10 ** ((i % 13) - 8)))];
      const x = tensor('float32', [values.length]);
      x.data.set(values.map(Math.fround));
      const ctx = context('PackHalf', format);
      const [words] = runReference(OPS.PackHalf, [x], { format }, ctx);
      const [gotWords] = await runOnGpu(gpu, OPS.PackHalf, [x], { format }, ctx);
      const wrong = Array.from(words!.data).findIndex((w, i) => w !== gotWords!.data[i]);
      expect(wrong, wrong < 0 ? '' : `element ${2 * wrong}: ${values[2 * wrong]}, ${values[2 * wrong + 1]}`).toBe(-1);
      const attrs = { format, shape: [values.length] };
      const uctx = context('UnpackHalf', format);
      const [want] = runReference(OPS.UnpackHalf, [words!], attrs, uctx);
      const [got] = await runOnGpu(gpu, OPS.UnpackHalf, [words!], attrs, uctx);
      const off = Array.from(want!.data).findIndex((v, i) => !same(v, got!.data[i]!));
      expect(off, off < 0 ? '' : `element ${off}: ${values[off]} → ${got!.data[off]}, want ${want!.data[off]}`).toBe(-1);
      // What the formats promise: the nearest value, f16 overflowing past 65504 and bf16 not.
      const back = (v: number): number => want!.data[values.indexOf(v)]!;
      expect([back(1 + 2 ** -11), back(65519)]).toEqual(format === 'f16' ? [1, 65504] : [1, 65536]);
      expect(back(65520)).toBe(format === 'f16' ? Infinity : 65536);
      expect(back(-1e6)).toBe(format === 'f16' ? -Infinity : -999424);
      expect(back(3.4e38)).toBe(Infinity); // past bfloat16's largest finite value (3.3895e38) too
      expect(back(2 ** -24)).toBe(2 ** -24);
      for (let i = special.length; i < values.length; i++) {
        const v = values[i]!;
        if (Math.abs(v) >= 2 ** -14 && Math.abs(v) <= 65504) expect(Math.abs(want!.data[i]! - v) / Math.abs(v), `${v}`).toBeLessThanOrEqual(format === 'f16' ? 2 ** -11 : 2 ** -8);
      }
    });
  }
});

describe('matmul kernels with B as packed halves', () => {
  const cases: [string, MatmulOpType, number, number, number, Attrs, boolean][] = [
    // name, op, M, K, N, attrs, fused inputs
    ['tiled, vec4 B rows', 'MatMul', 37, 64, 48, {}, false],
    ['tiled, scalar stores, unaligned B rows', 'MatMul', 33, 21, 30, {}, false],
    ['tiled, transposed B (dX = dY·Wᵀ)', 'FusedMatMul', 40, 48, 36, { transB: 1 }, false],
    ['tiled, transposed unaligned B', 'FusedMatMul', 19, 27, 13, { transB: 1 }, false],
    ['small M, B rows', 'MatMul', 3, 70, 52, {}, false],
    ['small M, transposed B', 'FusedMatMul', 5, 66, 9, { transB: 1 }, false],
    ['tiled, bias and both IA3 scales', 'FusedMatMul', 24, 32, 40, {}, true],
    ['small M, bias and both IA3 scales, transposed B', 'FusedMatMul', 2, 35, 17, { transB: 1 }, true],
  ];
  let seed = 100;
  for (const [name, op, M, K, N, attrs, fused] of cases) {
    it(name, async () => {
      const a = randomTensor([M, K], seed++);
      const b = halfTensor(attrs.transB ? [N, K] : [K, N], seed++);
      const inputs = fused ? [a, b, randomTensor([N], seed++), randomTensor([K], seed++), randomTensor([N], seed++)] : [a, b];
      const ctx = context(op, name);
      const kernels = lowerMatmul(op, inputs.map((t, i) => ({ dtype: t.dtype, dims: t.dims, ...(i === 1 ? { storage: 'f16x2' as const } : {}) })), attrs, ctx).steps.map((s) => s.program.kernel.name);
      expect(kernels.every((k) => k.endsWith('-f16x2')), kernels.join()).toBe(true);
      const want = runReference(matmulOps[op], inputs, attrs, ctx)[0]!;
      const [got] = await runOnGpu(await getGpu(), matmulOps[op], inputs, attrs, ctx, new Set(), { 1: 'f16x2' });
      expectClose(got!, want, { rtol: 1e-4, atol: 1e-5 + 2e-6 * K }, name);
    });
  }
});

/** A random weight W [K, N] in 4-bit blocks: its packed words and its dequantised values (q4Value). */
function randomQ4(K: number, N: number, block: number, zp: boolean, seed: () => number): { words: Uint32Array; w: RefTensor } {
  const l = q4Layout(K, N, block);
  const codes = Uint8Array.from(randomInts([N * l.blocks * (block / 2)], seed(), 0, 256, 'uint8').data);
  const zeros = zp ? Uint8Array.from(randomInts([N * Math.ceil(l.blocks / 2)], seed(), 0, 256, 'uint8').data) : undefined;
  const words = packQ4(l, codes, randomTensor([N * l.blocks], seed(), 0.01, 0.1).data, zeros);
  const w = tensor('float32', [K, N]);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) w.data[k * N + n] = q4Value(words, l, zp, k, n);
  return { words, w };
}

describe('matmul kernels with B in 4-bit blocks', () => {
  // W [K, N] from random codes, scales and zero points; the kernels read the packed words, the
  // reference the dequantised values (q4Value, which the expansion's own reference is checked against).
  const cases: [block: number, K: number, N: number, zp: boolean, M: number, transposed: boolean][] = [
    [16, 40, 12, true, 20, false],
    [32, 64, 36, false, 3, false],
    [64, 96, 16, true, 17, true],
    [128, 64, 24, true, 5, true],
    [256, 300, 8, false, 33, false],
    [256, 260, 20, true, 2, true],
  ];
  let seed = 300;
  for (const [block, K, N, zp, M, transposed] of cases) {
    const what = `block ${block}, K ${K}, N ${N}${zp ? ', zero points' : ''}, M ${M}${transposed ? ', dX = dY·Wᵀ' : ''}`;
    it(what, async () => {
      const { words, w } = randomQ4(K, N, block, zp, () => seed++);
      const storage: WeightStorage = zp ? `q4b${block}z` : `q4b${block}`;
      // Forward x·W, or the transposed product dY·Wᵀ of the MatMul gradient (FusedMatMul transB).
      const a = randomTensor(transposed ? [M, N] : [M, K], seed++);
      const attrs: Attrs = transposed ? { transB: 1 } : {};
      const op: MatmulOpType = transposed ? 'FusedMatMul' : 'MatMul';
      const ctx = context(op, what);
      const want = runReference(matmulOps[op], [a, w], attrs, ctx)[0]!;
      const low = lowerMatmul(op, [{ dtype: 'float32', dims: a.dims }, { dtype: 'float32', dims: [K, N], storage }], attrs, ctx);
      expect(low.steps.every((st) => st.program.kernel.name.endsWith('-q4')), low.steps.map((st) => st.program.kernel.name).join()).toBe(true);
      const gpu = await getGpu();
      const bufs = [gpu.upload(toGpuArray(a)), gpu.upload(words)];
      const out = gpu.buffers.acquire(4 * want.data.length);
      try {
        await gpu.run(low.steps.map((st) => ({ program: st.program, buffers: st.bindings.map((r) => ('in' in r ? bufs[r.in] ?? bufs[0]! : out)) })));
        const got = fromGpuBytes({ dtype: 'float32', dims: want.dims }, await gpu.read(out, 4 * want.data.length));
        expectClose(got, want, { rtol: 1e-4, atol: 1e-5 + 2e-6 * K }, what);
      } finally {
        for (const b of [...bufs, out]) gpu.buffers.release(b);
      }
    });
  }
});

describe('the dynamic uint8 activation quantiser (q8 files)', () => {
  // DynamicQuantizeDequantize against its f32-emulating reference: the range pass over several
  // workgroups' worth of elements, ranges that do not straddle 0, a constant tensor (scale 1).
  // A division on the GPU may land a value on the other side of a rounding tie, so a code may
  // differ by one step (one scale) on a rare element; everything else is bit-exact.
  const op = OPS.DynamicQuantizeDequantize;
  const cases: [string, () => RefTensor][] = [
    ['37 values in [-1, 1]', () => randomTensor([37], 500)],
    ['[3, 300] in [-0.2, 3]', () => randomTensor([3, 300], 501, -0.2, 3)],
    ['[2, 64, 129] in [0.5, 2] (min widened to 0)', () => randomTensor([2, 64, 129], 502, 0.5, 2)],
    ['[5, 33] in [-4, -1] (max widened to 0)', () => randomTensor([5, 33], 503, -4, -1)],
    ['a zero tensor (scale 1)', () => tensor('float32', [4, 9])],
  ];
  for (const [name, make] of cases) {
    it(name, async () => {
      const x = make();
      const ctx = context('DynamicQuantizeDequantize', name);
      const want = runReference(op, [x], {}, ctx)[0]!;
      const [got] = await runOnGpu(await getGpu(), op, [x], {}, ctx);
      const { scale } = dynamicQuantParams(x.data);
      let off = 0;
      for (let i = 0; i < want.data.length; i++) {
        const d = Math.abs(got!.data[i]! - want.data[i]!);
        expect(d, `element ${i}`).toBeLessThanOrEqual(scale * (1 + 1e-5));
        if (d > 1e-6 * (Math.abs(want.data[i]!) + scale)) off++;
      }
      expect(off, 'elements a rounding tie moved').toBeLessThanOrEqual(Math.ceil(want.data.length / 1000));
    });
  }
});

/** Runs Gather on a table uploaded as packed `words` (its one kernel `kernel`) and compares with `want`. */
async function expectPackedGather(words: Uint32Array, storage: WeightStorage, dims: number[], ids: RefTensor, attrs: Attrs, want: RefTensor, kernel: string, what: string): Promise<void> {
  const gpu = await getGpu();
  const ctx = context('Gather', what);
  const lowered = (OPS.Gather.gpu as GpuLower)([{ dtype: 'float32', dims, storage }, { dtype: ids.dtype, dims: ids.dims }], [want], attrs, { ...ctx, device: gpu.traits });
  if ('alias' in lowered) throw new Error('expected a kernel');
  expect(lowered.steps.map((st) => st.program.kernel.name)).toEqual([kernel]);
  const bufs = [gpu.upload(words), gpu.upload(toGpuArray(ids))];
  const out = gpu.buffers.acquire(4 * want.data.length);
  try {
    await gpu.run(lowered.steps.map((st) => ({ program: st.program, buffers: st.bindings.map((r) => ('in' in r ? bufs[r.in]! : out)) })));
    const got = fromGpuBytes({ dtype: 'float32', dims: want.dims }, await gpu.read(out, 4 * want.data.length));
    expectClose(got, want, { rtol: 1e-6, atol: 0 }, what);
  } finally {
    for (const b of [...bufs, out]) gpu.buffers.release(b);
  }
}

describe('Gather on an 8-bit embedding table (q8 files)', () => {
  // The table [rows, cols] as codes with per-row scales and zero points (i8r / u8r); the reference
  // gathers the dequantised table (int8Value), negative indices included.
  const cases: [rows: number, cols: number, idx: number[], signed: boolean][] = [
    [120, 32, [0, 5, 119, -1, 7, 7], false],
    [33, 13, [3, -33, 32, 0, 12], true],
    [8, 257, [1, 2, 3, 4, 5, 6, 7, 0, -2], false],
  ];
  let seed = 600;
  for (const [rows, cols, idx, signed] of cases) {
    const what = `${signed ? 'int8' : 'uint8'} [${rows}, ${cols}], ${idx.length} indices`;
    it(what, async () => {
      const codes = randomInts([rows * cols], seed++, signed ? -128 : 0, signed ? 128 : 256, 'int32').data;
      const zps = randomInts([rows], seed++, signed ? -20 : 100, signed ? 20 : 160, 'int32').data;
      const words = packInt8(codes, randomTensor([rows], seed++, 0.001, 0.05).data, zps);
      const table = tensor('float32', [rows, cols]);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) table.data[r * cols + c] = int8Value(words, [rows, cols], signed, 0, r, c);
      const ids = tensor('int64', [idx.length], idx);
      const ctx = context('Gather', what);
      const want = runReference(OPS.Gather, [table, ids], {}, ctx)[0]!;
      await expectPackedGather(words, signed ? 'i8r' : 'u8r', [rows, cols], ids, {}, want, 'layout-gather-rows-int8', what);
    });
  }
});

describe('Gather along axis 1 of a weight in 4-bit blocks (GatherBlockQuantized)', () => {
  // W [K, N] in MatMulNBits' layout; Gather(W, ids, axis 1) → [K, count] against the reference on
  // the dequantised weight (q4Value), with and without zero points, K not a multiple of the block.
  const cases: [block: number, K: number, N: number, zp: boolean, idx: number[]][] = [
    [32, 64, 128, false, [0, 5, 127, -1, 64, 64]],
    [16, 40, 12, true, [11, 0, -12, 3]],
    [128, 96, 9, true, [8, 1, 2]],
  ];
  let seed = 700;
  for (const [block, K, N, zp, idx] of cases) {
    const what = `block ${block}, K ${K}, N ${N}${zp ? ', zero points' : ''}, ${idx.length} indices`;
    it(what, async () => {
      const { words, w } = randomQ4(K, N, block, zp, () => seed++);
      const ids = tensor('int64', [idx.length], idx);
      const ctx = context('Gather', what);
      const want = runReference(OPS.Gather, [w, ids], { axis: 1 }, ctx)[0]!;
      await expectPackedGather(words, zp ? `q4b${block}z` : `q4b${block}`, [K, N], ids, { axis: 1 }, want, 'layout-gather-cols-q4', what);
    });
  }
});

interface Variant {
  readonly model: 'gpt2' | 'llama' | 'bert';
  readonly file: string;
  readonly task: 'CAUSAL_LM' | 'SEQ_CLS';
}

const VARIANTS: readonly Variant[] = [
  { model: 'gpt2', file: 'onnx/model_fp16.onnx', task: 'CAUSAL_LM' },
  { model: 'gpt2', file: 'onnx/model_fp16_weights.onnx', task: 'CAUSAL_LM' },
  { model: 'llama', file: 'onnx/model_fp16.onnx', task: 'CAUSAL_LM' },
  { model: 'llama', file: 'onnx/model_fp16_weights.onnx', task: 'CAUSAL_LM' },
  { model: 'bert', file: 'onnx/model_fp16.onnx', task: 'SEQ_CLS' },
  { model: 'llama', file: 'onnx/model_q4.onnx', task: 'CAUSAL_LM' },
  { model: 'llama', file: 'onnx/model_q4_b128_zp.onnx', task: 'CAUSAL_LM' },
  { model: 'llama', file: 'onnx/model_q4f16.onnx', task: 'CAUSAL_LM' },
  { model: 'llama', file: 'onnx/model_q4_gather.onnx', task: 'CAUSAL_LM' },
  { model: 'bert', file: 'onnx/model_q4.onnx', task: 'SEQ_CLS' },
  { model: 'bert', file: 'onnx/model_q4_b128_zp.onnx', task: 'SEQ_CLS' },
  { model: 'gpt2', file: 'onnx/model_int8_qdq.onnx', task: 'CAUSAL_LM' },
  { model: 'llama', file: 'onnx/model_int8_qdq.onnx', task: 'CAUSAL_LM' },
  { model: 'bert', file: 'onnx/model_int8_qdq.onnx', task: 'SEQ_CLS' },
  { model: 'gpt2', file: 'onnx/model_quantized.onnx', task: 'CAUSAL_LM' },
  { model: 'gpt2', file: 'onnx/model_quantized_per_channel.onnx', task: 'CAUSAL_LM' },
  { model: 'llama', file: 'onnx/model_quantized.onnx', task: 'CAUSAL_LM' },
  { model: 'llama', file: 'onnx/model_quantized_per_channel.onnx', task: 'CAUSAL_LM' },
  { model: 'bert', file: 'onnx/model_quantized.onnx', task: 'SEQ_CLS' },
];

const keysAndDims = (sd: Record<string, TensorData>): string[] => Object.entries(sd).map(([k, t]) => `${k} [${t.dims.join(',')}]`).sort();

function feedsOf(v: Variant, ids: number[][]): Record<string, TensorData> {
  const dims = [ids.length, ids[0]!.length];
  const flat = ids.flat();
  const feeds: Record<string, TensorData> = {
    input_ids: { data: BigInt64Array.from(flat, (x) => BigInt(x)), dims },
    attention_mask: { data: BigInt64Array.from(flat, () => 1n), dims },
  };
  if (v.model === 'llama') feeds.position_ids = { data: BigInt64Array.from(flat, (_, i) => BigInt(i % dims[1]!)), dims };
  if (v.model === 'bert') feeds.token_type_ids = { data: new BigInt64Array(flat.length), dims };
  return feeds;
}

describe('fp16, 4-bit and 8-bit variants on the GPU', () => {
  for (const v of VARIANTS) {
    it(`${v.model}-variants/${v.file}: onnxruntime-web outputs, packed weights, IA3 like the fp32 export, gradients, training`, async () => {
      const gpu = await getGpu();
      console.log(`[precision] adapter shader-f16: ${gpu.traits.shaderF16 ? 'yes' : 'no'}; fp16 weights are read as packed halves either way`);
      const root = `/tests/fixtures/real/${v.model}-variants`;
      const ref = (await fetchJson<Reference>(`${root}/reference.json`)).files[v.file]!;
      const ort = (await fetchJson<OrtReference>(`${root}/ort_reference.json`)).files[v.file]!;
      const model = await loadModel(`${root}/${v.file}`, { device: gpu });
      const plain: Model = await loadModel(`/tests/fixtures/${v.model}/onnx/model.onnx`, { device: gpu });
      try {
        for (const c of ref.cases) {
          const out = await model.run(Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, tensorData(t)])));
          const got = Object.fromEntries(Object.entries(out).map(([k, t]) => [k, { dims: t.dims, data: Array.from(t.data as Float32Array) }]));
          for (const d of ortDiffs(c, ort.cases.find((o) => o.name === c.name)!, got, ref.torch_tolerance!)) {
            console.log(`[precision] ${v.model} ${v.file} ${c.name} ${d.name}: max |GPU − onnxruntime-web| ${d.maxAbs.toExponential(2)}`);
            expect(d.worst, `${c.name} ${d.name}: max |Δ| ${d.maxAbs}`).toBeLessThanOrEqual(1);
          }
        }
        // The matmul weights stay half (or 4-bit) on the GPU: fewer bytes than the fp32 export's.
        await plain.run(feedsOf(v, tokenRows(1, 3, 50, 3, 4)));
        console.log(`[precision] ${v.model} ${v.file}: GPU weight bytes ${model.weightBytes} vs fp32 ${plain.weightBytes}`);
        expect(model.weightBytes).toBeLessThan(0.75 * plain.weightBytes);

        expect(model.moduleNames()).toEqual(plain.moduleNames());
        const peft = getPeftModel(model, new IA3Config({ taskType: v.task, initIa3Weights: false }));
        const base = getPeftModel(plain, new IA3Config({ taskType: v.task, initIa3Weights: false }));
        expect(keysAndDims(peft.stateDict())).toEqual(keysAndDims(base.stateDict()));
        // Weights count by their logical numel, as in the fp32 export (docs/architecture.md, Precision),
        // except a tie the quantiser broke: GPT-2's QDQ and q8 files store lm_head in 8 bits apart
        // from wte (f32, or 8 bits of its own), so the two are separate tensors and lm_head counts on its own.
        const counts = (line: string): number[] => [...line.matchAll(/params: ([\d,]+)/g)].map((m) => Number(m[1]!.replace(/,/g, '')));
        const [t, all] = counts(peft.printTrainableParameters());
        const [tBase, allBase] = counts(base.printTrainableParameters());
        expect(t).toBe(tBase);
        const lmHead = model.modules.find((m) => m.path === 'lm_head')!;
        expect(all).toBe(allBase! + (v.model === 'gpt2' && /int8|quantized/.test(v.file) ? lmHead.inFeatures * lmHead.outFeatures : 0));
        const files = peft.saveAdapter();
        expect(files['adapter_config.json']).toBe(base.saveAdapter()['adapter_config.json']);

        const ids = tokenRows(2, 6, 50, 7, 4);
        const g = await peft.lossAndGradients({ inputs: feedsOf(v, ids), labels: labelsOf(v, ids) });
        const r = peft.lossAndGradientsReference({ inputs: feedsOf(v, ids), labels: labelsOf(v, ids) });
        expect(Math.abs(g.loss - r.loss), 'loss').toBeLessThan(1e-4 * Math.abs(r.loss));
        for (const [key, grad] of Object.entries(g.gradients)) {
          const want = r.gradients[`default/${key}`]!;
          const scale = Math.max(...Array.from(want, Math.abs));
          const { worst, maxAbs } = closeness(grad.data as Float32Array, want, { rtol: 2e-3, atol: 2e-4 * scale });
          expect(worst, `d/${key}: max |Δ| ${maxAbs}`).toBeLessThanOrEqual(1);
        }
        const [first, last] = await adamSteps(peft, Array.from({ length: 8 }, () => ({ inputs: feedsOf(v, ids), labels: labelsOf(v, ids) })), 0.05);
        console.log(`[precision] ${v.model} ${v.file}: loss ${first.toFixed(4)} → ${last.toFixed(4)}`);
        expect(last).toBeLessThan(first);
      } finally {
        await model.dispose();
        await plain.dispose();
      }
    });
  }
});

describe('streamed loads keep the precision of an in-memory load', () => {
  // keepBytes 4096 streams every matmul weight of the tiny llama variants to the GPU as the file is
  // read (onnx/weights-sink.ts): halves read only by MatMuls, directly or through Casts (dropped
  // at load), go there packed; MatMulNBits' tensors stay on the CPU to be repacked. Either way the
  // model computes exactly what the in-memory load computes, with the same GPU bytes.
  const cases: readonly [string, string][] = [
    ['onnx/model_fp16.onnx', 'f16x2'],
    ['onnx/model_fp16_weights.onnx', 'f16x2'],
    ['onnx/model_q4.onnx', 'q4b32'],
  ];
  for (const [file, kept] of cases) {
    it(`llama-variants/${file}: the q_proj weight is ${kept} on the GPU, logits and IA3 gradients equal the in-memory load's`, async () => {
      const gpu = await getGpu();
      const url = `/tests/fixtures/real/llama-variants/${file}`;
      const streamed = await loadModel(url, { device: gpu, keepBytes: 4096 });
      const whole = await loadModel(url, { device: gpu, keepWeightsOnCpu: true });
      try {
        const q = streamed.modules.find((m) => m.path.endsWith('layers.0.self_attn.q_proj'))!;
        const w = streamed.graph.initializers.get(q.weight)!;
        expect(w.storage ?? 'f32').toBe(kept);
        if (kept !== 'q4b32') expect(w.data, 'streamed: no CPU copy').toBeUndefined();
        expect(streamed.moduleNames()).toEqual(whole.moduleNames());
        const v: Variant = { model: 'llama', file, task: 'CAUSAL_LM' };
        const ids = tokenRows(2, 6, 50, 9, 4);
        const a = await streamed.run(feedsOf(v, ids));
        const b = await whole.run(feedsOf(v, ids));
        expect(Array.from(a.logits!.data as Float32Array)).toEqual(Array.from(b.logits!.data as Float32Array));
        // Both hold every weight on the GPU now, packed alike. The fp16 embedding table behind its
        // Cast (read by a Gather, so widened to f32 either way) is a weight in both: a Cast of a
        // frozen half is never folded on the CPU (onnx/specialize.ts), so the in-memory load does not
        // fold it either.
        for (const m of streamed.modules) expect(streamed.graph.initializers.get(m.weight)!.storage, m.path).toBe(whole.graph.initializers.get(m.weight)!.storage);
        expect(streamed.weightBytes).toBe(whole.weightBytes);
        const config = new IA3Config({ taskType: 'CAUSAL_LM', initIa3Weights: false });
        const ga = await getPeftModel(streamed, config).lossAndGradients({ inputs: feedsOf(v, ids), labels: labelsOf(v, ids) });
        const gb = await getPeftModel(whole, config).lossAndGradients({ inputs: feedsOf(v, ids), labels: labelsOf(v, ids) });
        expect(ga.loss).toBe(gb.loss);
        for (const [key, grad] of Object.entries(gb.gradients)) expect(Array.from(ga.gradients[key]!.data as Float32Array), key).toEqual(Array.from(grad.data as Float32Array));
      } finally {
        await streamed.dispose();
        await whole.dispose();
      }
    });
  }
});
