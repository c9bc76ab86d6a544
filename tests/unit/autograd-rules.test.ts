// Every VJP rule against central finite differences: for one op on small random inputs, the
// backward graph of L = Σ_k Σ w_k ⊙ op(x)_k (w_k random) is run on the float64 CPU executor and its
// gradient for each float input compared with (L(x + h e_i) − L(x − h e_i)) / 2h of the forward.
// Each case is checked with every float input trainable and with each input trainable alone, which
// exercises the `needs` pruning of every rule (a frozen input's gradient is never computed).
import { describe, expect, it } from 'vitest';
import { extendGraph } from '../../src/autograd/builder.js';
import { buildBackward, gradName } from '../../src/autograd/grad.js';
import { FLOAT_TYPES } from '../../src/ir/dtype.js';
import type { Graph, Attrs } from '../../src/ir/graph.js';
import type { SpecializedGraph } from '../../src/ir/static-graph.js';
import { tensor, type RefTensor, type TensorType, type ValueInfo } from '../../src/ir/tensor.js';
import { runReferenceGraph } from '../../src/onnx/executor.js';
import { OPS, type OpType } from '../../src/ops/registry.js';
import type { OpDef } from '../../src/ops/types.js';
import { closeness, randomTensor, rng } from '../util/tensors.js';
import { DEFAULT_TRAITS } from '../../src/gpu/traits.js';

interface In {
  t: RefTensor;
  /** A compile-time constant (axes, shapes, indices, or a frozen float operand). */
  constant?: boolean;
}

interface Case {
  name: string;
  op: OpType;
  /** An input, omitted (undefined), or the index of an earlier input read again. */
  inputs: (In | number | undefined)[];
  attrs?: Attrs;
  opset?: number;
  /** Outputs the node declares (default: all). */
  outputs?: number;
  /** Outputs the loss reads (default: every float output). */
  lossOutputs?: number[];
}

const H = 1e-5;
const TOL = { rtol: 1e-5, atol: 1e-7 };

let seed = 1;
const rand = (dims: number[], lo = -1, hi = 1, dtype: 'float32' | 'float64' = 'float32'): In => ({ t: randomTensor(dims, seed++, lo, hi, dtype) });
/** Random values with |x| ≥ 0.1: away from the kinks of Relu, Abs and friends. */
const awayFromZero = (dims: number[]): In => {
  const r = rng(seed++);
  const t = tensor('float32', dims);
  for (let i = 0; i < t.data.length; i++) t.data[i] = Math.fround((r() < 0.5 ? -1 : 1) * (0.1 + 0.9 * r()));
  return { t };
};
const ints = (values: number[], dims = [values.length]): In => ({ t: tensor('int64', dims, values), constant: true });
const constF = (dims: number[], values?: number[]): In => ({ t: values ? tensor('float32', dims, values) : randomTensor(dims, seed++), constant: true });
const bools = (dims: number[], values: number[]): In => ({ t: tensor('bool', dims, values), constant: true });

/** A specialised graph with the case's inputs (runtime floats and constants) and no nodes. */
function baseGraph(c: Case): { spec: SpecializedGraph; names: (string | undefined)[]; feeds: Record<string, RefTensor> } {
  const types = new Map<string, TensorType>();
  const constants = new Map<string, RefTensor>();
  const feeds: Record<string, RefTensor> = {};
  const runtime: { name: string; type: TensorType }[] = [];
  const names: (string | undefined)[] = [];
  c.inputs.forEach((inp, i) => {
    if (inp === undefined || typeof inp === 'number') {
      names.push(inp === undefined ? undefined : names[inp]);
      return;
    }
    const name = `in${i}`;
    types.set(name, { dtype: inp.t.dtype, dims: inp.t.dims });
    if (inp.constant || !FLOAT_TYPES.has(inp.t.dtype)) constants.set(name, inp.t);
    else {
      runtime.push({ name, type: { dtype: inp.t.dtype, dims: inp.t.dims } });
      feeds[name] = inp.t;
    }
    names.push(name);
  });
  const source: Graph = {
    name: c.name,
    opsets: new Map([['', c.opset ?? 17]]),
    irVersion: 8,
    producer: 'autograd-rules.test',
    inputs: runtime.map((r) => ({ name: r.name, dtype: r.type.dtype, dims: r.type.dims })),
    outputs: [],
    initializers: new Map(),
    nodes: [],
  };
  const spec: SpecializedGraph = {
    source,
    key: c.name,
    inputs: runtime,
    outputs: [],
    outputNames: [],
    nodes: [],
    types,
    constants,
    weights: [],
    resident: new Map(),
    symbols: {},
  };
  return { spec, names, feeds };
}

