// countParameters (src/onnx/parameters.ts): a tied weight stored twice by the exporter — as the
// embedding's transpose (torch.onnx's GPT-2 lm_head), as a byte-identical copy, or with its values on
// the GPU only (compared by statistics) — is counted once, as PyTorch and PEFT count it; weights that
// merely share a shape, or a tie broken by quantisation, count twice. The exported GPT-2 fixture's
// summary (describeGraph) states the same count and names the copy.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Graph, Initializer } from '../../src/ir/graph.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { describeGraph } from '../../src/onnx/describe.js';
import { findModules } from '../../src/onnx/modules.js';
import { countParameters } from '../../src/onnx/parameters.js';

const V = 6;
const D = 4;
const wte = Float32Array.from({ length: V * D }, (_, i) => Math.sin(i + 1));
const transpose = (x: Float32Array, r: number, c: number): Float32Array => Float32Array.from({ length: r * c }, (_, k) => x[(k % r) * c + Math.floor(k / r)]!);

function graphOf(inits: Initializer[]): Graph {
  return { name: 'tied', opsets: new Map([['', 17]]), irVersion: 8, producer: 'test', inputs: [], outputs: [], initializers: new Map(inits.map((i) => [i.name, i])), nodes: [] };
}

const embedding: Initializer = { name: 'transformer.wte.weight', dtype: 'float32', dims: [V, D], data: wte };
const bias: Initializer = { name: 'ln.bias', dtype: 'float32', dims: [D], data: new Float32Array(D) };

describe('countParameters', () => {
  it('counts the transposed copy of a tied embedding once (torch.onnx GPT-2 lm_head)', () => {
    const head: Initializer = { name: 'onnx::MatMul_1095', dtype: 'float32', dims: [D, V], data: transpose(wte, V, D) };
    expect(countParameters(graphOf([embedding, bias, head]))).toEqual({
      count: V * D + D,
      tensors: 2,
      bytes: (V * D + D) * 4,
      shared: [{ name: 'onnx::MatMul_1095', of: 'transformer.wte.weight', transposed: true }],
    });
  });

  it('counts a byte-identical copy once', () => {
    const copy: Initializer = { name: 'lm_head.weight', dtype: 'float32', dims: [V, D], data: wte.slice() };
    expect(countParameters(graphOf([embedding, copy])).shared).toEqual([{ name: 'lm_head.weight', of: 'transformer.wte.weight', transposed: false }]);
    expect(countParameters(graphOf([embedding, copy])).count).toBe(V * D);
  });

  it('counts weights that only share a shape (or hold the transpose of another shape) twice', () => {
    const other = wte.map((x) => x + 1e-3);
    const untied: Initializer = { name: 'lm_head.weight', dtype: 'float32', dims: [D, V], data: transpose(other, V, D) };
    // Same values but laid out [V, D] while the other is [D, V] read row-major as [V, D]: not a transpose.
    const reshaped: Initializer = { name: 'proj.weight', dtype: 'float32', dims: [D, V], data: wte.slice() };
    expect(countParameters(graphOf([embedding, untied, reshaped]))).toMatchObject({ count: 3 * V * D, tensors: 3, shared: [] });
    // Two zero biases of one size (a fresh model's) are equal by chance, not tied.
    const zeros = (name: string): Initializer => ({ name, dtype: 'float32', dims: [D], data: new Float32Array(D) });
    expect(countParameters(graphOf([zeros('a.bias'), zeros('b.bias')]))).toMatchObject({ count: 2 * D, shared: [] });
  });

  it('recognises a copy whose values live on the GPU by their statistics', () => {
    const s = { sum: 0, sumSquares: 0, min: Infinity, max: -Infinity };
    for (const x of wte) Object.assign(s, { sum: s.sum + x, sumSquares: s.sumSquares + x * x, min: Math.min(s.min, x), max: Math.max(s.max, x) });
    const onGpu = (name: string, dims: number[]): Initializer => ({ name, dtype: 'float32', dims, stats: { ...s } });
    expect(countParameters(graphOf([onGpu('wte', [V, D]), onGpu('head', [D, V])]))).toMatchObject({ count: V * D, shared: [{ name: 'head', of: 'wte', transposed: true }] });
    const different = { ...s, max: s.max + 1 };
    expect(countParameters(graphOf([onGpu('wte', [V, D]), { name: 'head', dtype: 'float32', dims: [D, V], stats: different }])).count).toBe(2 * V * D);
  });

  it('counts a tie broken by quantisation twice, and leaves out constants, buffers and integers', () => {
    const q: Initializer = { name: 'lm_head.q', dtype: 'float32', dims: [D, V], data: transpose(wte, V, D), storage: 'i8c' };
    const constant: Initializer = { name: 'c', dtype: 'float32', dims: [2], data: new Float32Array(2), constant: true };
    const cache: Initializer = { name: 'cos_cache', dtype: 'float32', dims: [2], data: new Float32Array(2), buffer: true };
    const ids: Initializer = { name: 'ids', dtype: 'int64', dims: [2], data: new BigInt64Array(2) };
    expect(countParameters(graphOf([embedding, q, constant, cache, ids]))).toMatchObject({ count: 2 * V * D, tensors: 2, shared: [] });
  });

  it("agrees with PyTorch's count on the exported GPT-2 fixture, and describeGraph says so", () => {
    // tests/fixtures/gpt2: tied wte [120, 32]; torch.onnx stores lm_head as its transpose.
    const g = decodeOnnx(new Uint8Array(readFileSync('tests/fixtures/gpt2/onnx/model.onnx')));
    const { count, shared } = countParameters(g);
    // The fixture's PyTorch reference (generated by its script): model.num_parameters().
    const pytorch = JSON.parse(readFileSync('tests/fixtures/gpt2/reference.json', 'utf8')) as { num_parameters: number };
    expect(count).toBe(pytorch.num_parameters);
    expect(shared).toEqual([expect.objectContaining({ of: 'transformer.wte.weight', transposed: true })]);
    const text = describeGraph(g, findModules(g));
    expect(text).toContain(`Parameters: ${count.toLocaleString('en-US')} in 28 float tensors`);
    expect(text).toContain(`'${shared[0]!.name}' is the transpose of 'transformer.wte.weight' (a tied weight, stored twice by the exporter): counted once`);
  });
});
