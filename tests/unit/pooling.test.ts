// SEQ_CLS pooling of a decoder's per-position class scores without a GPU: on a graph whose logits
// are x ⊙ w (w a trainable initializer), withLoss's loss for every pooling ('last', 'mean', 'sum',
// 'max') on the float64 executor equals the cross-entropy of the scores pooled by hand over each
// row's real tokens (padding left out), at opset 17 (ReduceMax's axes an attribute) and 18 (an
// input); its gradient in w equals central finite differences; padding never wins the max.
import { describe, expect, it } from 'vitest';
import { POOLINGS, withLoss, type Pooling } from '../../src/autograd/loss.js';
import type { GpuContext } from '../../src/gpu/device.js';
import type { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/model.js';
import { closeness, randomTensor } from '../util/tensors.js';

const B = 3;
const T = 4;
const C = 3;
const lengths = [4, 2, 1];
const labels = [2, 0, 1];
const noGpu = {} as GpuContext;

/** logits [B, T, C] = x ⊙ w, with opset `opset`. */
function scoresGraph(opset: number, w: Float32Array): Graph {
  return {
    name: 'scores',
    opsets: new Map([['', opset]]),
    irVersion: 8,
    producer: 'pooling.test',
    inputs: [
      { name: 'x', dtype: 'float32', dims: [B, T, C] },
      { name: 'attention_mask', dtype: 'int64', dims: [B, T] },
    ],
    outputs: [{ name: 'logits', dtype: 'float32', dims: [B, T, C] }],
    initializers: new Map([['w', { name: 'w', dtype: 'float32', dims: [B, T, C], data: w }]]),
    nodes: [{ name: 'scores', opType: 'Mul', domain: '', inputs: ['x', 'w'], outputs: ['logits'], attrs: {} }],
  };
}

/** The pooled scores of one row's real tokens, as `pooling` says, in float64. */
function pool(logits: ArrayLike<number>, b: number, pooling: Pooling): number[] {
  const at = (t: number, c: number): number => logits[(b * T + t) * C + c]!;
  const len = lengths[b]!;
  return Array.from({ length: C }, (_, c) => {
    const real = Array.from({ length: len }, (_, t) => at(t, c));
    if (pooling === 'last') return real[len - 1]!;
    if (pooling === 'max') return Math.max(...real);
    const sum = real.reduce((s, v) => s + v, 0);
    return pooling === 'mean' ? sum / len : sum;
  });
}

function crossEntropy(rows: number[][]): number {
  return rows.reduce((s, row, b) => {
    const max = Math.max(...row);
    return s + max + Math.log(row.reduce((e, v) => e + Math.exp(v - max), 0)) - row[labels[b]!]!;
  }, 0) / rows.length;
}

const x = randomTensor([B, T, C], 3, -2, 2);
// Padded positions hold the largest scores, so a max that read them would be caught.
for (let b = 0; b < B; b++) for (let t = lengths[b]!; t < T; t++) for (let c = 0; c < C; c++) x.data[(b * T + t) * C + c] = 50;
const feeds = {
  x: { data: Float32Array.from(x.data), dims: [B, T, C] },
  attention_mask: { data: BigInt64Array.from({ length: B * T }, (_, i) => (i % T < lengths[Math.floor(i / T)]! ? 1n : 0n)), dims: [B, T] },
  labels: { data: BigInt64Array.from(labels.map(BigInt)), dims: [B] },
};

function lossAndGradient(opset: number, pooling: Pooling, w: Float32Array): { loss: number; gradient: Float64Array } {
  const graph = withLoss(scoresGraph(opset, w), 'SEQ_CLS', { pooling });
  const { loss, gradients } = new Model(noGpu, graph, undefined, [], undefined).lossAndGradientsReference(feeds, 'loss', ['w']);
  return { loss, gradient: gradients.get('w')! };
}

describe('SEQ_CLS pooling of per-position scores (float64 executor)', () => {
  const w = Float32Array.from(randomTensor([B, T, C], 5, 0.5, 1.5).data);
  for (const opset of [17, 18]) {
    for (const pooling of POOLINGS) {
      it(`${pooling}, opset ${opset}: the loss of the scores pooled over the real tokens; the gradient equals finite differences`, () => {
        const { loss, gradient } = lossAndGradient(opset, pooling, w);
        const logits = Array.from(x.data, (v, i) => v * w[i]!);
        expect(loss).toBeCloseTo(crossEntropy(lengths.map((_, b) => pool(logits, b, pooling))), 10);
        // Central differences in w (float64 forward through the same graph; w's float32 storage
        // limits h, hence the tolerance).
        const h = 1e-3;
        const numeric = Array.from(w, (_, i) => {
          const plus = Float32Array.from(w);
          const minus = Float32Array.from(w);
          plus[i]! += h;
          minus[i]! -= h;
          return (lossAndGradient(opset, pooling, plus).loss - lossAndGradient(opset, pooling, minus).loss) / (plus[i]! - minus[i]!);
        });
        const c = closeness(gradient, numeric, { rtol: 1e-3, atol: 1e-5 });
        expect(c.worst, `worst at ${c.at}, max |diff| ${c.maxAbs}`).toBeLessThanOrEqual(1);
        // Padding gets no gradient; every real position does under the sum.
        for (let b = 0; b < B; b++) for (let t = lengths[b]!; t < T; t++) for (let k = 0; k < C; k++) expect(Math.abs(gradient[(b * T + t) * C + k]!)).toBe(0);
        if (pooling === 'sum') for (let b = 0; b < B; b++) for (let t = 0; t < lengths[b]!; t++) expect(gradient[(b * T + t) * C]).not.toBe(0);
      });
    }
  }
});