/** The case's op node plus the weighted-sum loss, as graph output 'loss'. */
function lossGraph(c: Case): { spec: SpecializedGraph; feeds: Record<string, RefTensor>; trainable: string[] } {
  const { spec, names, feeds } = baseGraph(c);
  const withLoss = extendGraph(
    spec,
    (b) => {
      const outs = b.emit(c.op, names, c.attrs ?? {}, { ...(c.opset ? { opset: c.opset } : {}), ...(c.outputs ? { outputs: c.outputs } : {}) });
      const read = c.lossOutputs ?? outs.map((_, k) => k).filter((k) => FLOAT_TYPES.has(b.type(outs[k]!).dtype));
      const terms = read.map((k) => {
        const t = b.type(outs[k]!);
        const w = b.constant(randomTensor(t.dims, seed++, -1, 1, t.dtype));
        return b.op('ReduceSum', [b.mul(outs[k]!, w)], { keepdims: 0 });
      });
      let loss = terms[0]!;
      for (const t of terms.slice(1)) loss = b.add(loss, t);
      return { loss };
    },
    'case',
  );
  return { spec: withLoss, feeds, trainable: Object.keys(feeds) };
}

function lossOf(spec: SpecializedGraph, feeds: Record<string, RefTensor>): number {
  return runReferenceGraph(spec, feeds).loss!.data[0]!;
}

function finiteDifference(spec: SpecializedGraph, feeds: Record<string, RefTensor>, name: string): Float64Array {
  const x = feeds[name]!;
  const g = new Float64Array(x.data.length);
  for (let i = 0; i < x.data.length; i++) {
    const probe = (d: number): number => {
      const data = x.data.slice();
      data[i] = data[i]! + d;
      return lossOf(spec, { ...feeds, [name]: { ...x, data } });
    };
    g[i] = (probe(H) - probe(-H)) / (2 * H);
  }
  return g;
}

function expectNear(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const { worst, at, maxAbs } = closeness(actual, expected, TOL);
  if (worst > 1) expect.fail(`${what}: element ${at} is ${actual[at]}, finite differences give ${expected[at]} (max abs err ${maxAbs.toExponential(3)})`);
}

/**
 * Lowers every backward node the way the plan compiler does (lowerings are pure data, no device
 * needed): a rule must only emit nodes the GPU can run, with the constants their lowerings read.
 */
function expectLowerable(graph: SpecializedGraph, from: number): void {
  for (const node of graph.nodes.slice(from)) {
    const def: OpDef = OPS[node.opType as OpType];
    expect(def.gpu, `${node.name} runs on the GPU`).not.toBe('fold');
    const infos = node.inputs.map((v): ValueInfo | undefined => {
      if (!v) return undefined;
      const value = graph.constants.get(v);
      return value ? { ...graph.types.get(v)!, value } : graph.types.get(v)!;
    });
    const ctx = { opType: node.opType, nodeName: node.name, opset: node.opset, numOutputs: node.outputs.length, device: DEFAULT_TRAITS };
    if (def.gpu !== 'fold') def.gpu(infos, node.outputs.map((o) => graph.types.get(o)!), node.attrs, ctx);
  }
}

