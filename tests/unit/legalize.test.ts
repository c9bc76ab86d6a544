// Legalisation without a GPU, on the demo's GPT-2 (vocabulary 4096 × 192: its embedding and head
// are 3 MiB each) under binding limits far below them: the legal graph (embedding in row blocks
// read by GatherBlocks, matmul weights in column blocks, the fused head reading vocabulary blocks,
// the logits output in row parts) gives the float64 executor the same logits, loss and IA3
// gradients as the original graph; block layouts respect the limit and the matmuls' vec4 widths;
// what no rule can split is a SizeLimitError naming the tensor, its bytes and the limit.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildBackward } from '../../src/autograd/grad.js';
import { withLoss } from '../../src/autograd/loss.js';
import { legalize, type LegalGraph } from '../../src/compile/legalize.js';
import { layoutPlan } from '../../src/compile/plan.js';
import { SizeLimitError } from '../../src/errors.js';
import { deviceTraits } from '../../src/gpu/traits.js';
import type { Graph } from '../../src/ir/graph.js';
import type { SpecializedGraph } from '../../src/ir/static-graph.js';
import { sizeOf, type RefTensor } from '../../src/ir/tensor.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { runReferenceGraph } from '../../src/onnx/executor.js';
import { specialize } from '../../src/onnx/specialize.js';
import { blockAxis, blockLayout } from '../../src/ops/blocks.js';
import { closeness, randomInts } from '../util/tensors.js';

const graph: Graph = decodeOnnx(new Uint8Array(readFileSync('demo/public/models/sotu-gpt2/onnx/model.onnx')));
const KiB = 1024;
const limited = (bytes: number) => deviceTraits({ limits: { maxStorageBufferBindingSize: bytes } });

function feeds(batch: number, seq: number): Record<string, RefTensor> {
  const ids = randomInts([batch, seq], 3, 0, 4095);
  return { input_ids: ids, attention_mask: { dtype: 'int64', dims: [batch, seq], data: new Float64Array(batch * seq).fill(1) } };
}

/** Runs a legal graph on the float64 executor: block data as constants, split outputs assembled from their parts. */
function runLegal(legal: LegalGraph, inputs: Record<string, RefTensor>, wanted: string[]): Record<string, Float64Array> {
  const constants = new Map(legal.constants);
  for (const [name, r] of legal.resident) {
    if (!constants.has(name) && !legal.source.initializers.has(name)) constants.set(name, { dtype: r.type.dtype, dims: r.type.dims, data: Float64Array.from(r.data!) });
  }
  const reads = wanted.flatMap((v) => legal.outputParts?.get(v) ?? [v]);
  const out = runReferenceGraph({ ...legal, constants, outputs: reads, outputNames: reads }, inputs);
  return Object.fromEntries(wanted.map((v) => [v, Float64Array.from((legal.outputParts?.get(v) ?? [v]).flatMap((p) => Array.from(out[p]!.data)))]));
}

function expectSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  expect(got.length, what).toBe(want.length);
  const c = closeness(got, want, { rtol: 1e-10, atol: 1e-12 });
  expect(c.worst, `${what}: worst at ${c.at}, max |diff| ${c.maxAbs}`).toBeLessThanOrEqual(1);
}

describe('block layouts', () => {
  it('keep every block under the limit, columns in multiples of 4', () => {
    const rows = blockLayout('w', [4096, 192], 0, 64 * KiB)!;
    expect(rows.every((b) => 4 * sizeOf(b.dims) <= 64 * KiB)).toBe(true);
    expect(rows.reduce((s, b) => s + b.dims[0]!, 0)).toBe(4096);
    const cols = blockLayout('w', [192, 4096], 1, 64 * KiB)!;
    expect(cols.every((b) => 4 * sizeOf(b.dims) <= 64 * KiB && b.dims[1]! % 4 === 0)).toBe(true);
    expect(cols.map((b) => b.start)).toEqual(cols.map((_, i) => i * cols[0]!.dims[1]!));
    expect(blockLayout('w', [100000, 192], 1, 64 * KiB)).toBeUndefined(); // one column is 390 KiB
  });

  it('follow the readers: Gather rows, matmul output columns (rows when transposed)', () => {
    const r = (opType: string, inputs: string[], attrs: Record<string, unknown> = {}) => ({ opType, inputs, outputs: [], attrs });
    expect(blockAxis('w', [r('Gather', ['w', 'ids'])])).toBe(0);
    expect(blockAxis('w', [r('Gather', ['w', 'ids']), r('Gemm', ['h', 'w'], { transB: 1 })])).toBe(0);
    expect(blockAxis('w', [r('MatMul', ['h', 'w'])])).toBe(1);
    expect(blockAxis('w', [r('MatMul', ['h', 'w']), r('FusedMatMul', ['g', 'w'], { transB: 1 })])).toBe(1); // the forward product decides
    expect(blockAxis('w', [r('Gather', ['w', 'ids']), r('MatMul', ['h', 'w'])])).toBe(0); // a matmul takes either
    expect(blockAxis('w', [r('Gather', ['w', 'ids']), r('LMHeadCrossEntropy', ['h', 'l', 'w'])])).toMatch(/different axes/);
    expect(blockAxis('w', [r('Transpose', ['w'])])).toMatch(/Transpose reads it as input 0/);
  });
});

