// Decomposed LayerNorm and tanh-GELU chains (as torch.onnx writes them below opset 17) become one
// LayerNormalization / Gelu node at specialisation, and compute what the chain computes (float64
// formulas written here); near misses — another exponent, an intermediate read outside the chain,
// a GELU constant off — stay as they are. The fixtures' counts: one LayerNorm per ln_1 / ln_2 / ln_f,
// and attention's transposed keys read by a transposing product.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Graph, Initializer, Node } from '../../src/ir/graph.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { runReferenceGraph } from '../../src/onnx/executor.js';
import { fuseDecomposedOps } from '../../src/onnx/fuse-patterns.js';
import { specialize } from '../../src/onnx/specialize.js';

const C = 8;
const ROWS = 3;
const scalar = (name: string, v: number): Initializer => ({ name, dtype: 'float32', dims: [], data: Float32Array.of(v), constant: true });
const vec = (name: string, f: (i: number) => number): Initializer => ({ name, dtype: 'float32', dims: [C], data: Float32Array.from({ length: C }, (_, i) => f(i)) });
const node = (opType: string, inputs: string[], output: string, attrs: Node['attrs'] = {}): Node => ({ name: `${opType}_${output}`, opType, domain: '', inputs, outputs: [output], attrs });

/** x → LayerNorm (decomposed) → GELU (decomposed) → y; `change` edits the chain before building. */
function chainGraph(change: { exponent?: number; cubic?: number; extraOutput?: string } = {}): Graph {
  const inits = [
    scalar('two', change.exponent ?? 2),
    scalar('eps', 1e-5),
    vec('gamma', (i) => 1 + 0.1 * i),
    vec('beta', (i) => 0.05 * i - 0.2),
    scalar('half', 0.5),
    scalar('three', 3),
    scalar('cubic', change.cubic ?? 0.044715),
    scalar('root', Math.sqrt(2 / Math.PI)),
    scalar('one', 1),
  ];
  const nodes = [
    node('ReduceMean', ['x'], 'm', { axes: [-1] }),
    node('Sub', ['x', 'm'], 'd'),
    node('Pow', ['d', 'two'], 'd2'),
    node('ReduceMean', ['d2'], 'v', { axes: [-1] }),
    node('Add', ['v', 'eps'], 've'),
    node('Sqrt', ['ve'], 's'),
    node('Div', ['d', 's'], 'n'),
    node('Mul', ['n', 'gamma'], 'ng'),
    node('Add', ['ng', 'beta'], 'h'),
    node('Mul', ['h', 'half'], 'hh'),
    node('Pow', ['h', 'three'], 'h3'),
    node('Mul', ['h3', 'cubic'], 'hc'),
    node('Add', ['h', 'hc'], 'hs'),
    node('Mul', ['hs', 'root'], 'hr'),
    node('Tanh', ['hr'], 't'),
    node('Add', ['t', 'one'], 't1'),
    node('Mul', ['hh', 't1'], 'y'),
  ];
  return {
    name: 'chain',
    opsets: new Map([['', 14]]),
    irVersion: 8,
    producer: 'test',
    inputs: [{ name: 'x', dtype: 'float32', dims: [ROWS, C] }],
    outputs: [{ name: 'y' }, ...(change.extraOutput ? [{ name: change.extraOutput }] : [])],
    initializers: new Map(inits.map((i) => [i.name, i])),
    nodes,
  };
}

const X = Float64Array.from({ length: ROWS * C }, (_, i) => Math.sin(1.3 * i) * 2 + (i % 3));