function check(c: Case): void {
  const { spec, feeds, trainable } = lossGraph(c);
  expect(trainable.length, `${c.name}: has a trainable input`).toBeGreaterThan(0);
  const all = buildBackward(spec, 'loss', trainable);
  expectLowerable(all.graph, spec.nodes.length);
  const out = runReferenceGraph(all.graph, feeds);
  expect(out.loss!.data[0]).toBe(lossOf(spec, feeds)); // the forward part is unchanged
  for (const name of trainable) {
    const fd = finiteDifference(spec, feeds, name);
    const g = out[gradName(name)]!;
    expect(g.dims, `${c.name} d/${name}: dims`).toEqual(feeds[name]!.dims);
    expectNear(g.data, fd, `${c.name} d/${name}`);
    if (trainable.length > 1) {
      // Alone: the other inputs are frozen, and the gradient is the same.
      const one = buildBackward(spec, 'loss', [name]);
      expectNear(runReferenceGraph(one.graph, feeds)[gradName(name)]!.data, g.data, `${c.name} d/${name} (alone)`);
      expect(one.graph.nodes.length, `${c.name}: fewer nodes for one input`).toBeLessThanOrEqual(all.graph.nodes.length);
    }
  }
}

function suite(title: string, cases: Case[]): void {
  describe(title, () => {
    for (const c of cases) it(c.name, () => check(c));
  });
}

const unary = (op: OpType, x: () => In = () => rand([2, 3]), extra: Partial<Case> = {}): Case => ({ name: op, op, inputs: [x()], ...extra });
const positive = (): In => rand([2, 3], 0.5, 2);

suite('unary rules', [
  unary('Exp'),
  unary('Log', positive),
  unary('Sqrt', positive),
  unary('Neg'),
  unary('Abs', () => awayFromZero([2, 3])),
  unary('Erf'),
  unary('Reciprocal', positive),
  unary('Tanh'),
  unary('Sigmoid'),
  unary('Relu', () => awayFromZero([3, 4])),
  unary('Sin'),
  unary('Cos'),
  unary('Softplus', () => rand([2, 3], -3, 3)),
  { ...unary('Gelu', () => rand([2, 5], -3, 3)), name: 'Gelu (erf)', opset: 20 },
  { ...unary('Gelu', () => rand([2, 5], -3, 3)), name: 'Gelu (tanh)', opset: 20, attrs: { approximate: 'tanh' } },
  { name: 'Cast float32 → float64', op: 'Cast', inputs: [rand([2, 3])], attrs: { to: 11 } },
  { name: 'Cast float64 → float64', op: 'Cast', inputs: [rand([3], -1, 1, 'float64')], attrs: { to: 11 } },
]);