describe('legalize', () => {
  it('leaves a graph that fits alone', () => {
    const spec = specialize(graph, { input_ids: [2, 8], attention_mask: [2, 8] });
    expect(legalize(spec, limited(16 << 20))).toBe(spec);
  });

  it('splits weights and the logits; the float64 executor gives the same logits', () => {
    const spec = specialize(graph, { input_ids: [2, 8], attention_mask: [2, 8] });
    const legal = legalize(spec, limited(64 * KiB));
    const ops = legal.nodes.map((n) => n.opType);
    expect(ops).toContain('GatherBlocks');
    expect(ops).toContain('Concat');
    expect(ops).not.toContain('Gather');
    expect(legal.outputParts?.get('logits')?.length).toBe(4); // 16 rows of 16 KiB
    for (const n of legal.nodes) for (const v of [...n.inputs, ...n.outputs]) if (v) expect(4 * sizeOf(legal.types.get(v)!.dims), v).toBeLessThanOrEqual(64 * KiB);
    expect(() => layoutPlan(legal, limited(64 * KiB), (name) => (legal.weights.includes(name) ? 16 : undefined))).not.toThrow();
    const x = feeds(2, 8);
    expectSame(runLegal(legal, x, ['logits']).logits!, runReferenceGraph(spec, x).logits!.data, 'logits');
  }, 60_000);

  it('gives the same loss and IA3 gradients through the backward pass and the fused head', () => {
    // IA3 vectors as runtime inputs in the training graph: the GPT-2 targets c_attn and mlp.c_proj.
    const train = withLoss(graph, 'CAUSAL_LM');
    const spec = specialize(train, { input_ids: [2, 8], attention_mask: [2, 8], labels: [2, 8] });
    const wrt = ['/transformer/h.0/attn/c_attn/Gemm_output_0', '/transformer/h.3/mlp/c_proj/Reshape_output_0'].filter((v) => spec.types.has(v));
    expect(wrt.length).toBe(2);
    const backward = buildBackward(spec, 'loss', wrt).graph as SpecializedGraph;
    const legal = legalize(backward, limited(64 * KiB));
    expect(legal.nodes.find((n) => n.opType === 'LMHeadCrossEntropy')!.inputs.length).toBeGreaterThan(3);
    expect(legal.nodes.some((n) => n.opType === 'Sum')).toBe(true); // a backward product along split columns
    const x = { ...feeds(2, 8), labels: randomInts([2, 8], 5, 0, 4095) };
    const names = ['loss', ...wrt.map((w) => `grad/${w}`)];
    const want = runReferenceGraph(backward, x);
    const got = runLegal(legal, x, backward.outputs.filter((_, i) => names.includes(backward.outputNames[i]!)));
    backward.outputNames.forEach((name, i) => {
      if (names.includes(name)) expectSame(got[backward.outputs[i]!]!, want[name]!.data, name);
    });
  }, 60_000);

  it('refuses what no rule splits with a SizeLimitError naming tensor, bytes and limit', () => {
    const spec = specialize(graph, { input_ids: [2, 8], attention_mask: [2, 8] });
    let error: unknown;
    try {
      legalize(spec, limited(16 * KiB));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SizeLimitError);
    const e = error as SizeLimitError;
    const tensor = /^tensor '([^']+)'/.exec(e.what)?.[1] ?? '';
    expect(e.limit).toBe(16 * KiB);
    expect(e.size).toBeGreaterThan(16 * KiB);
    expect(spec.types.has(tensor)).toBe(true);
    expect(e.message).toContain(`tensor '${tensor}'`);
    expect(e.message).toContain("exceed the limit of 16,384 bytes (the device's maxStorageBufferBindingSize: ");
  });
});
