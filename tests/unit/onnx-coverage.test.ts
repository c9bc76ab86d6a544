// Standard-ONNX coverage (issue 12): exact int64 decoding, If flattened on load and decided at
// specialisation, duplicate definitions and opset ranges as onnxruntime treats them, IA3 module
// sites in both branches of a merged decoder, TensorFlow names, index checks, and the feeds
// training builds for decoders with a cache.
import { readFileSync } from 'node:fs';
import Long from 'long';
import { onnx } from 'onnx-proto';
import { describe, expect, it, vi } from 'vitest';
import { FormatError, IndexOutOfRangeError, InputError, UnsupportedOpError } from '../../src/errors.js';
import type { Graph } from '../../src/ir/graph.js';
import { tensor } from '../../src/ir/tensor.js';
import { decodeOnnx, externalDataRefs, MAX_BRANCH_DEPTH, parseModel, supportReason, toBigInt64 } from '../../src/onnx/decode.js';
import { runReferenceModel } from '../../src/onnx/executor.js';
import { raiseIndexChecks } from '../../src/onnx/index-checks.js';
import { findModules, parameterPath, tfParameterPath } from '../../src/onnx/modules.js';
import { specialize } from '../../src/onnx/specialize.js';
import { decodeIndexStatus, indexStatus } from '../../src/ops/index-check.js';
import { insertIA3 } from '../../src/peft/inject.js';
import { collate, emptyInputsOf } from '../../src/train/data.js';
import { graphModel } from '../util/onnx-build.js';

const BOOL = onnx.TensorProto.DataType.BOOL;
const INT64 = onnx.TensorProto.DataType.INT64;
const fixture = (path: string): Graph => decodeOnnx(new Uint8Array(readFileSync(`tests/fixtures/${path}`)), { fileName: path.split('/').pop()! });
const ref = (dims: number[], data: number[], dtype: 'float32' | 'int64' | 'bool' = 'float32') => tensor(dtype, dims, data);

describe('int64 values are decoded exactly', () => {
  it('keeps INT64_MAX / INT64_MIN from int64_data and Constant value_ints (the keras2onnx Slice bug)', () => {
    const max = Long.MAX_VALUE;
    const min = Long.MIN_VALUE;
    const bytes = graphModel(
      [
        { opType: 'Constant', name: 'c', output: ['ends'], attribute: [{ name: 'value_ints', type: onnx.AttributeProto.AttributeType.INTS, ints: [max, min, Long.fromInt(-3)] }] },
        { opType: 'Slice', name: 's', input: ['x', 'starts', 'stop'], output: ['y'] },
      ],
      [{ name: 'x', dims: [2, 5] }],
      [{ name: 'y' }],
      [
        { name: 'starts', dataType: INT64, dims: [2], int64Data: [Long.fromInt(0), Long.fromInt(1)] },
        { name: 'stop', dataType: INT64, dims: [2], int64Data: [max, max] },
      ],
    );
    const g = decodeOnnx(bytes);
    expect(Array.from(g.initializers.get('stop')!.data as BigInt64Array)).toEqual([2n ** 63n - 1n, 2n ** 63n - 1n]);
    expect(Array.from(g.initializers.get('ends')!.data as BigInt64Array)).toEqual([2n ** 63n - 1n, -(2n ** 63n), -3n]);
    // The slice to the end keeps everything (before the fix every end clamped to 0: an empty tensor).
    const y = runReferenceModel(g, { x: ref([2, 5], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]) }).y!;
    expect(y.dims).toEqual([2, 4]);
  });

  it('clamps int64 fields protobufjs already rounded to a double (no `long` package) to the int64 range', () => {
    expect(toBigInt64(2 ** 63)).toBe(2n ** 63n - 1n);
    expect(toBigInt64(-(2 ** 63))).toBe(-(2n ** 63n));
    expect(toBigInt64(-7)).toBe(-7n);
    expect(toBigInt64(Long.fromString('-9223372036854775807'))).toBe(-(2n ** 63n) + 1n);
    expect(toBigInt64(null)).toBe(0n);
  });
});