suite('binary and variadic rules (with broadcasting)', [
  { name: 'Add [2,3,4] + [3,1]', op: 'Add', inputs: [rand([2, 3, 4]), rand([3, 1])] },
  { name: 'Mul x · x (one value read twice)', op: 'Mul', inputs: [rand([2, 3]), 0] },
  { name: 'Sub [2,3] − [2,1,3]', op: 'Sub', inputs: [rand([2, 3]), rand([2, 1, 3])] },
  { name: 'Mul [2,3,4] · [4]', op: 'Mul', inputs: [rand([2, 3, 4]), rand([4])] },
  { name: 'Mul by a constant', op: 'Mul', inputs: [rand([2, 3]), constF([])] },
  { name: 'Div [2,3] / [3]', op: 'Div', inputs: [rand([2, 3]), rand([3], 0.5, 2)] },
  { name: 'Div [1] / [2,3]', op: 'Div', inputs: [rand([1]), rand([2, 3], 0.5, 2)] },
  { name: 'Pow x^2', op: 'Pow', inputs: [rand([2, 3]), constF([], [2])] },
  { name: 'Pow x^3 (int64 exponent)', op: 'Pow', inputs: [rand([2, 3]), { t: tensor('int64', [], [3]), constant: true }] },
  { name: 'Pow x^0.5', op: 'Pow', inputs: [rand([2, 3], 0.5, 2), constF([], [0.5])] },
  { name: 'Pow x^-1.5', op: 'Pow', inputs: [rand([2, 3], 0.5, 2), constF([1], [-1.5])] },
  { name: 'Pow x^1', op: 'Pow', inputs: [rand([2, 3]), constF([], [1])] },
  { name: 'Pow a^b, both runtime and broadcast', op: 'Pow', inputs: [rand([2, 3], 0.5, 1.5), rand([3], -2, 2)] },
  { name: 'Min of 2 (broadcast)', op: 'Min', inputs: [rand([2, 3]), rand([3])] },
  { name: 'Max of 3', op: 'Max', inputs: [rand([2, 3]), rand([2, 3]), rand([1, 3])] },
  { name: 'Max of 1', op: 'Max', inputs: [rand([4])] },
  { name: 'Sum of 3', op: 'Sum', inputs: [rand([2, 3]), rand([3]), rand([2, 1])] },
  { name: 'Mean of 2', op: 'Mean', inputs: [rand([2, 3]), rand([2, 3])] },
  { name: 'Where (condition broadcast)', op: 'Where', inputs: [bools([3], [1, 0, 1]), rand([2, 3]), rand([2, 1])] },
  { name: 'Clip with constant bounds', op: 'Clip', opset: 13, inputs: [rand([3, 4]), constF([], [-0.5]), constF([], [0.5])] },
  { name: 'Clip with trainable bounds', op: 'Clip', opset: 13, inputs: [rand([3, 4]), rand([], -0.6, -0.4), rand([], 0.4, 0.6)] },
  { name: 'Clip with max only', op: 'Clip', opset: 13, inputs: [rand([3, 4]), undefined, constF([], [0.3])] },
  { name: 'Clip-6 attributes', op: 'Clip', opset: 6, inputs: [rand([3, 4])], attrs: { min: -0.4, max: 0.6 } },
]);

suite('backward helpers (linear in dy)', [
  { name: 'GeluGrad', op: 'GeluGrad', inputs: [rand([2, 3]), constF([2, 3])], attrs: { approximate: 'tanh' } },
  { name: 'SigmoidGrad', op: 'SigmoidGrad', inputs: [rand([2, 3]), constF([2, 3])] },
  { name: 'TanhGrad', op: 'TanhGrad', inputs: [rand([2, 3]), constF([2, 3])] },
  { name: 'ReluGrad (x: zero gradient)', op: 'ReluGrad', inputs: [rand([2, 3]), awayFromZero([2, 3])] },
  { name: 'ErfGrad', op: 'ErfGrad', inputs: [rand([2, 3]), constF([2, 3])] },
  { name: 'SliceGrad', op: 'SliceGrad', inputs: [rand([2, 2])], attrs: { shape: [4, 3], starts: [3, 0], ends: [-1, 3], axes: [0, 1], steps: [-2, 2] } },
  { name: 'SumToShape', op: 'SumToShape', inputs: [rand([2, 3, 4])], attrs: { shape: [3, 1] } },
  { name: 'RotaryEmbeddingGrad', op: 'RotaryEmbeddingGrad', inputs: [rand([2, 3, 4]), constF([3, 4]), constF([3, 4])] },
]);

suite('IA3', [
  { name: 'IA3Scale x and two vectors', op: 'IA3Scale', inputs: [rand([2, 3, 4]), rand([4, 1], 0.5, 1.5), rand([1, 4], 0.5, 1.5)] },
  { name: 'IA3Scale with a frozen vector', op: 'IA3Scale', inputs: [rand([5, 3]), constF([3, 1])] },
  { name: 'IA3Scale of a frozen input', op: 'IA3Scale', inputs: [constF([2, 6]), rand([6])] },
]);

