// The fused LM head + cross-entropy without a GPU: its float64 reference equals the unfused
// MatMul + CrossEntropyLoss (loss, count, and ∂loss/∂hidden through the head's transpose) for one
// weight, column blocks and transposed row blocks; withLoss fuses a plain head (MatMul or Gemm
// transB) and leaves a trainable or biased one to the unfused loss; and on the GPT-2 and Llama
// fixtures with IA3 the fused training graph gives the unfused loss and IA3 gradients on the
// float64 executor.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { withLoss } from '../../src/autograd/loss.js';
import type { GpuContext } from '../../src/gpu/device.js';
import type { Attrs, Graph } from '../../src/ir/graph.js';
import { tensor, type RefTensor } from '../../src/ir/tensor.js';
import { Model } from '../../src/model.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { findLmHead } from '../../src/onnx/heads.js';
import { detectModelType, findModules } from '../../src/onnx/modules.js';
import { context, runReference } from '../../src/ops/execute.js';
import { OPS } from '../../src/ops/registry.js';
import { IA3Config } from '../../src/peft/config.js';
import { getPeftModel } from '../../src/peft/model.js';
import { closeness, expectClose, randomInts, randomTensor } from '../util/tensors.js';

const run = (op: keyof typeof OPS, inputs: (RefTensor | undefined)[], attrs: Attrs = {}): RefTensor[] => runReference(OPS[op], inputs, attrs, context(op, `test_${op}`));

/** Columns [from, to) of a row-major [rows, cols] matrix. */
function columns(w: RefTensor, from: number, to: number): RefTensor {
  const [rows, cols] = w.dims as [number, number];
  const out = tensor(w.dtype, [rows, to - from]);
  for (let r = 0; r < rows; r++) for (let c = from; c < to; c++) out.data[r * (to - from) + c - from] = w.data[r * cols + c]!;
  return out;
}

function transpose(w: RefTensor): RefTensor {
  const [rows, cols] = w.dims as [number, number];
  const out = tensor(w.dtype, [cols, rows]);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out.data[c * rows + r] = w.data[r * cols + c]!;
  return out;
}

describe('LMHeadCrossEntropy reference', () => {
  const h = randomTensor([2, 3, 4], 1, -2, 2);
  const w = randomTensor([4, 7], 2);
  const labels = tensor('int64', [2, 3], [1, 6, -100, 0, 9, 3]); // 9 is outside the vocabulary: it counts for nothing

  it('equals MatMul + CrossEntropyLoss, and ∂loss/∂hidden their backward', () => {
    for (const reduction of ['mean', 'sum']) {
      const [loss, count, dh] = run('LMHeadCrossEntropy', [h, tensor('int64', [2, 3], [1, 6, -100, 0, 2, 3]), w], { reduction });
      const logits = run('MatMul', [h, w])[0]!;
      const l2 = tensor('int64', [2, 3], [1, 6, -100, 0, 2, 3]);
      const [want, wantCount] = run('CrossEntropyLoss', [logits, l2], { reduction });
      expect(loss!.data[0]).toBeCloseTo(want!.data[0]!, 12);
      expect(count!.data[0]).toBe(wantCount!.data[0]);
      const dlogits = run('CrossEntropyLossGrad', [tensor('float32', [], [1]), logits, l2], { reduction })[0]!;
      expectClose(dh!, run('MatMul', [dlogits, transpose(w)])[0]!, { rtol: 1e-12, atol: 1e-14 }, `dhidden (${reduction})`);
    }
  });

  it('gives the same with the weight in column blocks or transposed row blocks', () => {
    const whole = run('LMHeadCrossEntropy', [h, labels, w]);
    const blocks = run('LMHeadCrossEntropy', [h, labels, columns(w, 0, 2), columns(w, 2, 3), columns(w, 3, 7)]);
    const rows = run('LMHeadCrossEntropy', [h, labels, transpose(columns(w, 0, 4)), transpose(columns(w, 4, 7))], { transB: 1 });
    for (const got of [blocks, rows]) {
      expect(got[0]!.data[0]).toBeCloseTo(whole[0]!.data[0]!, 12);
      expect(got[1]!.data[0]).toBe(4);
      expectClose(got[2]!, whole[2]!, { rtol: 1e-12, atol: 1e-14 }, 'dhidden');
    }
  });

  it('checks its operands', () => {
    expect(() => run('LMHeadCrossEntropy', [h, labels, randomTensor([5, 7], 3)])).toThrow(/weight block 0 \[5,7\] must be \[4, V\]/);
    expect(() => run('LMHeadCrossEntropy', [h, tensor('int64', [6], [0, 0, 0, 0, 0, 0]), w])).toThrow(/labels of shape \[6\] do not match hidden/);
    expect(() => run('LMHeadCrossEntropy', [h, labels])).toThrow(/at least one weight block/);
  });
});

