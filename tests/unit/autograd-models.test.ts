// The reverse pass on whole models and its structural guarantees.
//
// Whole models: each fixture is specialised to [2, 4], IA3 vectors are inserted as PEFT places
// them (output scale after key/value projections, input scale before the feed-forward output
// projection) as runtime inputs, a loss is appended (cross-entropy for the causal LMs, a weighted
// sum of logits for the classifiers), and the backward graph's gradients, run on the float64 CPU
// executor, are compared with central finite differences of the forward: along random directions
// for every trainable value (IA3 vectors, some weights, one intermediate activation), and element by
// element for one vector. Structure: frozen weights get no gradient and no weight-gradient product,
// only nodes on a path are differentiated, a loss independent of a trainable value gives zeros,
// unsupported gradients fail only when a path needs them, and the graph is well formed.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { extendGraph, type GraphBuilder } from '../../src/autograd/builder.js';
import { buildBackward, gradName, type BackwardGraph } from '../../src/autograd/grad.js';
import { RECOMPUTE } from '../../src/autograd/remat.js';
import { fuseGraph } from '../../src/compile/fuse.js';
import { layoutPlan } from '../../src/compile/plan.js';
import { InputError, UnsupportedOpError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/device.js';
import { DEFAULT_TRAITS } from '../../src/gpu/traits.js';
import { normDomain, type Graph } from '../../src/ir/graph.js';
import type { SpecNode, SpecializedGraph } from '../../src/ir/static-graph.js';
import { sizeOf, tensor, type RefTensor, type TensorType, type ValueInfo } from '../../src/ir/tensor.js';
import { Model } from '../../src/model.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { runReferenceGraph } from '../../src/onnx/executor.js';
import { specialize } from '../../src/onnx/specialize.js';
import { OPS, type OpType } from '../../src/ops/registry.js';
import type { OpDef } from '../../src/ops/types.js';
import { closeness, dot, randomInts, randomTensor } from '../util/tensors.js';

const H = 1e-5;
const TOL = { rtol: 1e-5, atol: 1e-8 };

// ---------------------------------------------------------------------------------------------
// Graph surgery for the tests

/**
 * Inserts IA3Scale nodes: after each value in `outputScaled` (vector (C, 1)), and on input 0 of each
 * node in `inputScaled` (vector (1, C)). The vectors are new runtime inputs named `ia3:<where>`.
 */
function withIA3(spec: SpecializedGraph, outputScaled: readonly string[], inputScaled: readonly string[], seed: number) {
  const types = new Map(spec.types);
  const nodes: SpecNode[] = [];
  const inputs = [...spec.inputs];
  const feeds: Record<string, RefTensor> = {};
  const rename = new Map<string, string>();
  let k = 0;
  const scale = (x: string, dims: number[], at: string): string => {
    const l = `ia3:${at}`;
    const type: TensorType = { dtype: 'float32', dims };
    types.set(l, type);
    inputs.push({ name: l, type });
    feeds[l] = randomTensor(dims, seed + k++, 0.8, 1.2);
    const y = `${x}:ia3`;
    types.set(y, types.get(x)!);
    nodes.push({ name: `${at}/IA3Scale`, opType: 'IA3Scale', domain: 'ia3', inputs: [x, l], outputs: [y], attrs: {}, opset: 1 });
    return y;
  };
  const lastDim = (v: string): number => types.get(v)!.dims.at(-1)!;
  for (const n of spec.nodes) {
    let ins = n.inputs.map((v) => rename.get(v) ?? v);
    if (inputScaled.includes(n.name)) ins = [scale(ins[0]!, [1, lastDim(ins[0]!)], n.name), ...ins.slice(1)];
    nodes.push({ ...n, inputs: ins });
    for (const o of n.outputs) if (outputScaled.includes(o)) rename.set(o, scale(o, [lastDim(o), 1], o));
  }
  for (const v of [...outputScaled, ...inputScaled]) {
    if (!feeds[`ia3:${v}`]) throw new Error(`test setup: '${v}' is not in the graph`);
  }
  const source: Graph = {
    ...spec.source,
    inputs: [...spec.source.inputs, ...inputs.slice(spec.inputs.length).map((i) => ({ name: i.name, dtype: i.type.dtype, dims: i.type.dims }))],
  };
  return { spec: { ...spec, source, nodes, types, inputs, outputs: spec.outputs.map((o) => rename.get(o) ?? o) }, feeds };
}

/** The graph with `value` fed as a runtime input instead of computed (its producer dropped). */
function cutAt(spec: SpecializedGraph, value: string): SpecializedGraph {
  const type = spec.types.get(value)!;
  return {
    ...spec,
    source: { ...spec.source, inputs: [...spec.source.inputs, { name: value, dtype: type.dtype, dims: type.dims }] },
    inputs: [...spec.inputs, { name: value, type }],
    nodes: spec.nodes.filter((n) => !n.outputs.includes(value)),
  };
}

/** A copy of the graph with a constant (a weight) replaced. */
function withConstant(spec: SpecializedGraph, name: string, t: RefTensor): SpecializedGraph {
  if (!spec.constants.has(name)) throw new Error(`test setup: '${name}' is not a constant`);
  return { ...spec, constants: new Map(spec.constants).set(name, t) };
}

// ---------------------------------------------------------------------------------------------
// Checks

/** Every node reads values that exist before it, names and types every output, and has its op's domain. */
function expectWellFormed(graph: SpecializedGraph): void {
  const known = new Set<string>([...graph.inputs.map((i) => i.name), ...graph.constants.keys(), ...graph.source.initializers.keys()]);
  for (const n of graph.nodes) {
    for (const v of n.inputs) if (v) expect(known.has(v), `${n.name} reads '${v}' before it exists`).toBe(true);
    for (const o of n.outputs) {
      expect(o, `${n.name}: every output is named`).not.toBe('');
      expect(known.has(o), `'${o}' is produced twice`).toBe(false);
      expect(graph.types.has(o), `'${o}' has a type`).toBe(true);
      known.add(o);
    }
    expect(n.domain, `${n.name}: domain`).toBe(normDomain((OPS[n.opType as OpType] as OpDef).domain));
  }
  for (const o of graph.outputs) expect(known.has(o), `output '${o}' is computed`).toBe(true);
}

/** Lowers every node from `from` on, as the plan compiler would (pure data, no device). */
function expectLowerable(graph: SpecializedGraph, from: number): void {
  for (const node of graph.nodes.slice(from)) {
    const def: OpDef = OPS[node.opType as OpType];
    if (def.gpu === 'fold') expect.fail(`${node.name} (${node.opType}) cannot run on the GPU`);
    const infos = node.inputs.map((v): ValueInfo | undefined => {
      if (!v) return undefined;
      const value = graph.constants.get(v);
      return value ? { ...graph.types.get(v)!, value } : graph.types.get(v)!;
    });
    const ctx = { opType: node.opType, nodeName: node.name, opset: node.opset, numOutputs: node.outputs.length, device: DEFAULT_TRAITS };
    def.gpu(infos, node.outputs.map((o) => graph.types.get(o)!), node.attrs, ctx);
  }
}

function expectNear(actual: number | ArrayLike<number>, expected: number | ArrayLike<number>, what: string): void {
  const a = typeof actual === 'number' ? [actual] : actual;
  const e = typeof expected === 'number' ? [expected] : expected;
  const { worst, at, maxAbs } = closeness(a, e, TOL);
  if (worst > 1) expect.fail(`${what}: element ${at} is ${a[at]}, finite differences give ${e[at]} (max abs err ${maxAbs.toExponential(3)})`);
}

// ---------------------------------------------------------------------------------------------
// The fixtures

interface ModelCase {
  model: string;
  file?: string;
  shapes: Record<string, number[]>;
  vocab: number;
  outputScaled: string[];
  inputScaled: string[];
  /** Weights (constants) to train as well, e.g. modules_to_save. */
  weights: string[];
  /** An activation to differentiate with respect to. */
  intermediate: string;
  loss: 'ce' | 'weighted';
  /** The vector checked element by element. */
  fullCheck?: string;
}

const B = 2;
const S = 4;
const layers = [0, 1];

const MODELS: ModelCase[] = [
  {
    model: 'bert',
    shapes: { input_ids: [B, S], attention_mask: [B, S], token_type_ids: [B, S] },
    vocab: 100,
    outputScaled: layers.flatMap((l) => ['key', 'value'].map((m) => `/bert/encoder/layer.${l}/attention/self/${m}/Add_output_0`)),
    inputScaled: layers.map((l) => `/bert/encoder/layer.${l}/output/dense/MatMul`),
    weights: ['classifier.bias', 'bert.pooler.dense.weight', 'bert.encoder.layer.1.output.LayerNorm.weight'],
    intermediate: '/bert/encoder/layer.1/attention/self/Softmax_output_0',
    loss: 'weighted',
    fullCheck: 'ia3:/bert/encoder/layer.0/attention/self/value/Add_output_0',
  },
  {
    model: 'bert',
    file: 'model_opset17.onnx',
    shapes: { input_ids: [B, S], attention_mask: [B, S], token_type_ids: [B, S] },
    vocab: 100,
    outputScaled: ['/bert/encoder/layer.0/attention/self/value/Add_output_0'],
    inputScaled: ['/bert/encoder/layer.1/output/dense/MatMul'],
    weights: ['bert.encoder.layer.1.attention.output.LayerNorm.weight', 'bert.encoder.layer.1.attention.output.LayerNorm.bias'],
    intermediate: '/bert/pooler/Gather_output_0',
    loss: 'weighted',
  },
  {
    model: 'llama',
    shapes: { input_ids: [B, S], attention_mask: [B, S], position_ids: [B, S] },
    vocab: 128,
    outputScaled: layers.flatMap((l) => ['k_proj', 'v_proj'].map((m) => `/model/layers.${l}/self_attn/${m}/MatMul_output_0`)),
    inputScaled: layers.map((l) => `/model/layers.${l}/mlp/down_proj/MatMul`),
    weights: ['model.norm.weight', 'model.layers.1.post_attention_layernorm.weight'],
    intermediate: '/model/layers.1/self_attn/Softmax_output_0',
    loss: 'ce',
    fullCheck: 'ia3:/model/layers.1/self_attn/k_proj/MatMul_output_0',
  },
  {
    model: 'gpt2',
    shapes: { input_ids: [B, S], attention_mask: [B, S] },
    vocab: 120,
    outputScaled: ['/transformer/h.0/attn/c_attn/Gemm_output_0'],
    inputScaled: ['/transformer/h.1/mlp/c_proj/Gemm'],
    weights: ['transformer.ln_f.weight'],
    intermediate: '/transformer/h.1/attn/Softmax_output_0',
    loss: 'ce',
  },
  {
    model: 'distilbert',
    shapes: { input_ids: [B, S], attention_mask: [B, S] },
    vocab: 110,
    outputScaled: ['/distilbert/transformer/layer.1/attention/k_lin/Add_output_0'],
    inputScaled: ['/distilbert/transformer/layer.0/ffn/lin2/MatMul'],
    weights: ['classifier.bias'],
    intermediate: '/distilbert/transformer/layer.0/ffn/activation/Mul_1_output_0',
    loss: 'weighted',
  },
];

const graphCache = new Map<string, Graph>();
function load(model: string, file = 'model.onnx'): Graph {
  const key = `${model}/${file}`;
  let g = graphCache.get(key);
  if (!g) graphCache.set(key, (g = decodeOnnx(new Uint8Array(readFileSync(`tests/fixtures/${model}/onnx/${file}`)))));
  return g;
}

function tokenFeeds(m: ModelCase): Record<string, RefTensor> {
  const feeds: Record<string, RefTensor> = {};
  for (const [name, dims] of Object.entries(m.shapes)) {
    if (name === 'input_ids') feeds[name] = randomInts(dims, 7, 1, m.vocab);
    else if (name === 'attention_mask') feeds[name] = tensor('int64', dims, [1, 1, 1, 1, 1, 1, 1, 0]); // one padded position
    else if (name === 'position_ids') feeds[name] = tensor('int64', dims, [0, 1, 2, 3, 0, 1, 2, 3]);
    else feeds[name] = tensor('int64', dims, [0, 0, 1, 1, 0, 1, 1, 1]);
  }
  return feeds;
}

/** The loss nodes appended to a model's graph: output 'loss'. */
function appendLoss(m: ModelCase, spec: SpecializedGraph): SpecializedGraph {
  return extendGraph(spec, (b: GraphBuilder) => {
    const logits = spec.outputs[spec.outputNames.indexOf('logits')]!;
    const t = b.type(logits);
    if (m.loss === 'ce') {
      const labels = randomInts(t.dims.slice(0, -1), 11, 0, t.dims.at(-1)!);
      labels.data[3] = -100; // an ignored position
      return { loss: b.emit('CrossEntropyLoss', [logits, b.constant(labels)])[0]! };
    }
    return { loss: b.op('ReduceSum', [b.mul(logits, b.constant(randomTensor(t.dims, 12)))], { keepdims: 0 }) };
  });
}

function prepare(m: ModelCase) {
  const base = specialize(load(m.model, m.file), m.shapes);
  const ia3 = withIA3(base, m.outputScaled, m.inputScaled, 100);
  const spec = appendLoss(m, ia3.spec);
  const feeds = { ...tokenFeeds(m), ...ia3.feeds };
  return { base, spec, feeds, vectors: Object.keys(ia3.feeds) };
}

const lossOf = (spec: SpecializedGraph, feeds: Record<string, RefTensor>): number => runReferenceGraph(spec, feeds).loss!.data[0]!;

/** (L(θ + h·dir) − L(θ − h·dir)) / 2h, for θ a runtime input or a constant of `spec`. */
function directional(spec: SpecializedGraph, feeds: Record<string, RefTensor>, name: string, dir: RefTensor): number {
  const at = (s: number): number => {
    const isInput = spec.inputs.some((i) => i.name === name);
    const base = isInput ? feeds[name]! : spec.constants.get(name)!;
    const moved: RefTensor = { ...base, data: base.data.map((v, i) => v + s * H * dir.data[i]!) };
    return isInput ? lossOf(spec, { ...feeds, [name]: moved }) : lossOf(withConstant(spec, name, moved), feeds);
  };
  return (at(1) - at(-1)) / (2 * H);
}

describe('whole-model gradients against finite differences', () => {
  for (const m of MODELS) {
    it(`${m.model}/${m.file ?? 'model.onnx'}: IA3 vectors, weights and an activation`, () => {
      const { spec, feeds, vectors } = prepare(m);
      const wrt = [...vectors, ...m.weights, m.intermediate];
      const bw = buildBackward(spec, 'loss', wrt);
      expectWellFormed(bw.graph);
      expectLowerable(bw.graph, spec.nodes.length);
      const out = runReferenceGraph(bw.graph, feeds);
      expect(out.loss!.data[0]).toBe(lossOf(spec, feeds));

      for (const [k, w] of [...vectors, ...m.weights].entries()) {
        const g = out[gradName(w)]!;
        expect(g.dims).toEqual(spec.types.get(w)!.dims);
        const dir = randomTensor(g.dims, 1000 + k);
        expectNear(dot(g, dir), directional(spec, feeds, w, dir), `${m.model} d/${w} along a random direction`);
      }

      // The activation: finite differences on the graph cut there, with its value fed.
      const value = runReferenceGraph(extendGraph(spec, () => ({ probe: m.intermediate })), feeds).probe!;
      const cut = cutAt(spec, m.intermediate);
      const cutFeeds = { ...feeds, [m.intermediate]: value };
      const g = out[gradName(m.intermediate)]!;
      const dir = randomTensor(g.dims, 999);
      expectNear(dot(g, dir), directional(cut, cutFeeds, m.intermediate, dir), `${m.model} d/${m.intermediate}`);

      if (m.fullCheck) {
        const x = feeds[m.fullCheck]!;
        const fd = new Float64Array(x.data.length);
        for (let i = 0; i < fd.length; i++) {
          const e = tensor(x.dtype, x.dims);
          e.data[i] = 1;
          fd[i] = directional(spec, feeds, m.fullCheck, e);
        }
        expectNear(out[gradName(m.fullCheck)]!.data, fd, `${m.model} d/${m.fullCheck} element by element`);
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('what the reverse pass differentiates', () => {
  const bert = MODELS[0]!;

  it('never gives a frozen weight a gradient or a weight-gradient product', () => {
    const { spec, vectors } = prepare(bert);
    // Without rematerialisation: the products counted are the gradients' (no recomputed q·kᵀ).
    const bw = buildBackward(spec, 'loss', vectors, { recompute: 'none' });
    const frozen = new Set([...spec.weights, ...spec.constants.keys()]);
    expect(bw.summary.gradientsOf.filter((v) => frozen.has(v))).toEqual([]);
    // One product per differentiated matmul input that needs a gradient: activations only.
    const products = bw.graph.nodes.slice(spec.nodes.length).filter((n) => n.opType === 'FusedMatMul').length;
    const byName = new Map(spec.nodes.map((n) => [n.name, n]));
    const needed = bw.summary.differentiated
      .map((name) => byName.get(name)!)
      .filter((n) => n.opType === 'MatMul' || n.opType === 'Gemm' || n.opType === 'FusedMatMul')
      .reduce((s, n) => s + n.inputs.filter((v) => bw.summary.gradientsOf.includes(v)).length, 0);
    expect(products).toBe(needed);
    expect(bw.summary.nodeCounts.FusedMatMul).toBe(products);
    // Training the classifier bias as well adds its reduction, not a product.
    const withBias = buildBackward(spec, 'loss', [...vectors, 'classifier.bias'], { recompute: 'none' });
    expect(withBias.summary.nodeCounts.FusedMatMul).toBe(products);
    expect(withBias.summary.gradientsOf).toContain('classifier.bias');
  });

  it('differentiates only nodes on a path from a trainable value to the loss', () => {
    const { spec, vectors } = prepare(bert);
    const v = vectors.find((n) => n.includes('layer.1/attention/self/value'))!;
    const bw = buildBackward(spec, 'loss', [v]);
    // Independently: nodes reading (transitively) v whose outputs the loss reads.
    const down = new Set([v]);
    const reach = new Set<string>();
    for (const n of spec.nodes) {
      if (!n.inputs.some((x) => down.has(x))) continue;
      n.outputs.forEach((o) => down.add(o));
      reach.add(n.name);
    }
    const up = new Set([spec.outputs[spec.outputNames.indexOf('loss')]!]);
    const live = new Set<string>();
    for (const n of [...spec.nodes].reverse()) {
      if (!n.outputs.some((o) => up.has(o))) continue;
      n.inputs.forEach((x) => up.add(x));
      live.add(n.name);
    }
    expect(new Set(bw.summary.differentiated)).toEqual(new Set([...reach].filter((n) => live.has(n))));
    expect(bw.summary.differentiated.some((n) => n.includes('layer.0') || n.includes('embeddings'))).toBe(false);
    // The pass stops at the trainable vector: its IA3ScaleGrad computes no input gradient.
    const grads = bw.graph.nodes.filter((n) => n.opType === 'IA3ScaleGrad');
    expect(grads.map((n) => n.attrs.input_grad)).toEqual([0]);
    expect(bw.summary.gradientsOf).not.toContain('/bert/encoder/layer.1/attention/self/value/Add_output_0');
    // The forward part is the input graph, untouched except that a LayerNormalization on the path
    // (a decomposed LayerNorm the specialiser fused) now declares its Mean and InvStdDev outputs.
    const declaredY = (n: (typeof spec.nodes)[number]) => (n.opType === 'LayerNormalization' ? { ...n, outputs: n.outputs.slice(0, 1) } : n);
    expect(bw.graph.nodes.slice(0, spec.nodes.length).map(declaredY)).toEqual(spec.nodes.map(declaredY));
  });

  it('reports saved activations and node counts, and exposes LayerNormalization statistics', () => {
    const m = MODELS[1]!; // bert opset 17: LayerNormalization nodes declare only Y
    const { spec, vectors } = prepare(m);
    const bw = buildBackward(spec, 'loss', vectors);
    const count = Object.values(bw.summary.nodeCounts).reduce((a, b) => a + b, 0);
    expect(count).toBe(bw.graph.nodes.length - spec.nodes.length);
    const lnGrads = bw.graph.nodes.filter((n) => n.opType === 'LayerNormalizationGrad');
    expect(lnGrads.length).toBeGreaterThan(0);
    for (const g of lnGrads) {
      // Mean and InvStdDev are forward outputs now, saved for the backward.
      const ln = bw.graph.nodes.find((n) => n.outputs.includes(g.inputs[3]!))!;
      expect(ln.opType).toBe('LayerNormalization');
      expect(ln.outputs.length).toBe(3);
      expect(bw.summary.savedActivations).toContain(g.inputs[3]);
      expect(bw.summary.savedActivations).toContain(g.inputs[4]);
      expect(spec.nodes.find((n) => n.name === ln.name)!.outputs.length).toBe(1);
    }
    const produced = new Set(bw.graph.nodes.slice(0, spec.nodes.length).flatMap((n) => n.outputs));
    for (const v of bw.summary.savedActivations) expect(produced.has(v) || spec.inputs.some((i) => i.name === v), v).toBe(true);
    // The attention probabilities are recomputed from q and k (remat.ts), not kept.
    expect(bw.summary.savedActivations).not.toContain('/bert/encoder/layer.1/attention/self/Softmax_output_0');
    expect(buildBackward(spec, 'loss', vectors, { recompute: 'none' }).summary.savedActivations).toContain('/bert/encoder/layer.1/attention/self/Softmax_output_0');
    expect(bw.summary.savedParameters.length).toBeGreaterThan(0);
  });
});

describe('rematerialisation (what the backward recomputes instead of keeping)', () => {
  const bytes = (bw: BackwardGraph, spec: SpecializedGraph): number =>
    bw.summary.savedActivations.filter((v) => !spec.inputs.some((i) => i.name === v)).reduce((s, v) => s + 4 * sizeOf(bw.graph.types.get(v)!.dims), 0);
  for (const m of MODELS) {
    it(`${m.model}/${m.file ?? 'model.onnx'}: the same loss and gradients with 'cheap' and 'layers' as with none, from fewer saved bytes`, () => {
      const { spec, feeds, vectors } = prepare(m);
      const want = buildBackward(spec, 'loss', vectors, { recompute: 'none' });
      const ref = runReferenceGraph(want.graph, feeds);
      let last = bytes(want, spec);
      for (const recompute of ['cheap', 'layers'] as const) {
        const bw = buildBackward(spec, 'loss', vectors, { recompute });
        expectWellFormed(bw.graph);
        expectLowerable(bw.graph, spec.nodes.length);
        // The forward is untouched; every node added is a copy of a forward node (same op, attributes).
        expect(bw.graph.nodes.slice(0, spec.nodes.length)).toEqual(want.graph.nodes.slice(0, spec.nodes.length));
        const forwardOps = new Set(spec.nodes.map((n) => `${n.opType}${JSON.stringify(n.attrs)}`));
        const copies = bw.graph.nodes.filter((n) => n.name.includes('/remat'));
        expect(copies.length, `${recompute} recomputes something`).toBeGreaterThan(0);
        for (const c of copies) expect(forwardOps.has(`${c.opType}${JSON.stringify(c.attrs)}`), c.name).toBe(true);
        // The same float64 values, bit for bit: the copies compute what the forward did.
        const out = runReferenceGraph(bw.graph, feeds);
        expect(out.loss!.data).toEqual(ref.loss!.data);
        for (const v of vectors) expect(out[gradName(v)]!.data, `${recompute} d/${v}`).toEqual(ref[gradName(v)]!.data);
        const saved = bytes(bw, spec);
        expect(saved, `${recompute} keeps fewer bytes`).toBeLessThan(last);
        last = saved;
      }
    });
  }
});

describe('saved activations in half precision (autograd/half.ts)', () => {
  // The loss is the forward's, untouched; the gradients read activations rounded to 11 (f16) or 8
  // (bf16) significant bits. Their error is measured against f32 activations on the float64
  // executor: relative to each gradient's largest element, it stays within a few rounding units
  // (measured worst over these fixtures: 1.4e-3 for f16, 9.5e-3 for bf16; 2^-11 = 4.9e-4, 2^-8 = 3.9e-3).
  const BOUND = { f16: 2e-3, bf16: 2e-2 } as const;
  for (const m of MODELS) {
    it(`${m.model}/${m.file ?? 'model.onnx'}: the same loss, gradients within the format's rounding, half the saved bytes, for every recompute choice`, () => {
      const { spec, feeds, vectors } = prepare(m);
      for (const recompute of RECOMPUTE) {
        const exact = buildBackward(spec, 'loss', vectors, { recompute });
        const want = runReferenceGraph(exact.graph, feeds);
        const planned = (g: SpecializedGraph): number => layoutPlan(fuseGraph(g), DEFAULT_TRAITS).memory.activationBytes;
        for (const activationPrecision of ['f16', 'bf16'] as const) {
          const what = `${recompute}/${activationPrecision}`;
          const bw = buildBackward(spec, 'loss', vectors, { recompute, activationPrecision });
          expectWellFormed(bw.graph);
          expectLowerable(bw.graph, 0);
          expect(bw.summary, what).toEqual(exact.summary);
          const packs = bw.graph.nodes.filter((n) => n.opType === 'PackHalf');
          const unpacks = bw.graph.nodes.filter((n) => n.opType === 'UnpackHalf');
          expect(packs.length, `${what}: packs something`).toBeGreaterThan(0);
          expect(unpacks.length, what).toBeGreaterThanOrEqual(packs.length);
          // Every pack sits in the forward, right after its producer; the forward is otherwise the same.
          expect(bw.graph.nodes.filter((n) => n.opType !== 'PackHalf').slice(0, spec.nodes.length)).toEqual(exact.graph.nodes.slice(0, spec.nodes.length));
          // No backward node reads an f32 value that was packed: only its unpacked copy.
          const packed = new Set(packs.map((n) => n.inputs[0]!));
          const backward = bw.graph.nodes.slice(spec.nodes.length + packs.length);
          for (const n of backward) for (const v of n.inputs) expect(packed.has(v), `${what}: ${n.name} reads '${v}'`).toBe(false);
          const got = runReferenceGraph(bw.graph, feeds);
          expect(got.loss!.data, `${what} loss`).toEqual(want.loss!.data);
          for (const v of vectors) {
            const g = want[gradName(v)]!.data;
            const { maxAbs } = closeness(got[gradName(v)]!.data, g);
            const scale = Math.max(...Array.from(g, Math.abs));
            expect(maxAbs / scale, `${what} d/${v}`).toBeLessThan(BOUND[activationPrecision]);
          }
          // The fused step computes the same, and plans fewer activation bytes; GPT-2's attention
          // still reads its heads as strided views of the (unpacked) c_attn product: no copies.
          if (m.model === 'gpt2') expect(fuseGraph(bw.graph).nodes.filter((n) => n.opType === 'Transpose' || n.opType === 'Split').map((n) => n.name), what).toEqual([]);
          const fused = runReferenceGraph(fuseGraph(bw.graph), feeds);
          for (const v of vectors) expect(fused[gradName(v)]!.data, `${what} fused d/${v}`).toEqual(got[gradName(v)]!.data);
          expect(planned(bw.graph), what).toBeLessThan(planned(exact.graph));
        }
      }
    });
  }
});

describe('fusion of the step (compile/fuse.ts) on the float64 reference', () => {
  for (const m of MODELS) {
    it(`${m.model}/${m.file ?? 'model.onnx'}: the fused step gives the same loss and gradients, for every recompute choice`, () => {
      const { spec, feeds, vectors } = prepare(m);
      for (const recompute of RECOMPUTE) {
        const bw = buildBackward(spec, 'loss', vectors, { recompute });
        const fused = fuseGraph(bw.graph);
        const want = runReferenceGraph(bw.graph, feeds);
        const got = runReferenceGraph(fused, feeds);
        // Bit for bit: each fused reference computes the chain's float64 operations in its order.
        expect(got.loss!.data, `${recompute} loss`).toEqual(want.loss!.data);
        for (const v of vectors) expect(got[gradName(v)]!.data, `${recompute} d/${v}`).toEqual(want[gradName(v)]!.data);
        const ops = fused.nodes.map((n) => n.opType);
        if (m.model === 'gpt2') {
          // GPT-2's attention (Div → Where → Add → Softmax) and its backward are one row pass each,
          // and IA3 on c_proj's input reads the pre-GELU state: no Gelu in the backward.
          expect(ops.filter((o) => o === 'Div' || o === 'Where'), recompute).toEqual([]);
          expect(fused.nodes.filter((n) => n.opType === 'MaskedSoftmax' && n.inputs.length === 3).length).toBeGreaterThan(0);
          expect(fused.nodes.filter((n) => n.opType === 'SoftmaxGrad' && n.inputs.length === 3).length).toBeGreaterThan(0);
          expect(fused.nodes.filter((n) => n.opType === 'IA3ScaleGrad' && n.attrs.activation).length, recompute).toBe(1);
          const count = (g: { nodes: readonly { opType: string }[] }, op: string) => g.nodes.filter((n) => n.opType === op).length;
          expect(count(bw.graph, 'GeluGrad') - count(fused, 'GeluGrad'), `${recompute}: GeluGrad of the IA3 layer`).toBe(1);
          expect(fused.nodes.some((n) => n.opType === 'Gelu' && n.name.includes('/remat')), recompute).toBe(false);
          // Attention reads its heads from the c_attn product and writes its context in place
          // (compile/views.ts): no Transpose or Split copies are left, in the forward, the
          // recomputation or the backward.
          expect(count(bw.graph, 'Transpose'), recompute).toBeGreaterThan(0);
          expect(ops.filter((o) => o === 'Transpose' || o === 'Split'), recompute).toEqual([]);
          expect(fused.nodes.filter((n) => n.attrs.yShape !== undefined).length, recompute).toBeGreaterThan(0);
        }
        if (m.model === 'llama') {
          // Rotary embeddings (Slice, Neg, Concat, Mul, Add on q and k) are no view: q and k are
          // still copied to [B,H,T,D] before them and the scores' product reads the rotated values;
          // v and the context, which no rotary touches, are views.
          const node = (name: string) => fused.nodes.find((n) => n.name === name);
          for (const l of layers) {
            const scores = node(`/model/layers.${l}/self_attn/MatMul`)!;
            expect(scores.inputs[0], `${recompute} layer ${l}`).toBe(`/model/layers.${l}/self_attn/Add_output_0`);
            expect(scores.attrs.aShape, `${recompute} layer ${l}`).toBeUndefined();
            expect(node(`/model/layers.${l}/self_attn/Transpose`)?.opType, `${recompute} layer ${l}`).toBe('Transpose');
            expect(node(`/model/layers.${l}/self_attn/Transpose_1`)?.opType, `${recompute} layer ${l}`).toBe('Transpose');
            expect(node(`/model/layers.${l}/self_attn/MatMul_1`)?.attrs.yShape, `${recompute} layer ${l}`).toBeDefined();
          }
        }
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------

/** A tiny graph: runtime inputs x and y ([2,3]) and the nodes `build` appends; returns its loss. */
function tiny(build: (b: GraphBuilder) => Record<string, string>) {
  const type: TensorType = { dtype: 'float32', dims: [2, 3] };
  const source: Graph = {
    name: 'tiny',
    opsets: new Map([['', 17]]),
    irVersion: 8,
    producer: 'test',
    inputs: ['x', 'y'].map((name) => ({ name, dtype: 'float32' as const, dims: [2, 3] })),
    outputs: [],
    initializers: new Map(),
    nodes: [],
  };
  const empty: SpecializedGraph = {
    source,
    key: 'tiny',
    inputs: [{ name: 'x', type }, { name: 'y', type }],
    outputs: [],
    outputNames: [],
    nodes: [],
    types: new Map([['x', type], ['y', type]]),
    constants: new Map(),
    weights: [],
    resident: new Map(),
    symbols: {},
  };
  const spec = extendGraph(empty, build);
  return { spec, feeds: { x: randomTensor([2, 3], 1), y: randomTensor([2, 3], 2) } };
}

const sumAll = (b: GraphBuilder, v: string): string => b.op('ReduceSum', [v], { keepdims: 0 });

describe('edge cases and errors', () => {
  it('gives zeros to a trainable value the loss does not depend on', () => {
    const { spec, feeds } = tiny((b) => ({ loss: sumAll(b, b.op('Exp', ['x'])), other: b.op('Sin', ['y']) }));
    const bw = buildBackward(spec, 'loss', ['x', 'y']);
    const out = runReferenceGraph(bw.graph, feeds);
    expect(Array.from(out[gradName('y')]!.data)).toEqual([0, 0, 0, 0, 0, 0]);
    expectNear(out[gradName('x')]!.data, feeds.x.data.map(Math.exp), 'd/dx Σ exp(x)');
    expect(bw.graph.nodes.some((n) => n.opType === 'Cos')).toBe(false); // Sin is not differentiated
    expect(bw.summary.differentiated).not.toContain(spec.nodes.find((n) => n.opType === 'Sin')!.name);
  });

  it('gives zeros through a non-differentiable path (a comparison feeding Where)', () => {
    const { spec, feeds } = tiny((b) => {
      const cond = b.op('Greater', ['x', b.scalar(0, 'float32')]);
      return { loss: sumAll(b, b.op('Where', [cond, 'y', b.scalar(2, 'float32')])) };
    });
    const out = runReferenceGraph(buildBackward(spec, 'loss', ['x', 'y']).graph, feeds);
    expect(Array.from(out[gradName('x')]!.data)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Array.from(out[gradName('y')]!.data)).toEqual(Array.from(feeds.x.data, (v) => (v > 0 ? 1 : 0)));
  });

  it('differentiates with respect to nested values and the loss itself (total derivatives)', () => {
    let mid = '';
    const { spec, feeds } = tiny((b) => {
      mid = b.mul('x', 'x');
      return { loss: sumAll(b, b.mul(mid, 'y')) };
    });
    const lossValue = spec.outputs[0]!;
    const out = runReferenceGraph(buildBackward(spec, 'loss', ['x', mid, lossValue]).graph, feeds);
    expectNear(out[gradName('x')]!.data, feeds.x.data.map((v, i) => 2 * v * feeds.y.data[i]!), 'd/dx Σ x²y');
    expectNear(out[gradName(mid)]!.data, feeds.y.data, 'd/d(x²) Σ x²y');
    expect(Array.from(out[gradName(lossValue)]!.data)).toEqual([1]);
  });

  it('fails with a typed error only when a path needs an unsupported gradient', () => {
    const { spec } = tiny((b) => ({
      loss: b.add(sumAll(b, b.op('ReduceProd', ['x'], { keepdims: 1 })), sumAll(b, 'y')),
    }));
    expect(() => buildBackward(spec, 'loss', ['x'])).toThrow(UnsupportedOpError);
    expect(() => buildBackward(spec, 'loss', ['x'])).toThrow(/ReduceProd node '.*' \(opset 17\): gradient is not implemented: ReduceProd/);
    expect(buildBackward(spec, 'loss', ['y']).summary.differentiated.some((n) => n.includes('ReduceProd'))).toBe(false);

    const gather = tiny((b) => ({ loss: sumAll(b, b.op('Gather', ['x', b.ints([0, 0])])) }));
    expect(() => buildBackward(gather.spec, 'loss', ['x'])).toThrow(/arithmetic progression/);
    const { spec: bert } = prepare(MODELS[0]!);
    expect(() => buildBackward(bert, 'loss', ['bert.embeddings.word_embeddings.weight'])).toThrow(
      /Gather node '\/bert\/embeddings\/word_embeddings\/Gather'.*runtime indices/,
    );
  });

  it('rejects a bad loss or trainable value with an InputError', () => {
    const { spec } = tiny((b) => ({ loss: sumAll(b, 'x'), vec: b.op('Exp', ['x']), n: b.op('Shape', ['x']) }));
    expect(() => buildBackward(spec, 'nope', ['x'])).toThrow(InputError);
    expect(() => buildBackward(spec, 'vec', ['x'])).toThrow(/must be a float scalar/);
    expect(() => buildBackward(spec, 'loss', ['z'])).toThrow(/'z' is not a value of this graph/);
    expect(() => buildBackward(spec, 'loss', ['x', 'x'])).toThrow(/twice/);
    expect(() => buildBackward(spec, 'loss', [spec.outputs[2]!])).toThrow(/only float values have gradients/);
  });

  it('accumulates gradients of a value read by several nodes with Add', () => {
    const { spec, feeds } = tiny((b) => ({ loss: sumAll(b, b.add(b.add(b.op('Exp', ['x']), b.op('Sin', ['x'])), b.mul('x', 'y'))) }));
    const bw: BackwardGraph = buildBackward(spec, 'loss', ['x']);
    const out = runReferenceGraph(bw.graph, feeds);
    const want = feeds.x.data.map((v, i) => Math.exp(v) + Math.cos(v) + feeds.y.data[i]!);
    expectNear(out[gradName('x')]!.data, want, 'd/dx Σ exp(x) + sin(x) + xy');
    expect(bw.summary.nodeCounts.Add).toBe(2); // three contributions to dx
    expect(sizeOf(out[gradName('x')]!.dims)).toBe(6);
  });
});

// FusedMatMul is emitted by fusion after the backward pass, so the ONNX pipeline never
// differentiates it; a graph built in code may hold one before differentiation, and then its VJP
// rule (IA3 input and output scales included) is what the public Model API runs.
describe('FusedMatMul with IA3 scales, differentiated through Model', () => {
  it('gives the scales and the weight the gradients of finite differences', () => {
    const x = randomTensor([2, 3, 4], 41);
    const init = (name: string, t: RefTensor) => ({ name, dtype: 'float32' as const, dims: t.dims, data: Float32Array.from(t.data) });
    const values: Record<string, RefTensor> = { W: randomTensor([4, 5], 42), b: randomTensor([5], 43), sIn: randomTensor([4], 44, 0.5, 1.5), sOut: randomTensor([5], 45, 0.5, 1.5) };
    const graphWith = (v: Record<string, RefTensor>): Graph => ({
      name: 'fused',
      opsets: new Map([['', 17], ['ia3', 1]]),
      irVersion: 8,
      producer: 'test',
      inputs: [{ name: 'x', dtype: 'float32', dims: [2, 3, 4] }],
      outputs: [{ name: 'loss', dtype: 'float32', dims: [] }],
      initializers: new Map(Object.entries(v).map(([k, t]) => [k, init(k, t)])),
      nodes: [
        { name: 'mm', opType: 'FusedMatMul', domain: 'ia3', inputs: ['x', 'W', 'b', 'sIn', 'sOut'], outputs: ['y'], attrs: {} },
        { name: 'sq', opType: 'Mul', domain: '', inputs: ['y', 'y'], outputs: ['y2'], attrs: {} },
        { name: 'sum', opType: 'ReduceSum', domain: '', inputs: ['y2'], outputs: ['loss'], attrs: { keepdims: 0 } },
      ],
    });
    // Lossless f32 inputs: the f32 initializers then hold exactly the values perturbed below.
    for (const t of Object.values(values)) t.data.set(Float32Array.from(t.data));
    const model = new Model({} as GpuContext, graphWith(values), undefined, [], undefined);
    const feeds = { x: { data: Float32Array.from(x.data), dims: [...x.dims] } };
    const wrt = ['sIn', 'sOut', 'W'];
    const { gradients } = model.lossAndGradientsReference(feeds, 'loss', wrt);
    const lossAt = (name: string, t: RefTensor): number => {
      const m = new Model({} as GpuContext, graphWith({ ...values, [name]: t }), undefined, [], undefined);
      return m.runReference(feeds).loss!.data[0]!;
    };
    for (const name of wrt) {
      const g = gradients.get(name)!;
      const dir = randomTensor(values[name]!.dims, 50);
      const shifted = (h: number): RefTensor => ({ ...values[name]!, data: values[name]!.data.map((v, i) => v + h * dir.data[i]!) });
      // The loss is quadratic in each of them: a central difference is exact at any step, and a
      // large step keeps the float32 rounding of the shifted values negligible.
      const numeric = (lossAt(name, shifted(0.25)) - lossAt(name, shifted(-0.25))) / 0.5;
      const analytic = g.reduce((s, v, i) => s + v * dir.data[i]!, 0);
      expect(Math.abs(analytic - numeric), name).toBeLessThan(1e-5 * (1 + Math.abs(numeric)));
    }
  });
});
