// The com.microsoft contrib ops: each expansion against the op's own float64 reference (written
// from onnxruntime's kernels), on every attribute form of tests/util/contrib-cases.ts, with the
// graph's dims declared concrete and symbolic (what an expansion may know before shapes differs);
// the shape rule against the expansion's output types; the gradient of the expansion against
// central finite differences of the reference (each float runtime input, as autograd-rules does
// for primitives); and the typed refusals.
import { onnx } from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { extendGraph } from '../../src/autograd/builder.js';
import { buildBackward, gradName } from '../../src/autograd/grad.js';
import { UnsupportedOpError } from '../../src/errors.js';
import { FLOAT_TYPES } from '../../src/ir/dtype.js';
import type { RefTensor } from '../../src/ir/tensor.js';
import { decodeOnnx, UnsupportedOpsError } from '../../src/onnx/decode.js';
import { runReferenceGraph, runReferenceModel } from '../../src/onnx/executor.js';
import { expandGraph } from '../../src/onnx/expand.js';
import { specialize } from '../../src/onnx/specialize.js';
import { EXPANDED_OPS } from '../../src/ops/registry.js';
import type { ExpandedOpDef, OpContext } from '../../src/ops/types.js';
import { caseGraph, contribCases, type ContribCase } from '../util/contrib-cases.js';
import { singleOpModel } from '../util/onnx-build.js';
import { closeness, expectClose, randomTensor } from '../util/tensors.js';

const ctxOf = (c: ContribCase): OpContext => ({ opType: c.op, nodeName: `${c.op}_0`, opset: 1 });
const refInputs = (c: ContribCase): (RefTensor | undefined)[] => c.inputs.map((i) => i?.t);

function reference(c: ContribCase): RefTensor[] {
  const def: ExpandedOpDef = EXPANDED_OPS[c.op];
  return def.reference(refInputs(c), c.attrs ?? {}, ctxOf(c));
}

describe('contrib op expansions equal their float64 references', () => {
  for (const c of contribCases()) {
    for (const symbolic of [false, true]) {
      it(`${c.name}${symbolic ? ' (symbolic batch and sequence)' : ''}`, () => {
        const { graph, feeds } = caseGraph(c, symbolic);
        const expanded = expandGraph(graph);
        expect(expanded.nodes.filter((n) => n.domain === 'com.microsoft'), 'no fused node is left').toEqual([]);
        expect(expanded.expanded?.map((e) => e.node.opType)).toEqual([c.op]);
        const got = runReferenceModel(expanded, feeds);
        const want = reference(c);
        const def: ExpandedOpDef = EXPANDED_OPS[c.op];
        const types = def.shape(c.inputs.map((i) => i && { dtype: i.t.dtype, dims: i.t.dims, value: i.t }), c.attrs ?? {}, ctxOf(c));
        for (const k of c.outputs ?? [0]) {
          const out = got[`out${k}`]!;
          expect(out.dims, `output ${k} dims (shape rule)`).toEqual(types[k]!.dims);
          expect(out.dtype, `output ${k} dtype`).toBe(types[k]!.dtype);
          // Both sides compute in float64 from the same float32 data; constants the expansion writes
          // (an alpha, 1/softcap) are float32.
          expectClose(out, want[k]!, { rtol: 1e-6, atol: 1e-9 }, `${c.name} output ${k}`);
        }
      });
    }
  }
});