suite('matrix products', [
  { name: 'MatMul [2,3,4]·[4,5]', op: 'MatMul', inputs: [rand([2, 3, 4]), rand([4, 5])] },
  { name: 'MatMul [3,4]·[2,4,5] (A broadcast)', op: 'MatMul', inputs: [rand([3, 4]), rand([2, 4, 5])] },
  { name: 'MatMul [2,1,3,4]·[3,4,2] (both broadcast)', op: 'MatMul', inputs: [rand([2, 1, 3, 4]), rand([3, 4, 2])] },
  { name: 'MatMul [4]·[2,4,5] (1-D A)', op: 'MatMul', inputs: [rand([4]), rand([2, 4, 5])] },
  { name: 'MatMul [2,3,4]·[4] (1-D B)', op: 'MatMul', inputs: [rand([2, 3, 4]), rand([4])] },
  { name: 'MatMul [4]·[4] (dot)', op: 'MatMul', inputs: [rand([4]), rand([4])] },
  { name: 'Gemm', op: 'Gemm', inputs: [rand([3, 4]), rand([4, 5]), rand([5])], attrs: { alpha: 0.5, beta: 2 } },
  { name: 'Gemm transA, C [3,1]', op: 'Gemm', inputs: [rand([4, 3]), rand([4, 5]), rand([3, 1])], attrs: { transA: 1 } },
  { name: 'Gemm transB, scalar C', op: 'Gemm', inputs: [rand([3, 4]), rand([5, 4]), rand([])], attrs: { transB: 1, beta: 0.5 } },
  { name: 'Gemm transA transB, no C', op: 'Gemm', inputs: [rand([4, 3]), rand([5, 4])], attrs: { transA: 1, transB: 1, alpha: 1.5 } },
  ...[0, 1].flatMap((tA) =>
    [0, 1].map(
      (tB): Case => ({
        name: `FusedMatMul transA=${tA} transB=${tB}, bias, inScale, outScale`,
        op: 'FusedMatMul',
        inputs: [rand(tA ? [2, 4, 3] : [2, 3, 4]), rand(tB ? [5, 4] : [4, 5]), rand([5]), rand([4, 1], 0.5, 1.5), rand([1, 5], 0.5, 1.5)],
        attrs: { transA: tA, transB: tB, alpha: 0.75 },
      }),
    ),
  ),
  { name: 'FusedMatMul batched B, transB', op: 'FusedMatMul', inputs: [rand([2, 3, 4]), rand([2, 5, 4]), undefined, rand([4])], attrs: { transB: 1 } },
  { name: 'FusedMatMul A broadcast, inScale', op: 'FusedMatMul', inputs: [rand([3, 4]), rand([2, 4, 5]), undefined, rand([4])] },
  { name: 'FusedMatMul frozen scales', op: 'FusedMatMul', inputs: [rand([2, 3, 4]), constF([4, 5]), constF([5]), constF([4]), constF([5])] },
]);