// ---------------------------------------------------------------------------------------------
// withLoss on real graphs

const noGpu = {} as GpuContext;
const load = (name: string): Graph => decodeOnnx(new Uint8Array(readFileSync(`tests/fixtures/${name}/onnx/model.onnx`)));

describe('withLoss and the fused head', () => {
  it('fuses the GPT-2 and Llama heads; the logits are no output of the training graph', () => {
    for (const name of ['gpt2', 'llama']) {
      const graph = load(name);
      const head = findLmHead(graph)!;
      expect(head.node.name).toBe('/lm_head/MatMul');
      const fused = withLoss(graph, 'CAUSAL_LM');
      expect(fused.nodes.filter((n) => n.opType === 'LMHeadCrossEntropy').map((n) => n.inputs[2])).toEqual([head.weight]);
      expect(fused.nodes.some((n) => n === head.node)).toBe(false);
      expect(fused.outputs.map((o) => o.name)).toEqual(['loss']);
      const plain = withLoss(graph, 'CAUSAL_LM', { fuseHead: false });
      expect(plain.nodes.some((n) => n.opType === 'LMHeadCrossEntropy')).toBe(false);
      expect(plain.outputs.map((o) => o.name)).toEqual(['logits', 'loss']);
      // A trainable head weight needs its gradient: the unfused loss.
      expect(withLoss(graph, 'CAUSAL_LM', { trainable: new Set([head.weight]) }).nodes.some((n) => n.opType === 'LMHeadCrossEntropy')).toBe(false);
    }
  });

  it('finds a Gemm transB head and refuses heads with a bias or a second reader', () => {
    const base = load('gpt2');
    const head = findLmHead(base)!;
    const gemm: Graph = { ...base, nodes: base.nodes.map((n) => (n === head.node ? { ...n, opType: 'Gemm', attrs: { transB: 1 } } : n)) };
    expect(findLmHead(gemm)).toMatchObject({ weight: head.weight, transB: true });
    const biased: Graph = { ...base, nodes: base.nodes.map((n) => (n === head.node ? { ...n, opType: 'Gemm', inputs: [...n.inputs, 'transformer.ln_f.bias'] } : n)) };
    expect(findLmHead(biased)).toBeUndefined();
    const read: Graph = { ...base, nodes: [...base.nodes, { name: 'probe', opType: 'Relu', domain: '', inputs: ['logits'], outputs: ['probe'], attrs: {} }] };
    expect(findLmHead(read)).toBeUndefined();
  });

  it('gives the unfused loss and IA3 gradients on the float64 executor (GPT-2, Llama; padding)', () => {
    for (const name of ['gpt2', 'llama']) {
      const graph = load(name);
      const modules = findModules(graph);
      const model = new Model(noGpu, graph, undefined, modules, detectModelType(modules, undefined));
      const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
      for (const t of peft.trainingModel().trainables) peft.setParamValues(t.name, Float32Array.from(randomTensor([t.param.values.length], 7, 0.5, 1.5).data));
      const { model: fused, trainables } = peft.trainingModel();
      const unfused = fused.withGraph(withLoss(peft.current().graph, 'CAUSAL_LM', { fuseHead: false }));
      const ids = randomInts([2, 6], 11, 1, 100);
      const mask = tensor('int64', [2, 6], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
      const labels = tensor('int64', [2, 6], Array.from(ids.data, (v, i) => (mask.data[i] ? v : -100)));
      const feeds: Record<string, { data: BigInt64Array; dims: number[] }> = {
        input_ids: { data: BigInt64Array.from(ids.data, (v) => BigInt(v)), dims: [2, 6] },
        attention_mask: { data: BigInt64Array.from(mask.data, (v) => BigInt(v)), dims: [2, 6] },
        labels: { data: BigInt64Array.from(labels.data, (v) => BigInt(v)), dims: [2, 6] },
      };
      if (name === 'llama') feeds.position_ids = { data: BigInt64Array.from({ length: 12 }, (_, i) => BigInt(i % 6)), dims: [2, 6] };
      const wrt = trainables.map((t) => t.name);
      const a = fused.lossAndGradientsReference(feeds, 'loss', wrt);
      const b = unfused.lossAndGradientsReference(feeds, 'loss', wrt);
      expect(a.loss).toBeCloseTo(b.loss, 10);
      for (const w of wrt) {
        const c = closeness(a.gradients.get(w)!, b.gradients.get(w)!, { rtol: 1e-9, atol: 1e-12 });
        expect(c.worst, `${name} ${w}: worst at ${c.at}, max |diff| ${c.maxAbs}`).toBeLessThanOrEqual(1);
      }
    }
  });
});
