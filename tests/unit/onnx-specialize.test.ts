// Shape specialisation: static types for several (batch, sequence) shapes, shape sub-graphs folded,
// Identity/Dropout dropped, dead nodes removed, the PlanGraph contract, caching, and InputErrors
// for bad input shapes.
import { readFileSync } from 'node:fs';
import { onnx } from 'onnx-proto';
import { describe, expect, it, vi } from 'vitest';
import { InputError, UnsupportedOpError } from '../../src/errors.js';
import type { Graph, Initializer } from '../../src/ir/graph.js';
import type { SpecializedGraph } from '../../src/ir/static-graph.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { runReferenceGraph } from '../../src/onnx/executor.js';
import { specialize, VALUE_LIMIT } from '../../src/onnx/specialize.js';
import { isOpType, OPS } from '../../src/ops/registry.js';
import type { OpDef } from '../../src/ops/types.js';

const graphOf = (m: string, f = 'model.onnx') => decodeOnnx(new Uint8Array(readFileSync(`tests/fixtures/${m}/onnx/${f}`)));

const SHAPES: [number, number][] = [
  [1, 1],
  [2, 7],
  [3, 16],
];

/** The invariants every specialised graph keeps (what the compiler relies on). */
function checkContract(spec: SpecializedGraph): void {
  const written = new Set<string>(spec.inputs.map((i) => i.name));
  for (const n of spec.nodes) {
    expect(isOpType(n.opType), n.opType).toBe(true);
    expect((OPS[n.opType as keyof typeof OPS] as OpDef).gpu, `${n.name} must not be a CPU-only op`).not.toBe('fold');
    expect(['Identity', 'Constant'].includes(n.opType), n.name).toBe(false);
    for (const v of n.inputs) {
      if (v === '') continue;
      expect(spec.types.has(v), `type of ${v}`).toBe(true);
      // Every input is a runtime input, an earlier output, resident data uploaded once, or a
      // CPU-only constant (an int64 beyond 32 bits, such as Slice's INT64_MAX end).
      expect(written.has(v) || spec.resident.has(v) || spec.constants.has(v), `${n.name} reads ${v}`).toBe(true);
    }
    // A node whose inputs are all small constants would have been folded.
    const present = n.inputs.filter((v) => v !== '');
    if (present.length > 0 && present.every((v) => spec.constants.has(v) && spec.constants.get(v)!.data.length < 1 << 20)) {
      expect.fail(`${n.name} (${n.opType}) reads only constants but was not folded`);
    }
    for (const o of n.outputs) {
      if (o === '') continue;
      expect(spec.types.has(o)).toBe(true);
      written.add(o);
    }
  }
  for (const w of spec.weights) expect(spec.source.initializers.has(w)).toBe(true);
  for (const [name, r] of spec.resident) {
    expect(r.data?.length, name).toBe(r.type.dims.reduce((a, b) => a * b, 1));
    expect(r.type).toEqual(spec.types.get(name));
  }
  for (const [name, v] of spec.constants) expect(v.dims).toEqual(spec.types.get(name)!.dims);
}

describe('fixtures at several shapes', () => {
  for (const m of ['bert', 'gpt2', 'llama', 'distilbert']) {
    for (const f of ['model.onnx', 'model_opset17.onnx']) {
      it(`${m}/${f}`, () => {
        const g = graphOf(m, f);
        const config = JSON.parse(readFileSync(`tests/fixtures/${m}/config.json`, 'utf8'));
        const labels = config.num_labels ?? (config.id2label ? Object.keys(config.id2label).length : undefined);
        for (const [b, s] of SHAPES) {
          const shapes = Object.fromEntries(g.inputs.map((i) => [i.name, [b, s]]));
          const spec = specialize(g, shapes);
          checkContract(spec);
          expect(spec.symbols).toEqual({ batch: b, sequence: s });
          expect(spec.inputs.map((i) => i.name)).toEqual(g.inputs.map((i) => i.name));
          const logits = spec.types.get(spec.outputs[0]!)!;
          expect(logits.dtype).toBe('float32');
          expect(logits.dims).toEqual(m === 'bert' || m === 'distilbert' ? [b, labels] : [b, s, config.vocab_size]);
          // The shape arithmetic is gone: only real work remains.
          const ops = new Set(spec.nodes.map((n) => n.opType));
          for (const folded of ['Shape', 'ConstantOfShape', 'Range', 'Constant', 'Identity', 'Dropout']) expect(ops.has(folded), folded).toBe(false);
          expect(spec.nodes.length).toBeLessThan(g.nodes.length);
          expect(ops.has('MatMul')).toBe(true);
        }
      });
    }
  }

  it('caches per shape key', () => {
    const g = graphOf('gpt2');
    const a = specialize(g, { input_ids: [2, 5], attention_mask: [2, 5] });
    expect(specialize(g, { attention_mask: [2, 5], input_ids: [2, 5] })).toBe(a);
    expect(specialize(g, { input_ids: [2, 6], attention_mask: [2, 6] })).not.toBe(a);
    expect(specialize(graphOf('gpt2'), { input_ids: [2, 5], attention_mask: [2, 5] })).not.toBe(a);
  });

  it('keeps weights as views of the initializers', () => {
    const g = graphOf('gpt2');
    const spec = specialize(g, { input_ids: [1, 4], attention_mask: [1, 4] });
    const w = 'transformer.h.0.attn.c_attn.weight';
    expect(spec.weights).toContain(w);
    expect(spec.resident.get(w)!.data).toBe(g.initializers.get(w)!.data);
    // Small initializers also carry float64 values, for shape rules and lowerings that read them.
    expect(spec.constants.get('transformer.h.0.attn.c_attn.bias')!.dims).toEqual([96]);
    for (const [name, v] of spec.constants) expect(v.data.length, name).toBeLessThanOrEqual(VALUE_LIMIT);
  });
});

