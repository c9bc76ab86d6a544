// compile/views.ts on hand-built graphs: which layout chains a product reads or writes as a strided
// view, the strides it derives, and the chains it must leave as copies. The float64 executor runs
// the rewritten graph and the original alike; the results must be equal bit for bit.
import { describe, expect, it } from 'vitest';
import { foldViews } from '../../src/compile/views.js';
import type { Attrs } from '../../src/ir/graph.js';
import type { SpecializedGraph, SpecNode } from '../../src/ir/static-graph.js';
import { tensor, type TensorType } from '../../src/ir/tensor.js';
import { runReferenceGraph } from '../../src/onnx/executor.js';
import { randomTensor } from '../util/tensors.js';

const [B, T, H, D] = [2, 5, 3, 4];
const f32 = (dims: number[]): TensorType => ({ dtype: 'float32', dims });
const node = (opType: string, inputs: string[], outputs: string[], attrs: Attrs = {}): SpecNode => ({ name: outputs[0]!, opType, domain: '', inputs, outputs, attrs, opset: 17 });
const shape = (name: string, dims: number[]) => {
  const t = tensor('int64', [dims.length]);
  dims.forEach((d, i) => (t.data[i] = d));
  return { name, t };
};

/** x [B,T,3·H·D] → Split → Reshape → Transpose (q, k; k's transposed to [B,H,D,T]) → q·kᵀ, then `tail`. */
function attention(tail: (scores: string, types: Map<string, TensorType>) => SpecNode[]) {
  const types = new Map<string, TensorType>([['x', f32([B, T, 3 * H * D])]]);
  const shapes = [shape('heads', [B, T, H, D]), shape('split', [H * D, H * D, H * D])];
  for (const s of shapes) types.set(s.name, { dtype: 'int64', dims: s.t.dims });
  const nodes: SpecNode[] = [node('Split', ['x', 'split'], ['q2', 'k2', 'v2'], { axis: 2 })];
  for (const v of ['q2', 'k2', 'v2']) types.set(v, f32([B, T, H * D]));
  for (const [v, perm] of [['q', [0, 2, 1, 3]], ['k', [0, 2, 3, 1]]] as const) {
    nodes.push(node('Reshape', [`${v}2`, 'heads'], [`${v}4`]), node('Transpose', [`${v}4`], [`${v}h`], { perm: [...perm] }));
    types.set(`${v}4`, f32([B, T, H, D]));
    types.set(`${v}h`, f32(perm.map((p) => [B, T, H, D][p]!)));
  }
  nodes.push(node('MatMul', ['qh', 'kh'], ['scores']));
  types.set('scores', f32([B, H, T, T]));
  nodes.push(...tail('scores', types));
  const graph: SpecializedGraph = {
    source: { name: 'views', opsets: new Map([['', 17]]), irVersion: 8, producer: 'test', inputs: [], outputs: [], initializers: new Map(), nodes: [] },
    key: 'views',
    inputs: [{ name: 'x', type: types.get('x')! }],
    outputs: [nodes[nodes.length - 1]!.outputs[0]!],
    outputNames: ['y'],
    nodes,
    types,
    constants: new Map(shapes.map((s) => [s.name, s.t])),
    weights: [],
    resident: new Map(),
    symbols: {},
  };
  return graph;
}

const feeds = { x: randomTensor([B, T, 3 * H * D], 7), w: randomTensor([T, 2], 8) };
const same = (g: SpecializedGraph, folded: SpecializedGraph) => {
  const inputs = g.inputs.map((i) => ({ name: i.name, dtype: i.type.dtype, dims: [...i.type.dims] }));
  const spec = { ...g, source: { ...g.source, inputs } };
  const given = Object.fromEntries(g.inputs.map((i) => [i.name, feeds[i.name as 'x' | 'w']]));
  const want = runReferenceGraph(spec, given);
  const got = runReferenceGraph({ ...spec, nodes: folded.nodes }, given);
  expect(got[g.outputs[0]!]!.data).toEqual(want[g.outputs[0]!]!.data);
};

describe('strided views (compile/views.ts)', () => {
  it('reads q and kᵀ from the projection and writes a Transpose → Reshape result in place', () => {
    const g = attention((s, types) => {
      types.set('st', f32([B, T, H, T]));
      types.set('y', f32([B, T, H * T]));
      types.set('flat', { dtype: 'int64', dims: [3] });
      return [node('Transpose', [s], ['st'], { perm: [0, 2, 1, 3] }), node('Reshape', ['st', 'flat'], ['y'])];
    });
    (g.constants as Map<string, unknown>).set('flat', shape('flat', [B, T, H * T]).t);
    const folded = foldViews(g);
    expect(folded.nodes.map((n) => n.opType)).toEqual(['FusedMatMul', 'Reshape']);
    const mm = folded.nodes[0]!;
    expect(mm.inputs).toEqual(['x', 'x']);
    // q: [B,H,T,D] at rows of 3·H·D, heads D apart; kᵀ: [B,H,D,T], its last dim the strided one.
    expect(mm.attrs).toMatchObject({ aShape: [B, H, T, D], aStrides: [T * 3 * H * D, D, 3 * H * D, 1], aOffset: 0 });
    expect(mm.attrs).toMatchObject({ bShape: [B, H, D, T], bStrides: [T * 3 * H * D, D, 1, 3 * H * D], bOffset: H * D });
    expect(mm.attrs).toMatchObject({ yShape: [B, T, H, T], yStrides: [T * H * T, T, H * T, 1] });
    same(g, folded);
  });

  it('keeps copies a chain needs: a reader that is no product, a Reshape merging dims a Transpose separated', () => {
    // q's and k's chains also feed an element-wise op: the copies stay, the product reads them.
    const shared = attention((s, types) => {
      types.set('y', f32([B, H, T, D]));
      return [node('Add', ['qh', 'qh'], ['qq']), node('MatMul', [s, 'qq'], ['y'])];
    });
    (shared.types as Map<string, TensorType>).set('qq', f32([B, H, T, D]));
    const a = foldViews(shared);
    const scores = a.nodes.find((n) => n.outputs[0] === 'scores')!;
    expect(scores.inputs[0]).toBe('qh');
    expect(scores.attrs.aShape).toBeUndefined();
    expect(scores.attrs.bShape).toBeDefined(); // k's chain has the product as its only reader
    expect(a.nodes.filter((n) => n.opType === 'Transpose').length).toBe(1);
    same(shared, a);
    // x [B,T,C] transposed to [B,C,T] and merged into rows [B·C, T]: b and c step by T·C and 1,
    // which no single row stride joins, so the Transpose stays a copy.
    const C = 3 * H * D;
    const types = new Map<string, TensorType>([['x', f32([B, T, C])], ['w', f32([T, 2])], ['xt', f32([B, C, T])], ['m', f32([B * C, T])], ['y', f32([B * C, 2])], ['rows', { dtype: 'int64', dims: [2] }]]);
    const merged: SpecializedGraph = {
      ...shared,
      inputs: [{ name: 'x', type: types.get('x')! }, { name: 'w', type: types.get('w')! }],
      outputs: ['y'],
      nodes: [node('Transpose', ['x'], ['xt'], { perm: [0, 2, 1] }), node('Reshape', ['xt', 'rows'], ['m']), node('MatMul', ['m', 'w'], ['y'])],
      types,
      constants: new Map([['rows', shape('rows', [B * C, T]).t]]),
    };
    const b = foldViews(merged);
    expect(b.nodes.map((n) => n.opType)).toEqual(['Transpose', 'Reshape', 'MatMul']);
    same(merged, b);
  });
});