suite('softmax and normalisation', [
  { name: 'Softmax axis 1 (opset 13)', op: 'Softmax', opset: 13, inputs: [rand([2, 3, 4], -2, 2)], attrs: { axis: 1 } },
  { name: 'Softmax-11 axis 1 (2-D coercion)', op: 'Softmax', opset: 11, inputs: [rand([2, 3, 4], -2, 2)], attrs: { axis: 1 } },
  { name: 'LogSoftmax axis -1', op: 'LogSoftmax', opset: 13, inputs: [rand([2, 3, 4], -2, 2)] },
  { name: 'LogSoftmax-11 default axis', op: 'LogSoftmax', opset: 11, inputs: [rand([2, 3, 4], -2, 2)] },
  { name: 'MaskedSoftmax (mask broadcast, scale)', op: 'MaskedSoftmax', inputs: [rand([2, 3, 4], -2, 2), rand([2, 1, 4])], attrs: { scale: 0.5 } },
  {
    name: 'MaskedSoftmax (keep, divisor, fill: the fused attention pattern)',
    op: 'MaskedSoftmax',
    inputs: [rand([2, 3, 4], -2, 2), rand([2, 1, 4]), bools([3, 4], [1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0])],
    attrs: { scale: 0.5, divisor: 3, fill: -10000 },
  },
  { name: 'LayerNormalization last axis', op: 'LayerNormalization', inputs: [rand([2, 3, 5]), rand([5], 0.5, 1.5), rand([5])], outputs: 1 },
  { name: 'LayerNormalization axis 1, no bias', op: 'LayerNormalization', inputs: [rand([2, 3, 4]), rand([3, 4], 0.5, 1.5)], attrs: { axis: 1, epsilon: 1e-3 }, outputs: 1 },
  { name: 'LayerNormalization frozen scale', op: 'LayerNormalization', inputs: [rand([3, 4]), constF([4]), rand([1, 4])], outputs: 1 },
  { name: 'SimplifiedLayerNormalization', op: 'SimplifiedLayerNormalization', inputs: [rand([2, 3, 6]), rand([6], 0.5, 1.5)], outputs: 1 },
]);

suite('reductions', [
  { name: 'ReduceSum axes [1], keepdims 0', op: 'ReduceSum', inputs: [rand([2, 3, 4]), ints([1])], attrs: { keepdims: 0 } },
  { name: 'ReduceSum all', op: 'ReduceSum', inputs: [rand([2, 3])] },
  { name: 'ReduceSum noop_with_empty_axes', op: 'ReduceSum', inputs: [rand([2, 3]), ints([])], attrs: { noop_with_empty_axes: 1 } },
  { name: 'ReduceMean axes [0,2] (attribute, opset 13)', op: 'ReduceMean', inputs: [rand([2, 3, 4])], attrs: { axes: [0, 2] } },
  { name: 'ReduceMean axes input (opset 18), keepdims 0', op: 'ReduceMean', opset: 18, inputs: [rand([2, 3, 4]), ints([-1])], attrs: { keepdims: 0 } },
  { name: 'ReduceMax', op: 'ReduceMax', inputs: [rand([3, 4])], attrs: { axes: [1], keepdims: 0 } },
  { name: 'ReduceMin all', op: 'ReduceMin', inputs: [rand([3, 4])] },
  { name: 'ReduceSumSquare', op: 'ReduceSumSquare', inputs: [rand([2, 3, 4])], attrs: { axes: [1] } },
  { name: 'CumSum', op: 'CumSum', inputs: [rand([2, 5]), ints([1], [])] },
  { name: 'CumSum exclusive reverse', op: 'CumSum', inputs: [rand([4, 3]), ints([0], [])], attrs: { exclusive: 1, reverse: 1 } },
]);