/** The chain in float64, written out: LayerNorm over the last dim, then the tanh GELU. */
function expected(exponent = 2, cubic = 0.044715): number[] {
  const out: number[] = [];
  for (let r = 0; r < ROWS; r++) {
    const row = Array.from(X.subarray(r * C, (r + 1) * C));
    const mean = row.reduce((a, b) => a + b, 0) / C;
    const variance = row.reduce((a, b) => a + Math.pow(b - mean, exponent), 0) / C;
    row.forEach((v, i) => {
      const h = ((v - mean) / Math.sqrt(variance + 1e-5)) * (1 + 0.1 * i) + (0.05 * i - 0.2);
      out.push(0.5 * h * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (h + cubic * h ** 3))));
    });
  }
  return out;
}

function run(graph: Graph): { ops: string[]; y: number[] } {
  const spec = specialize(graph, { x: [ROWS, C] });
  const y = runReferenceGraph(spec, { x: { dtype: 'float32', dims: [ROWS, C], data: X } }).y!;
  return { ops: spec.nodes.map((n) => n.opType), y: Array.from(y.data) };
}

describe('decomposed LayerNorm and tanh GELU', () => {
  it('become LayerNormalization and Gelu, computing the same values', () => {
    const { ops, y } = run(chainGraph());
    expect(ops).toEqual(['LayerNormalization', 'Gelu']);
    y.forEach((v, i) => expect(v).toBeCloseTo(expected()[i]!, 5));
  });

  it('leave near misses as they are', () => {
    const cube = run(chainGraph({ exponent: 4 }));
    expect(cube.ops).toContain('ReduceMean');
    expect(cube.ops).toContain('Gelu');
    cube.y.forEach((v, i) => expect(v).toBeCloseTo(expected(4)[i]!, 5));
    const off = run(chainGraph({ cubic: 0.05 }));
    expect(off.ops[0]).toBe('LayerNormalization');
    expect(off.ops).toContain('Tanh');
    off.y.forEach((v, i) => expect(v).toBeCloseTo(expected(2, 0.05)[i]!, 5));
    // An intermediate that is a graph output must stay computed.
    const g = chainGraph({ extraOutput: 'n' });
    expect(fuseDecomposedOps(g).nodes.some((n) => n.opType === 'LayerNormalization')).toBe(false);
    expect(fuseDecomposedOps(g).nodes.some((n) => n.opType === 'Gelu')).toBe(true);
  });

  it('finds every LayerNorm and GELU of the opset-14 GPT-2 and BERT fixtures', () => {
    const count = (m: string, op: string) => fuseDecomposedOps(decodeOnnx(new Uint8Array(readFileSync(`tests/fixtures/${m}/onnx/model.onnx`)))).nodes.filter((n) => n.opType === op).length;
    // GPT-2 (2 layers): ln_1, ln_2 per layer and ln_f; one gelu_new per MLP.
    expect(count('gpt2', 'LayerNormalization')).toBe(5);
    expect(count('gpt2', 'Gelu')).toBe(2);
    // BERT (2 layers): the embeddings' LayerNorm and two per layer (its GELU is the erf form).
    expect(count('bert', 'LayerNormalization')).toBe(5);
    // Attention's kᵀ (Transpose [0, 2, 3, 1]) is read transposed by the product: one per layer, and
    // what is left of the permutation is the [0, 2, 1, 3] head split, like q's and v's.
    const gpt2 = fuseDecomposedOps(decodeOnnx(new Uint8Array(readFileSync('tests/fixtures/gpt2/onnx/model.onnx'))));
    const products = gpt2.nodes.filter((n) => n.opType === 'FusedMatMul');
    expect(products.map((n) => n.attrs)).toEqual([{ transB: 1 }, { transB: 1 }]);
    const perms = gpt2.nodes.filter((n) => n.opType === 'Transpose').map((n) => (n.attrs.perm as number[]).join(''));
    expect(perms.filter((p) => p !== '0213')).toEqual([]);
    // The file's nodes keep their order (a Transpose stays where it was, before its product).
    for (const mm of products) expect(gpt2.nodes.findIndex((n) => n.outputs.includes(mm.inputs[1]!))).toBeLessThan(gpt2.nodes.indexOf(mm));
  });
});