/** An If whose branches reuse value names (as optimum's merge does) and read an outer value. */
function ifModel(cond: { input: true } | { shapeOf: string }, nested = 0): Uint8Array {
  const branch = (name: string, op: string, depth: number): onnx.IGraphProto => ({
    name,
    node: [
      { opType: 'Constant', name: 'k', output: ['k'], attribute: [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: { dataType: 1, dims: [], floatData: [op === 'Add' ? 10 : 2] } }] },
      ...(depth > 0
        ? [
            { opType: op, name: 'op', input: ['x', 'k'], output: ['t'] },
            // Only the then branch nests further, so the file grows linearly with the depth.
            { opType: 'If', name: 'inner', input: ['c'], output: ['out'], attribute: [{ name: 'then_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch('it', 'Add', depth - 1) }, { name: 'else_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch('ie', 'Mul', 0) }] },
          ]
        : [{ opType: op, name: 'op', input: ['x', 'k'], output: ['out'] }]),
    ],
    output: [{ name: 'out', type: { tensorType: { elemType: 1 } } }],
  });
  const nodes: onnx.INodeProto[] = [];
  if ('shapeOf' in cond) {
    nodes.push(
      { opType: 'Shape', name: 'shape', input: [cond.shapeOf], output: ['s'] },
      { opType: 'ReduceProd', name: 'n', input: ['s'], output: ['n'], attribute: [{ name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] },
      { opType: 'Equal', name: 'empty', input: ['n', 'zero'], output: ['c'] },
    );
  }
  nodes.push({
    opType: 'If',
    name: '/model/If',
    input: ['c'],
    output: ['y'],
    attribute: [
      { name: 'then_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch('then', 'Add', nested) },
      { name: 'else_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch('else', 'Mul', 0) },
    ],
  });
  return graphModel(
    nodes,
    [{ name: 'x', dims: ['n'] }, 'input' in cond ? { name: 'c', dims: [1], elemType: BOOL } : { name: 'past', dims: [2, 'p'] }],
    [{ name: 'y', dims: ['n'] }],
    'shapeOf' in cond ? [{ name: 'zero', dataType: INT64, dims: [], int64Data: [Long.fromInt(0)] }] : [],
    17,
  );
}

describe('If', () => {
  it('is flattened on load: both branches inlined, their values renamed per branch, node scopes kept', () => {
    const g = decodeOnnx(ifModel({ input: true }));
    const names = g.nodes.map((n) => n.name);
    expect(names).toEqual(['op@|model|If:then', 'op@|model|If:else', '/model/If']);
    const iff = g.nodes[2]!;
    expect(iff.inputs).toEqual(['c', 'out@|model|If:then', 'out@|model|If:else']);
    expect(g.initializers.get('k@|model|If:then')!.constant).toBe(true);
    expect(g.nodes[0]!.inputs).toEqual(['x', 'k@|model|If:then']);
  });

  it('runs the branch the condition input selects, specialising on its value', () => {
    const g = decodeOnnx(ifModel({ input: true }));
    const x = ref([3], [1, 2, 3]);
    expect(Array.from(runReferenceModel(g, { x, c: ref([1], [1], 'bool') }).y!.data)).toEqual([11, 12, 13]);
    expect(Array.from(runReferenceModel(g, { x, c: ref([1], [0], 'bool') }).y!.data)).toEqual([2, 4, 6]);
    const a = specialize(g, { x: [3], c: [1] }, { values: { c: [1] } });
    const b = specialize(g, { x: [3], c: [1] }, { values: { c: [0] } });
    expect(a).not.toBe(b);
    expect(a.key).toMatch(/if:\/model\/If=1$/);
    expect(specialize(g, { x: [3], c: [1] }, { values: { c: [1] } })).toBe(a);
    expect(a.nodes.map((n) => n.name)).toEqual(['op@|model|If:then']);
    expect(b.nodes.map((n) => n.name)).toEqual(['op@|model|If:else']);
    // The plan still reads the condition's input at run time? No: no kept node reads it.
    expect(a.inputs.map((i) => i.name)).toEqual(['x']);
  });

  it('decides a condition computed from shapes (an empty past) without any value', () => {
    const g = decodeOnnx(ifModel({ shapeOf: 'past' }));
    const x = ref([2], [1, 2]);
    expect(Array.from(runReferenceModel(g, { x, past: tensor('float32', [2, 0]) }).y!.data)).toEqual([11, 12]);
    expect(Array.from(runReferenceModel(g, { x, past: tensor('float32', [2, 3]) }).y!.data)).toEqual([2, 4]);
  });

  it('refuses a condition only known at run time, naming the If and what it reads', () => {
    const g = decodeOnnx(ifModel({ input: true }));
    expect(() => specialize(g, { x: [3], c: [1] })).toThrow(UnsupportedOpError);
    expect(() => specialize(g, { x: [3], c: [1] })).toThrow(/If node '\/model\/If'.*condition 'c' is only known at run time \(it reads 'c'\)/);
  });

  it('flattens nested Ifs, and refuses nesting deeper than the bound', () => {
    const g = decodeOnnx(ifModel({ input: true }, 2));
    expect(g.nodes.filter((n) => n.opType === 'If')).toHaveLength(3);
    expect(g.nodes.map((n) => n.name)).toContain('op@|model|If:then>inner:then>inner:then');
    const x = ref([1], [1]);
    // Every level reads the outer condition and the outer x: the innermost then branch computes x + 10.
    expect(Array.from(runReferenceModel(g, { x, c: ref([1], [1], 'bool') }).y!.data)).toEqual([11]);
    expect(Array.from(runReferenceModel(g, { x, c: ref([1], [0], 'bool') }).y!.data)).toEqual([2]);
    expect(() => decodeOnnx(ifModel({ input: true }, MAX_BRANCH_DEPTH))).toThrow(FormatError);
    expect(() => decodeOnnx(ifModel({ input: true }, MAX_BRANCH_DEPTH))).toThrow(/nests branches more than 16 deep/);
  });

  it('refuses branches with inputs or the wrong number of outputs, and checks unsupported ops inside', () => {
    const bad = (branch: onnx.IGraphProto): Uint8Array =>
      graphModel(
        [{ opType: 'If', name: 'i', input: ['c'], output: ['y'], attribute: [{ name: 'then_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch }, { name: 'else_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch }] }],
        [{ name: 'c', dims: [1], elemType: BOOL }],
        [{ name: 'y' }],
      );
    const out = { name: 'o', type: { tensorType: { elemType: 1 } } };
    expect(() => decodeOnnx(bad({ name: 'b', input: [out], output: [out], node: [] }))).toThrow(/declares inputs; If branches take none/);
    expect(() => decodeOnnx(bad({ name: 'b', output: [out, out], node: [] }))).toThrow(/has 2 outputs, the node has 1/);
    expect(() => decodeOnnx(bad({ name: 'b', output: [out], node: [{ opType: 'Mystery', name: 'm', output: ['o'] }] }))).toThrow(/Mystery \(2 nodes, e.g. 'm@i:then'\)/);
  });

  it("lists branch initializers' external data and keeps their names unless taken", () => {
    const t: onnx.ITensorProto = { name: 'w', dataType: 1, dims: [1], dataLocation: onnx.TensorProto.DataLocation.EXTERNAL, externalData: [{ key: 'location', value: 'w.bin' }] };
    const bytes = graphModel(
      [{ opType: 'If', name: 'i', input: ['c'], output: ['y'], attribute: ['then_branch', 'else_branch'].map((name) => ({ name, type: onnx.AttributeProto.AttributeType.GRAPH, g: { name, initializer: [t], node: [{ opType: 'Identity', name: 'id', input: ['w'], output: ['o'] }], output: [{ name: 'o', type: { tensorType: { elemType: 1 } } }] } })) }],
      [{ name: 'c', dims: [1], elemType: BOOL }],
      [{ name: 'y' }],
    );
    expect(externalDataRefs(parseModel(bytes)).map((r) => r.location)).toEqual(['w.bin']);
    const g = decodeOnnx(bytes, { externalData: { 'w.bin': new Uint8Array(4) } });
    expect([...g.initializers.keys()].sort()).toEqual(['w', 'w@i:else']);
  });
});

describe("onnxruntime's rules for duplicates and versions", () => {
  it('keeps the latest of duplicate initializers (Constant nodes come last), warning; refuses a node redefining one', () => {
    const init = (v: number): onnx.ITensorProto => ({ name: 'k', dataType: 1, dims: [], floatData: [v] });
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const twice = decodeOnnx(graphModel([{ opType: 'Add', name: 'a', input: ['x', 'k'], output: ['y'] }], [{ name: 'x', dims: [1] }], [{ name: 'y' }], [init(1), init(2)]));
      expect(twice.initializers.get('k')!.data![0]).toBe(2);
      const constant = { opType: 'Constant', name: 'c', output: ['k'], attribute: [{ name: 'value_float', type: onnx.AttributeProto.AttributeType.FLOAT, f: 5 }] };
      const both = decodeOnnx(graphModel([constant, { opType: 'Add', name: 'a', input: ['x', 'k'], output: ['y'] }], [{ name: 'x', dims: [1] }], [{ name: 'y' }], [init(1)]));
      expect(both.initializers.get('k')!.data![0]).toBe(5);
      expect(warn).toHaveBeenCalledTimes(2);
      expect(String(warn.mock.calls[1]![0])).toMatch(/'k' is defined more than once \(Constant node 'c' repeats it\); the latest definition is used/);
    } finally {
      warn.mockRestore();
    }
    const redefined = graphModel([{ opType: 'Relu', name: 'r', input: ['x'], output: ['k'] }], [{ name: 'x', dims: [1] }], [{ name: 'k' }], [init(1)]);
    expect(() => decodeOnnx(redefined)).toThrow(/value 'k' is produced twice/);
  });

  it('refuses an op outside its opset range, naming op, node and opset', () => {
    const einsum = graphModel([{ opType: 'Einsum', name: 'e', input: ['x'], output: ['y'], attribute: [{ name: 'equation', type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode('ij->ji') }] }], [{ name: 'x', dims: [2, 3] }], [{ name: 'y' }], [], 11);
    expect(() => decodeOnnx(einsum)).toThrow(UnsupportedOpError);
    expect(() => decodeOnnx(einsum)).toThrow(/Einsum \(node 'e': implemented from opset 12; the model uses opset 11\)/);
    expect(supportReason('Range', '', 27)).toMatch(/implemented up to opset 26/);
    expect(supportReason('CumSum', '', 10)).toMatch(/implemented from opset 11/);
    expect(supportReason('LessOrEqual', '', 11)).toMatch(/implemented from opset 12/);
    expect(supportReason('Add', '', 7)).toBeUndefined();
  });
});

describe('IA3 module paths', () => {
  it('finds one module per path in a merged decoder, with the other branch as a site, and scales both', () => {
    const g = fixture('real/gpt2-past/onnx/decoder_model_merged.onnx');
    const modules = findModules(g);
    expect(modules.map((m) => m.path)).toEqual(findModules(fixture('gpt2/onnx/model.onnx')).map((m) => m.path));
    const cAttn = modules.find((m) => m.path === 'transformer.h.0.attn.c_attn')!;
    expect(cAttn.node).toMatch(/^\/transformer\/h\.0\/attn\/c_attn\/Gemm@/);
    expect(cAttn.sites).toHaveLength(1);
    expect(cAttn.sites![0]!.node).not.toBe(cAttn.node);
    const vec = { name: 'ia3::default::transformer.h.0.attn.c_attn', dtype: 'float32' as const, dims: [96, 1], data: new Float32Array(96).fill(2) };
    const rewritten = insertIA3(g, [{ module: cAttn, feedforward: false, vectors: [vec] }]);
    expect(rewritten.nodes.filter((n) => n.opType === 'IA3Scale')).toHaveLength(2);
  });

  it('maps TensorFlow variable names to PyTorch module paths as transformers does', () => {
    expect(tfParameterPath('bert/encoder/layer_0/attention/self/key/kernel:0', 'weight')).toBe('bert.encoder.layer.0.attention.self.key');
    expect(tfParameterPath('tf_bert_for_sequence_classification/bert/encoder/layer_._11/output/dense/kernel:0', 'weight')).toBe('bert.encoder.layer.11.output.dense');
    expect(tfParameterPath('tf_bert_for_sequence_classification/classifier/kernel:0', 'weight')).toBe('classifier');
    expect(tfParameterPath('bert/encoder/layer_0/output/dense/bias:0', 'bias')).toBe('bert.encoder.layer.0.output.dense');
    expect(tfParameterPath('output_weights:0', 'weight')).toBeUndefined();
    expect(tfParameterPath('bert/embeddings/token_type_embeddings:0', 'weight')).toBeUndefined();
    expect(parameterPath('bert.encoder.layer.0.attention.self.key.weight', 'weight')).toBe('bert.encoder.layer.0.attention.self.key');
    const tf = findModules(fixture('real/bert-tf-opset10/onnx/model_keras.onnx')).map((m) => m.path);
    expect(tf).toEqual(findModules(fixture('bert/onnx/model.onnx')).map((m) => m.path));
  });
});

describe('index checks', () => {
  const g = fixture('real/roberta-positions/onnx/model.onnx');
  const guarded = (len: number): string[] => (specialize(g, { input_ids: [1, len], attention_mask: [1, len] }).checks ?? []).map((c) => c.node);

  it("proves RoBERTa's computed positions in range while they fit the table, and guards them once they may not", () => {
    const positions = '/roberta/embeddings/position_embeddings/Gather';
    expect(guarded(32)).not.toContain(positions); // positions ≤ 32 + 1 < 34 rows
    expect(guarded(33)).toContain(positions);
    // Token ids come from the user: always guarded on the GPU.
    expect(guarded(8)).toContain('/roberta/embeddings/word_embeddings/Gather');
  });

  it('encodes the count and the extreme offending indices, and raises onnxruntime’s error from them', () => {
    const words = indexStatus([0, 34, -40, 5, 35], 34);
    expect(words[0]).toBe(3);
    expect(decodeIndexStatus(Int32Array.from(words))).toEqual({ count: 3, max: 35, min: -40 });
    expect(indexStatus([0, 33, -34], 34)).toEqual([0, 0, 0]);
    const checks = [{ value: 'v', node: 'pos', opType: 'Gather', axisDim: 34 }];
    expect(() => raiseIndexChecks(checks, () => Int32Array.from(words))).toThrow(IndexOutOfRangeError);
    expect(() => raiseIndexChecks(checks, () => Int32Array.from(words))).toThrow("Gather node 'pos': indices element out of data bounds, idx=35 must be within the inclusive range [-34,33]");
    expect(() => raiseIndexChecks(checks, () => Int32Array.from(indexStatus([-40], 34)))).toThrow(/idx=-40/);
    expect(() => raiseIndexChecks(checks, () => Int32Array.of(0, 0, 0))).not.toThrow();
  });

  it('refuses a constant out-of-range index at specialisation', () => {
    const bytes = graphModel(
      [{ opType: 'Gather', name: 'g', input: ['table', 'idx'], output: ['y'] }],
      [{ name: 'table', dims: [4, 2] }],
      [{ name: 'y' }],
      [{ name: 'idx', dataType: INT64, dims: [2], int64Data: [Long.fromInt(1), Long.fromInt(4)] }],
    );
    expect(() => specialize(decodeOnnx(bytes), { table: [4, 2] })).toThrow("Gather node 'g': indices element out of data bounds, idx=4 must be within the inclusive range [-4,3] (a constant index)");
  });
});

describe('training feeds for decoders with a cache', () => {
  it("feeds optimum's caches empty and use_cache_branch false, TensorFlow's inputs by their aliases, float masks as float", () => {
    const merged = fixture('real/llama-past/onnx/decoder_model_merged.onnx');
    const empty = emptyInputsOf(merged.inputs);
    expect(empty.map((e) => e.name)).toEqual(['past_key_values.0.key', 'past_key_values.0.value', 'past_key_values.1.key', 'past_key_values.1.value', 'use_cache_branch']);
    expect(empty[0]!.dims).toEqual(['batch', 2, 0, 16]);
    const names = merged.inputs.map((i) => i.name);
    const b = collate([{ input_ids: [3, 4, 5] }, { input_ids: [6, 7] }], { task: 'CAUSAL_LM', padTokenId: 0, buckets: [4], maxLength: 4, inputNames: names, emptyInputs: empty });
    expect(b.other!['past_key_values.1.value']!.dims).toEqual([2, 2, 0, 16]);
    expect(Array.from(b.other!.use_cache_branch!.data)).toEqual([0]);
    expect(b.inputs.position_ids!.dims).toEqual([2, 4]);

    const tf = fixture('real/bert-tf-opset10/onnx/model.onnx');
    const t = collate([{ input_ids: [3, 4], label: 1 }], { task: 'SEQ_CLS', padTokenId: 0, buckets: [3], maxLength: 3, inputNames: tf.inputs.map((i) => i.name) });
    expect(Object.keys(t.inputs)).toEqual(['input_ids:0', 'input_mask:0', 'segment_ids:0']);
    expect(Array.from(t.inputs['input_mask:0']!.data)).toEqual([1n, 1n, 0n]);

    const legacy = fixture('real/gpt2-quirks/onnx/decoder_with_past_legacy.onnx');
    const l = collate([{ input_ids: [3, 4] }], {
      task: 'CAUSAL_LM', padTokenId: 0, buckets: [2], maxLength: 2, inputNames: legacy.inputs.map((i) => i.name),
      emptyInputs: emptyInputsOf(legacy.inputs), floatInputs: ['attention_mask'],
    });
    expect(l.other!.attention_mask!.data).toBeInstanceOf(Float32Array);
    expect(l.other!.past_0!.dims).toEqual([2, 1, 4, 0, 8]);
    expect(() => collate([{ input_ids: [1] }], { task: 'CAUSAL_LM', padTokenId: 0, buckets: [1], maxLength: 1, inputNames: ['input_ids', 'past_key_values.0.key'] })).toThrow(InputError);
  });
});