describe('contrib op gradients (through the expansion) equal finite differences of the reference', () => {
  const H = 1e-5;
  for (const c of contribCases()) {
    const trainable = c.inputs.flatMap((inp, i) => (inp && !inp.init && FLOAT_TYPES.has(inp.t.dtype) ? [i] : []));
    if (trainable.length === 0) continue;
    it(c.name, () => {
      const { graph, feeds } = caseGraph(c);
      const expanded = expandGraph(graph);
      const spec = specialize(expanded, Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, [...v.dims]])));
      const read = (c.lossOutputs ?? c.outputs ?? [0]).filter((k) => FLOAT_TYPES.has(reference(c)[k]!.dtype));
      const weights = new Map(read.map((k, j) => [k, randomTensor(reference(c)[k]!.dims, 900 + j)]));
      const withLoss = extendGraph(spec, (b) => {
        const terms = read.map((k) => b.op('ReduceSum', [b.mul(`out${k}`, b.constant(weights.get(k)!))], { keepdims: 0 }));
        return { loss: terms.slice(1).reduce((a, t) => b.add(a, t), terms[0]!) };
      });
      // L(x) from the reference: Σ_k Σ w_k ⊙ op(x)_k.
      const lossOf = (inputs: (RefTensor | undefined)[]): number => {
        const outs = EXPANDED_OPS[c.op].reference(inputs, c.attrs ?? {}, ctxOf(c));
        return read.reduce((s, k) => s + outs[k]!.data.reduce((a, v, i) => a + v * weights.get(k)!.data[i]!, 0), 0);
      };
      const wrt = trainable.map((i) => `in${i}`);
      const back = buildBackward(withLoss, 'loss', wrt);
      const out = runReferenceGraph(back.graph, feeds);
      // The same loss (an alpha or 1/softcap the expansion stores as float32 moves it by ~1e-8).
      expect(Math.abs(out.loss!.data[0]! - lossOf(refInputs(c)))).toBeLessThan(1e-6 * Math.max(1, Math.abs(lossOf(refInputs(c)))));
      for (const i of trainable) {
        const x = c.inputs[i]!.t;
        const fd = new Float64Array(x.data.length);
        for (let e = 0; e < x.data.length; e++) {
          const probe = (d: number): number => {
            const data = x.data.slice();
            data[e] = data[e]! + d;
            const inputs = refInputs(c);
            inputs[i] = { ...x, data };
            return lossOf(inputs);
          };
          fd[e] = (probe(H) - probe(-H)) / (2 * H);
        }
        const g = out[gradName(`in${i}`)]!;
        const { worst, at, maxAbs } = closeness(g.data, fd, { rtol: 1e-5, atol: 1e-6 });
        if (worst > 1) expect.fail(`${c.name} d/in${i}: element ${at} is ${g.data[at]}, finite differences give ${fd[at]} (max abs err ${maxAbs.toExponential(3)})`);
      }
    });
  }
});

