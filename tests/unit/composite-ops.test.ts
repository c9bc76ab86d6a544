// Composite ops (Einsum, OneHot): each op's expansion into registry ops, specialised and run by the
// CPU executor, equals the op's own float64 reference (written from the ONNX definition) over the
// equations and attribute forms exporters use and the awkward ones (implicit outputs, ellipsis
// broadcasting, diagonals, summed letters, empty dims; OneHot's opset-9 and opset-11 index rules).
// The gradient of an expansion comes from its ops' rules: checked against the analytic gradient.
import { describe, expect, it } from 'vitest';
import { ShapeError, UnsupportedOpError } from '../../src/errors.js';
import type { Attrs, Graph } from '../../src/ir/graph.js';
import { tensor, type RefTensor } from '../../src/ir/tensor.js';
import { runReferenceGraph } from '../../src/onnx/executor.js';
import { specialize } from '../../src/onnx/specialize.js';
import { parseEinsum } from '../../src/ops/einsum.js';
import { OPS } from '../../src/ops/registry.js';
import type { OpContext, OpDef } from '../../src/ops/types.js';
import { buildBackward } from '../../src/autograd/grad.js';
import { expectClose, randomInts, randomTensor } from '../util/tensors.js';

/** A graph of one node over runtime inputs x0, x1, … (constant inputs become initializers). */
function oneNode(opType: string, inputs: (RefTensor | { constant: RefTensor })[], attrs: Attrs, opset = 17): Graph {
  const names = inputs.map((_, i) => `x${i}`);
  const initializers = new Map(
    inputs.flatMap((t, i) =>
      'constant' in t ? [[names[i]!, { name: names[i]!, dtype: t.constant.dtype, dims: t.constant.dims, data: Float64Array.from(t.constant.data) }] as const] : [],
    ),
  );
  return {
    name: opType,
    opsets: new Map([['', opset]]),
    irVersion: 8,
    producer: 'test',
    inputs: inputs.flatMap((t, i) => ('constant' in t ? [] : [{ name: names[i]!, dtype: t.dtype, dims: [...t.dims] }])),
    outputs: [{ name: 'y' }],
    initializers,
    nodes: [{ name: `${opType}_node`, opType, domain: '', inputs: names, outputs: ['y'], attrs }],
  };
}

/** Runs `opType` through its expansion (specialise + CPU executor) and through its own reference. */
function bothWays(opType: 'Einsum' | 'OneHot', inputs: (RefTensor | { constant: RefTensor })[], attrs: Attrs, opset = 17) {
  const g = oneNode(opType, inputs, attrs, opset);
  const feeds = Object.fromEntries(inputs.flatMap((t, i) => ('constant' in t ? [] : [[`x${i}`, t] as const])));
  const shapes = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.dims]));
  const spec = specialize(g, shapes);
  const expanded = runReferenceGraph(spec, feeds).y!;
  const ctx: OpContext = { opType, nodeName: `${opType}_node`, opset };
  const def: OpDef = OPS[opType];
  const direct = def.reference(inputs.map((t) => ('constant' in t ? t.constant : t)), attrs, ctx)[0]!;
  return { spec, expanded, direct };
}

const r = (dims: number[], seed: number): RefTensor => randomTensor(dims, seed);