suite('layout', [
  { name: 'Transpose perm [2,0,1]', op: 'Transpose', inputs: [rand([2, 3, 4])], attrs: { perm: [2, 0, 1] } },
  { name: 'Transpose default', op: 'Transpose', inputs: [rand([2, 3])] },
  { name: 'Reshape', op: 'Reshape', inputs: [rand([2, 3, 4]), ints([4, -1])] },
  { name: 'Squeeze', op: 'Squeeze', inputs: [rand([2, 1, 3]), ints([1])] },
  { name: 'Unsqueeze', op: 'Unsqueeze', inputs: [rand([2, 3]), ints([0, 3])] },
  { name: 'Flatten', op: 'Flatten', inputs: [rand([2, 3, 4])], attrs: { axis: 2 } },
  { name: 'Expand [3,1] → [2,3,4]', op: 'Expand', inputs: [rand([3, 1]), ints([2, 3, 4])] },
  { name: 'Tile', op: 'Tile', inputs: [rand([2, 3]), ints([2, 3])] },
  { name: 'Pad constant', op: 'Pad', inputs: [rand([2, 3]), ints([1, 0, 2, 1])] },
  { name: 'Pad constant, cropping', op: 'Pad', inputs: [rand([3, 4]), ints([-1, 1, 0, -2])] },
  { name: 'Trilu lower, k = 1', op: 'Trilu', inputs: [rand([3, 4]), ints([1], [])], attrs: { upper: 0 } },
  { name: 'Slice with steps', op: 'Slice', inputs: [rand([4, 5]), ints([3, 0]), ints([0, 5]), ints([0, 1]), ints([-1, 2])] },
  { name: 'Slice-1 attributes', op: 'Slice', opset: 9, inputs: [rand([4, 5])], attrs: { starts: [1], ends: [3], axes: [1] } },
  { name: 'Concat of 3', op: 'Concat', inputs: [rand([2, 1, 3]), rand([2, 2, 3]), rand([2, 3, 3])], attrs: { axis: -2 } },
  { name: 'Split into 3', op: 'Split', inputs: [rand([2, 6]), ints([1, 2, 3])], attrs: { axis: 1 } },
  { name: 'Split, one piece read', op: 'Split', inputs: [rand([6, 2]), ints([2, 4])], lossOutputs: [1] },
  { name: 'Split, two of three read', op: 'Split', inputs: [rand([3, 6]), ints([2, 2, 2])], attrs: { axis: -1 }, lossOutputs: [0, 2] },
  { name: 'Gather scalar index, axis 1 (BERT pooler)', op: 'Gather', inputs: [rand([2, 3, 4]), ints([0], [])], attrs: { axis: 1 } },
  { name: 'Gather [0, 2]', op: 'Gather', inputs: [rand([4, 3]), ints([0, 2])] },
  { name: 'Gather descending, negative', op: 'Gather', inputs: [rand([2, 5]), ints([-1, 2, 0])], attrs: { axis: -1 } },
  { name: 'Gather 2-D indices', op: 'Gather', inputs: [rand([5, 2]), ints([1, 2, 3, 4], [2, 2])] },
]);

suite('rotary and loss', [
  { name: 'RotaryEmbedding rotate_half', op: 'RotaryEmbedding', inputs: [rand([2, 2, 3, 4]), rand([3, 4]), rand([3, 4])] },
  { name: 'RotaryEmbedding interleaved, cos/sin broadcast', op: 'RotaryEmbedding', inputs: [rand([2, 3, 4]), rand([2, 1, 4]), rand([3, 4])], attrs: { interleaved: 1 } },
  {
    name: 'CrossEntropyLoss mean with ignore_index',
    op: 'CrossEntropyLoss',
    inputs: [rand([2, 3, 5], -2, 2), { t: tensor('int64', [2, 3], [1, 4, -100, 0, 2, 2]), constant: true }],
  },
  {
    name: 'CrossEntropyLoss sum',
    op: 'CrossEntropyLoss',
    inputs: [rand([4, 3], -2, 2), { t: tensor('int64', [4], [0, 2, 1, 1]), constant: true }],
    attrs: { reduction: 'sum' },
  },
  {
    name: 'LMHeadCrossEntropy, one weight block (dhidden exposed by the rule)',
    op: 'LMHeadCrossEntropy',
    inputs: [rand([2, 3, 4], -2, 2), { t: tensor('int64', [2, 3], [1, 4, -100, 0, 2, 2]), constant: true }, constF([4, 5])],
    outputs: 2,
  },
  {
    name: 'LMHeadCrossEntropy, three transposed blocks, sum',
    op: 'LMHeadCrossEntropy',
    inputs: [rand([3, 4], -2, 2), { t: tensor('int64', [3], [6, 0, 3]), constant: true }, constF([2, 4]), constF([3, 4]), constF([2, 4])],
    attrs: { transB: 1, reduction: 'sum' },
    outputs: 2,
  },
]);