describe('contrib ops: domains and refusals', () => {
  const node = (op: string, opset: number): Uint8Array => singleOpModel(op, [{ name: 'x', dims: [2, 3, 8] }, { name: 'g', dims: [8] }], { name: 'y', dims: [2, 3, 8] }, [], [], opset);

  it('resolves an op by (domain, op type): com.microsoft.LayerNormalization is refused, naming op, domain, node and opset', () => {
    // onnxruntime registers LayerNormalization in the ONNX domain only.
    const m = decodeOnnx(node('LayerNormalization', 17));
    expect(m.nodes[0]!.opType).toBe('LayerNormalization');
    let e: unknown;
    try {
      decodeOnnx(withDomain(node('LayerNormalization', 17), 'com.microsoft'));
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(UnsupportedOpsError);
    const u = e as UnsupportedOpsError;
    expect(u.domain).toBe('com.microsoft');
    expect(u.ops[0]).toMatchObject({ opType: 'LayerNormalization', domain: 'com.microsoft', nodes: ['LayerNormalization_0'] });
    expect(u.message).toContain("com.microsoft.LayerNormalization (node 'LayerNormalization_0', com.microsoft opset 1: not implemented in domain 'com.microsoft' (the toolkit has it in ai.onnx))");
  });

  it('specialisation refuses a fused op that loading did not expand (a graph built in code), naming op, domain and node', () => {
    const { graph, feeds } = caseGraph(contribCases()[0]!);
    const node = graph.nodes.find((n) => n.domain === 'com.microsoft')!;
    const shapes = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, [...v.dims]]));
    expect(() => specialize(graph, shapes)).toThrow(UnsupportedOpError);
    expect(() => specialize(graph, shapes)).toThrow(new RegExp(`${node.opType}.*'${node.name}'.*fused op that loading expands`));
    expect(() => specialize(expandGraph(graph), shapes)).not.toThrow();
  });

  it("GroupQueryAttention takes the head size from the past when the packed query's width is unknown before shapes (a quantized projection's output)", () => {
    const byName = (name: string): ContribCase => contribCases().find((c) => c.name === name)!;
    const withPast = byName('GroupQueryAttention, continued prompt, partial rotary, window, softcap');
    const unknownWidth = (c: ContribCase): ReturnType<typeof caseGraph> => {
      const built = caseGraph(c);
      const [query, ...rest] = built.graph.inputs;
      return { ...built, graph: { ...built.graph, inputs: [{ ...query!, dims: [...query!.dims!.slice(0, 2), 'width'] }, ...rest] } };
    };
    const { graph, feeds } = unknownWidth(withPast);
    for (const k of withPast.outputs!) expectClose(runReferenceModel(expandGraph(graph), feeds)[`out${k}`]!, reference(withPast)[k]!, { rtol: 1e-6, atol: 1e-9 }, `output ${k}`);
    // Without a past nothing tells the head size, so the packed query cannot be split.
    const first = unknownWidth(byName('GroupQueryAttention, packed, rotary, first prompt'));
    expect(() => expandGraph(first.graph)).toThrow(/the head size \(the packed query's width, or the past's last dim\) must be known/);
  });

  it('refuses what onnxruntime-web does not run and what the expansions leave out, with the reason', () => {
    const cases: [ContribCase, RegExp][] = [
      [{ name: 'rotary Attention', op: 'Attention', attrs: { num_heads: 2, do_rotary: 1 }, inputs: contribCases()[21]!.inputs }, /do_rotary=1 is not supported/],
      [{ name: 'shared buffer GQA', op: 'GroupQueryAttention', attrs: { num_heads: 2, kv_num_heads: 2 }, inputs: [...contribCases()[38]!.inputs.slice(0, 6), { t: { dtype: 'int32', dims: [], data: Float64Array.of(7) }, init: true }] }, /differs from past \+ new keys 3/],
      [{ name: 'smooth softmax', op: 'GroupQueryAttention', attrs: { num_heads: 2, kv_num_heads: 2, smooth_softmax: 1 }, inputs: contribCases()[38]!.inputs }, /smooth_softmax is not supported/],
      [{ name: 'RMS mean', op: 'SkipSimplifiedLayerNormalization', inputs: contribCases()[10]!.inputs, outputs: [0, 1] }, /mean\) is not defined/],
    ];
    for (const [c, why] of cases) {
      const { graph, feeds } = caseGraph(c);
      let e: unknown;
      try {
        runReferenceModel(expandGraph(graph), feeds);
      } catch (err) {
        e = err;
      }
      expect(e, c.name).toBeInstanceOf(Error);
      expect((e as Error).name, c.name).toMatch(/UnsupportedOpError|ShapeError/);
      expect((e as Error).message, c.name).toMatch(why);
      if (e instanceof UnsupportedOpError) expect(e.domain).toBe('com.microsoft');
    }
  });
});

/** The single-op model with its node moved to `domain` (declared at opset 1). */
function withDomain(bytes: Uint8Array, domain: string): Uint8Array {
  // onnx-proto round trip, as the decode tests do.
  return rewrite(bytes, (m) => {
    m.graph!.node![0]!.domain = domain;
    m.opsetImport!.push({ domain, version: 1 });
  });
}

function rewrite(bytes: Uint8Array, f: (m: onnx.ModelProto) => void): Uint8Array {
  const m = onnx.ModelProto.decode(bytes);
  f(m);
  return onnx.ModelProto.encode(m).finish();
}