describe('Einsum', () => {
  const cases: [string, number[][]][] = [
    ['i,j->ij', [[5], [3]]], // rotary table (transformers 4.28)
    ['bnqd,bnkd->bnqk', [[2, 3, 4, 8], [2, 3, 6, 8]]], // attention scores
    ['bnqk,bnkd->bnqd', [[2, 3, 4, 6], [2, 3, 6, 8]]], // attention mix
    ['bhqd,bhkd->bhqk', [[1, 2, 0, 4], [1, 2, 3, 4]]], // empty query rows
    ['ij->ji', [[3, 4]]],
    ['ij->i', [[3, 4]]],
    ['ij->', [[3, 4]]],
    ['ii->i', [[4, 4]]], // diagonal
    ['ii', [[3, 3]]], // implicit trace
    ['ij,jk', [[3, 4], [4, 5]]], // implicit matmul
    ['ba,ca', [[2, 3], [4, 3]]], // implicit, sorted output 'bc'
    ['...ij,...jk->...ik', [[2, 1, 3, 4], [5, 4, 2]]], // ellipsis broadcast 1 against 5
    ['bij,bjk,bkl->bil', [[2, 3, 4], [2, 4, 5], [2, 5, 2]]], // three operands
    ['abc,cd->abd', [[2, 3, 4], [4, 5]]], // a projection, the weight operand second
    ['i,i->', [[6], [6]]], // dot product
    ['bij,bkj->bik', [[2, 3, 0], [2, 4, 0]]], // empty summed dim: zeros
    ['Ab,bC->AC', [[2, 3], [3, 2]]], // upper-case letters
  ];
  for (const [eq, dims] of cases) {
    it(`'${eq}' on ${dims.map((d) => `[${d}]`).join(' ')}: expansion equals the definition`, () => {
      const { spec, expanded, direct } = bothWays(
        'Einsum',
        dims.map((d, i) => r(d, 10 + i)),
        { equation: eq },
      );
      expect(spec.nodes.some((n) => n.opType === 'Einsum')).toBe(false);
      expectClose(expanded, direct, { rtol: 1e-12, atol: 1e-12 }, eq);
    });
  }

  it('lowers the attention equations to one batched matmul each, with no transpose', () => {
    const { spec } = bothWays('Einsum', [r([2, 3, 4, 8], 1), r([2, 3, 6, 8], 2)], { equation: 'bnqd,bnkd->bnqk' });
    expect(spec.nodes.map((n) => n.opType)).toEqual(['FusedMatMul']);
    expect(spec.nodes[0]!.attrs).toEqual({ transA: 0, transB: 1 });
  });

  it('folds a product of constants on the CPU (the rotary table)', () => {
    const pos = tensor('float32', [4], [0, 1, 2, 3]);
    const { spec, expanded, direct } = bothWays('Einsum', [{ constant: pos }, { constant: r([3], 3) }], { equation: 'i,j->ij' });
    expect(spec.nodes).toHaveLength(0);
    expectClose(expanded, direct, { rtol: 0, atol: 0 });
  });

  it('refuses malformed equations with a ShapeError naming the node, and integer operands', () => {
    const ctx: OpContext = { opType: 'Einsum', nodeName: 'e', opset: 12 };
    expect(() => parseEinsum('ij,jk->ik', [[2, 3]], ctx)).toThrow(/2 input terms, the node has 1 input/);
    expect(() => parseEinsum('ij->ij', [[2, 3, 4]], ctx)).toThrow(/does not fit input 0 of rank 3/);
    expect(() => parseEinsum('ij,jk->ik', [[2, 3], [4, 5]], ctx)).toThrow(/'j' is 3 in one place and 4/);
    expect(() => parseEinsum('ij->ik', [[2, 3]], ctx)).toThrow(/output letter 'k'/);
    expect(() => parseEinsum('i.j->ij', [[2, 3]], ctx)).toThrow(ShapeError);
    expect(() => parseEinsum('...i...->i', [[2, 3]], ctx)).toThrow(/more than one ellipsis/);
    const ints = tensor('int64', [2], [1, 2]);
    expect(() => OPS.Einsum.shape([ints, ints], { equation: 'i,i->' }, ctx)).toThrow(UnsupportedOpError);
  });

  it('has the gradient of its expansion: the CPU backward equals the analytic gradient', () => {
    const x = r([2, 3, 4], 21);
    const w = r([4, 5], 22);
    const g = oneNode('Einsum', [x, { constant: w }], { equation: 'abc,cd->abd' });
    // Loss = Σ y ⊙ c for a fixed random c: an explicit reduction the builder can differentiate.
    const c = r([2, 3, 5], 23);
    const graph: Graph = {
      ...g,
      initializers: new Map([...g.initializers, ['c', { name: 'c', dtype: 'float32', dims: [2, 3, 5], data: Float64Array.from(c.data) }]]),
      outputs: [{ name: 'loss' }],
      nodes: [...g.nodes, { name: 'mul', opType: 'Mul', domain: '', inputs: ['y', 'c'], outputs: ['yc'], attrs: {} }, { name: 'sum', opType: 'ReduceSum', domain: '', inputs: ['yc'], outputs: ['loss'], attrs: { keepdims: 0 } }],
    };
    const spec = specialize(graph, { x0: x.dims });
    const back = buildBackward(spec, 'loss', ['x0']);
    const grad = runReferenceGraph(back.graph, { x0: x })['grad/x0']!;
    // d loss / d x[a,b,c] = Σ_d w[c,d]·c[a,b,d]
    const want = tensor('float32', x.dims);
    for (let a = 0; a < 2; a++) for (let b = 0; b < 3; b++) for (let k = 0; k < 4; k++) {
      let s = 0;
      for (let d = 0; d < 5; d++) s += w.data[k * 5 + d]! * c.data[(a * 3 + b) * 5 + d]!;
      want.data[(a * 3 + b) * 4 + k] = s;
    }
    expectClose(grad, want, { rtol: 1e-12, atol: 1e-12 });
  });
});