/** A float32 model: x[dims] → nodes → y, built with onnx-proto. */
function tinyModel(
  nodes: onnx.INodeProto[],
  inputs: { name: string; dims: (number | string)[]; elemType?: number }[],
  outputs: { name: string; dims?: (number | string)[]; elemType?: number }[],
  initializers: onnx.ITensorProto[] = [],
  opset = 17,
): Uint8Array {
  const vi = (v: { name: string; dims?: (number | string)[]; elemType?: number }): onnx.IValueInfoProto => ({
    name: v.name,
    type: {
      tensorType: {
        elemType: v.elemType ?? 1,
        ...(v.dims ? { shape: { dim: v.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } : {}),
      },
    },
  });
  return onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: opset }],
    graph: { name: 'tiny', node: nodes, input: inputs.map(vi), output: outputs.map(vi), initializer: initializers },
  }).finish();
}

describe('graph rewriting', () => {
  it('drops Identity and Dropout, keeps output names, removes dead nodes', () => {
    const g = decodeOnnx(
      tinyModel(
        [
          { opType: 'Identity', name: 'id0', input: ['x'], output: ['a'] },
          { opType: 'Dropout', name: 'drop', input: ['a'], output: ['b'] },
          { opType: 'Relu', name: 'relu', input: ['b'], output: ['c'] },
          { opType: 'Neg', name: 'dead', input: ['c'], output: ['unused'] },
          { opType: 'Identity', name: 'id1', input: ['c'], output: ['y'] },
          { opType: 'Identity', name: 'id2', input: ['x'], output: ['z'] },
        ],
        [{ name: 'x', dims: ['n', 3] }],
        [{ name: 'y', dims: ['n', 3] }, { name: 'z' }],
      ),
    );
    const spec = specialize(g, { x: [2, 3] });
    expect(spec.nodes.map((n) => [n.name, n.inputs, n.outputs])).toEqual([['relu', ['x'], ['y']]]);
    expect(spec.outputNames).toEqual(['y', 'z']);
    expect(spec.outputs).toEqual(['y', 'x']); // z is the input itself
    const out = runReferenceGraph(spec, { x: { dtype: 'float32', dims: [2, 3], data: Float64Array.of(-1, 2, -3, 4, -5, 6) } });
    expect(Array.from(out.y!.data)).toEqual([0, 2, 0, 4, 0, 6]);
    expect(Array.from(out.z!.data)).toEqual([-1, 2, -3, 4, -5, 6]);
  });

  it('keeps a Dropout whose mask is read', () => {
    const g = decodeOnnx(
      tinyModel(
        [
          { opType: 'Dropout', name: 'drop', input: ['x'], output: ['a', 'mask'] },
          { opType: 'Cast', name: 'cast', input: ['mask'], output: ['m'], attribute: [{ name: 'to', type: 2, i: 1 }] },
          { opType: 'Add', name: 'add', input: ['a', 'm'], output: ['y'] },
        ],
        [{ name: 'x', dims: [2] }],
        [{ name: 'y', dims: [2] }],
      ),
    );
    const spec = specialize(g, { x: [2] });
    expect(spec.nodes.map((n) => n.opType)).toEqual(['Dropout', 'Cast', 'Add']);
    expect(Array.from(runReferenceGraph(spec, { x: { dtype: 'float32', dims: [2], data: Float64Array.of(1, 2) } }).y!.data)).toEqual([2, 3]);
  });

  it('folds nodes over constants and over the dims of runtime inputs', () => {
    const w = { name: 'w', dims: [3, 2], dataType: 1, floatData: [1, 2, 3, 4, 5, 6] };
    const g = decodeOnnx(
      tinyModel(
        [
          { opType: 'Transpose', name: 'wt', input: ['w'], output: ['w_t'] },
          { opType: 'MatMul', name: 'mm', input: ['x', 'w_t'], output: ['h'] },
          { opType: 'Shape', name: 'shape', input: ['x'], output: ['s'], attribute: [{ name: 'start', type: 2, i: -1 }] },
          { opType: 'Concat', name: 'cat', input: ['minus1', 's'], output: ['target'], attribute: [{ name: 'axis', type: 2, i: 0 }] },
          { opType: 'Reshape', name: 'reshape', input: ['x', 'target'], output: ['y'] },
        ],
        [{ name: 'x', dims: ['b', 2] }],
        [{ name: 'h', dims: ['b', 3] }, { name: 'y' }],
        [w, { name: 'minus1', dims: [1], dataType: 7, int64Data: [-1] }],
      ),
    );
    const spec = specialize(g, { x: [4, 2] });
    expect(spec.nodes.map((n) => n.opType)).toEqual(['MatMul', 'Reshape']);
    expect(Array.from(spec.constants.get('w_t')!.data)).toEqual([1, 3, 5, 2, 4, 6]);
    expect(Array.from(spec.constants.get('target')!.data)).toEqual([-1, 2]);
    expect(spec.types.get('y')!.dims).toEqual([4, 2]);
    expect(spec.weights).toEqual([]); // w is only read by the folded Transpose
    expect(spec.resident.get('w_t')!.data).toEqual(Float32Array.of(1, 3, 5, 2, 4, 6));
    // Over the fold limit, the Transpose stays for the GPU and reads the weight.
    const big = specialize(g, { x: [4, 2] }, { foldLimit: 4 });
    expect(big.nodes.map((n) => n.opType)).toEqual(['Transpose', 'MatMul', 'Reshape']);
    expect(big.weights).toEqual(['w']);
    expect(big.resident.get('w')!.data).toBe(g.initializers.get('w')!.data);
    const x = { dtype: 'float32' as const, dims: [4, 2], data: Float64Array.of(1, 0, 0, 1, 1, 1, 2, -1) };
    expect(runReferenceGraph(big, { x }).h).toEqual(runReferenceGraph(spec, { x }).h);
    expect(Array.from(runReferenceGraph(spec, { x }).h!.data)).toEqual([1, 3, 5, 2, 4, 6, 3, 7, 11, 0, 2, 4]);
    // Shape-15's start attribute is honoured; below opset 15 Shape returns every dim.
    const g13 = decodeOnnx(
      tinyModel(
        [{ opType: 'Shape', name: 'shape', input: ['x'], output: ['s'] }],
        [{ name: 'x', dims: ['b', 2] }],
        [{ name: 's', elemType: 7 }],
        [],
        13,
      ),
    );
    const s13 = specialize(g13, { x: [5, 2] });
    expect(s13.nodes).toEqual([]);
    expect(Array.from(runReferenceGraph(s13, { x: { dtype: 'float32', dims: [5, 2], data: new Float64Array(10) } }).s!.data)).toEqual([5, 2]);
  });

  it('tells ops how many outputs the node declares (Split without sizes)', () => {
    const g = decodeOnnx(
      tinyModel(
        [{ opType: 'Split', name: 'split', input: ['x'], output: ['a', 'b', 'c'] }],
        [{ name: 'x', dims: [6] }],
        [{ name: 'a' }, { name: 'b' }, { name: 'c' }],
      ),
    );
    const spec = specialize(g, { x: [6] });
    expect(['a', 'b', 'c'].map((v) => spec.types.get(v)!.dims)).toEqual([[2], [2], [2]]);
    const out = runReferenceGraph(spec, { x: { dtype: 'float32', dims: [6], data: Float64Array.of(1, 2, 3, 4, 5, 6) } });
    expect(Array.from(out.c!.data)).toEqual([5, 6]);
  });

  it('runs internal ops of graphs built in code, and rejects ops outside their domain', () => {
    const l: Initializer = { name: 'l', dtype: 'float32', dims: [3], data: Float32Array.of(1, 2, 3) };
    const node = { name: 'scale', opType: 'IA3Scale', domain: 'ia3', inputs: ['x', 'l'], outputs: ['y'], attrs: {} };
    const graph: Graph = {
      name: 'built',
      opsets: new Map([['', 17]]),
      irVersion: 8,
      producer: 'test',
      inputs: [{ name: 'x', dtype: 'float32', dims: ['n', 3] }],
      outputs: [{ name: 'y', dtype: 'float32', dims: ['n', 3] }],
      initializers: new Map([['l', l]]),
      nodes: [node],
    };
    const spec = specialize(graph, { x: [2, 3] });
    expect(spec.nodes.map((n) => [n.opType, n.domain])).toEqual([['IA3Scale', 'ia3']]);
    const y = runReferenceGraph(spec, { x: { dtype: 'float32', dims: [2, 3], data: Float64Array.of(1, 1, 1, 2, 2, 2) } }).y!;
    expect(Array.from(y.data)).toEqual([1, 2, 3, 2, 4, 6]);
    // The same op claimed for the ONNX domain is not the registry's op.
    expect(() => specialize({ ...graph, nodes: [{ ...node, domain: '' }] }, { x: [2, 3] })).toThrow(UnsupportedOpError);
    // Nor is an op a file named but the registry lacks (decoded with allowUnsupported).
    const odd = decodeOnnx(
      tinyModel([{ opType: 'Mystery', name: 'm', input: ['x'], output: ['y'] }], [{ name: 'x', dims: [2] }], [{ name: 'y' }]),
      { allowUnsupported: true },
    );
    expect(() => specialize(odd, { x: [2] })).toThrow("Mystery node 'm' (opset 17): not implemented");
  });

  it('fails on a CPU-only op whose input is only known at run time', () => {
    const g = decodeOnnx(
      tinyModel(
        [{ opType: 'ConstantOfShape', name: 'cos', input: ['shape'], output: ['y'] }],
        [{ name: 'shape', dims: [2], elemType: 7 }],
        [{ name: 'y' }],
      ),
    );
    const e = (() => {
      try {
        specialize(g, { shape: [2] });
      } catch (err) {
        return err as Error;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(UnsupportedOpError);
    expect(e!.message).toContain("ConstantOfShape node 'cos'");
  });
});

describe('input validation', () => {
  const g = graphOf('llama');

  it('names the input, expected and got, for a wrong rank', () => {
    expect(() => specialize(g, { input_ids: [3], attention_mask: [3, 5], position_ids: [3, 5] })).toThrow(InputError);
    expect(() => specialize(g, { input_ids: [3], attention_mask: [3, 5], position_ids: [3, 5] })).toThrow(
      "input 'input_ids': expected rank 2 ([batch, sequence]), got [3]",
    );
  });

  it('binds each symbol to one size', () => {
    expect(() => specialize(g, { input_ids: [2, 5], attention_mask: [2, 6], position_ids: [2, 5] })).toThrow(
      "input 'attention_mask': dim 1 is 'sequence', which input 'input_ids' sets to 5, but got 6",
    );
  });

  it('rejects unknown and missing inputs and negative or fractional dims (0 is a valid size)', () => {
    expect(() => specialize(g, { input_ids: [2, 5], attention_mask: [2, 5], position_ids: [2, 5], labels: [2, 5] })).toThrow(
      "unknown input 'labels'",
    );
    expect(() => specialize(g, { input_ids: [2, 5], attention_mask: [2, 5] })).toThrow(/missing input 'position_ids'/);
    expect(() => specialize(g, { input_ids: [2, -1], attention_mask: [2, -1], position_ids: [2, -1] })).toThrow(InputError);
    expect(() => specialize(g, { input_ids: [2, 1.5], attention_mask: [2, 5], position_ids: [2, 5] })).toThrow(/non-negative integers/);
  });

  it('checks static dims', () => {
    const m = decodeOnnx(
      tinyModel([{ opType: 'Relu', name: 'relu', input: ['x'], output: ['y'] }], [{ name: 'x', dims: [4, 'n'] }], [{ name: 'y', dims: [4, 'n'] }]),
    );
    expect(specialize(m, { x: [4, 9] }).types.get('y')!.dims).toEqual([4, 9]);
    expect(() => specialize(m, { x: [3, 9] })).toThrow("input 'x': expected [4, n], got [3, 9] (dim 0 must be 4)");
  });

  it('warns once per output whose computed shape disagrees with its declaration, as onnxruntime does', () => {
    const m = decodeOnnx(
      tinyModel([{ opType: 'Relu', name: 'relu', input: ['x'], output: ['y'] }], [{ name: 'x', dims: ['n'] }], [{ name: 'y', dims: ['n', 1] }]),
    );
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      expect(specialize(m, { x: [3] }).types.get('y')!.dims).toEqual([3]);
      specialize(m, { x: [4] });
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0]![0])).toMatch(/graph output 'y' is declared \[n, 1\] but computes \[3\]/);
    } finally {
      warn.mockRestore();
    }
  });
});