describe('OneHot', () => {
  const values = tensor('float32', [2], [-1, 3]);
  it('expansion equals the definition at opset 11: negative indices count from the end, others are off', () => {
    const idx = tensor('int64', [2, 4], [0, 2, -1, -3, 3, 7, -4, 1]);
    for (const axis of [-1, 0, 1, -2]) {
      const { expanded, direct } = bothWays('OneHot', [idx, { constant: tensor('int64', [], [3]) }, { constant: values }], { axis }, 11);
      expectClose(expanded, direct, { rtol: 0, atol: 0 }, `axis ${axis}`);
    }
    const { direct } = bothWays('OneHot', [idx, { constant: tensor('int64', [], [3]) }, { constant: values }], {}, 11);
    expect(Array.from(direct.data.slice(0, 12))).toEqual([3, -1, -1, -1, -1, 3, -1, -1, 3, 3, -1, -1]);
  });

  it('before opset 11 a negative index is out of range (all off)', () => {
    const idx = tensor('int32', [3], [-1, 1, 2]);
    const { expanded, direct } = bothWays('OneHot', [idx, { constant: tensor('float32', [1], [3]) }, { constant: values }], {}, 10);
    expect(Array.from(direct.data)).toEqual([-1, -1, -1, -1, 3, -1, -1, -1, 3]);
    expectClose(expanded, direct, { rtol: 0, atol: 0 });
  });

  it('truncates float indices like a C cast, and takes int32 indices (TensorFlow exports)', () => {
    const idx = tensor('float32', [3], [1.7, -0.5, 2.2]);
    const { expanded, direct } = bothWays('OneHot', [idx, { constant: tensor('int64', [], [3]) }, { constant: values }], {}, 11);
    expectClose(expanded, direct, { rtol: 0, atol: 0 });
    expect(Array.from(direct.data)).toEqual([-1, 3, -1, 3, -1, -1, -1, -1, 3]);
    const segs = randomInts([2, 5], 4, 0, 2, 'int32');
    const two = bothWays('OneHot', [segs, { constant: tensor('int32', [], [2]) }, { constant: values }], { axis: -1 }, 10);
    expectClose(two.expanded, two.direct, { rtol: 0, atol: 0 });
  });

  it('needs depth known at specialisation and a two-element values tensor', () => {
    const ctx: OpContext = { opType: 'OneHot', nodeName: 'o', opset: 11 };
    const idx = { dtype: 'int64' as const, dims: [2] };
    expect(() => OPS.OneHot.shape([idx, { dtype: 'int64', dims: [] }, { dtype: 'float32', dims: [2] }], {}, ctx)).toThrow(UnsupportedOpError);
    expect(() => OPS.OneHot.shape([idx, { dtype: 'int64', dims: [], value: tensor('int64', [], [3]) }, { dtype: 'float32', dims: [3] }], {}, ctx)).toThrow(/2-element/);
    expect(() => OPS.OneHot.shape([idx, { dtype: 'int64', dims: [], value: tensor('int64', [], [3]) }, { dtype: 'float32', dims: [2] }], { axis: 3 }, ctx)).toThrow(/axis 3 is out of range/);
  });
});
