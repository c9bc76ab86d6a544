// Module paths of linear layers: the fixtures' exact Linear/Conv1D lists, each fallback in the
// order of trust (moduleMap, scope, weight name, bias name), model_type detection, describeGraph.
import { readFileSync } from 'node:fs';
import { onnx } from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { describeGraph } from '../../src/onnx/describe.js';
import { detectModelType, findModules, parameterPath, scopePath, unnamedLinears } from '../../src/onnx/modules.js';
import type { PModel } from '../util/onnx-build.js';

const MODELS = ['bert', 'gpt2', 'llama', 'distilbert'] as const;
const bytesOf = (m: string, f = 'model.onnx'): Uint8Array => new Uint8Array(readFileSync(`tests/fixtures/${m}/onnx/${f}`));
const json = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

interface RefModule {
  path: string;
  kind: 'Linear' | 'Conv1D';
  in_features: number;
  out_features: number;
  bias: boolean;
}

const refModules = (m: string): RefModule[] => json(`tests/fixtures/${m}/reference.json`).modules;

describe('fixture module lists', () => {
  for (const m of MODELS) {
    for (const f of ['model.onnx', 'model_opset17.onnx']) {
      it(`${m}/${f}: every Linear/Conv1D, in order, with in/out features and bias`, () => {
        const g = decodeOnnx(bytesOf(m, f));
        const mods = findModules(g);
        expect(mods.map((x) => ({ path: x.path, in_features: x.inFeatures, out_features: x.outFeatures, bias: x.bias !== undefined }))).toEqual(
          refModules(m).map((r) => ({ path: r.path, in_features: r.in_features, out_features: r.out_features, bias: r.bias })),
        );
        expect(unnamedLinears(g, mods)).toEqual([]);
        for (const x of mods) {
          const w = g.initializers.get(x.weight)!;
          // The stored weight's dims agree with the layout.
          expect(x.weightLayout === 'in_out' ? w.dims : [...w.dims].reverse()).toEqual([x.inFeatures, x.outFeatures]);
          if (x.bias) {
            expect(g.initializers.get(x.bias.initializer)!.dims).toEqual([x.outFeatures]);
            expect(g.nodes.some((n) => n.name === x.bias!.node)).toBe(true);
          }
          expect(x.pathSource).toBe('scope');
        }
      });
    }
  }

  it('describes each kind of layer exactly', () => {
    const bert = findModules(decodeOnnx(bytesOf('bert')));
    expect(bert[1]).toMatchObject({
      path: 'bert.encoder.layer.0.attention.self.key',
      kind: 'MatMul',
      node: '/bert/encoder/layer.0/attention/self/key/MatMul',
      weightLayout: 'in_out',
      bias: { node: '/bert/encoder/layer.0/attention/self/key/Add', initializer: 'bert.encoder.layer.0.attention.self.key.bias' },
    });
    expect(bert.at(-1)).toMatchObject({
      path: 'classifier',
      kind: 'Gemm',
      weight: 'classifier.weight',
      weightLayout: 'out_in', // nn.Linear on 2-D input: Gemm(x, W, b, transB=1)
      bias: { node: '/classifier/Gemm', initializer: 'classifier.bias' },
    });
    const gpt2 = findModules(decodeOnnx(bytesOf('gpt2')));
    expect(gpt2[0]).toMatchObject({
      path: 'transformer.h.0.attn.c_attn',
      kind: 'Gemm',
      weight: 'transformer.h.0.attn.c_attn.weight',
      weightLayout: 'in_out', // Conv1D stores [in, out]
      inFeatures: 32,
      outFeatures: 96,
    });
    expect(gpt2.at(-1)).toMatchObject({ path: 'lm_head', kind: 'MatMul', weightLayout: 'in_out' });
    expect(gpt2.at(-1)!.bias).toBeUndefined();
  });
});

describe('path fallbacks', () => {
  /** The model with every node name removed (as some optimisers and exporters leave them). */
  function unscoped(m: string): PModel {
    const p = onnx.ModelProto.decode(bytesOf(m)) as PModel;
    for (const n of p.graph!.node) n.name = '';
    return p;
  }
  const enc = (p: onnx.IModelProto) => onnx.ModelProto.encode(p).finish();

  it('uses weight names, then bias names, when nodes carry no scope', () => {
    const g = decodeOnnx(enc(unscoped('bert')));
    const mods = findModules(g);
    expect(mods.map((x) => x.path)).toEqual(refModules('bert').map((r) => r.path));
    // Folded MatMul weights are named onnx::MatMul_N: the bias gives the path; Gemm keeps W's name.
    expect(mods[0]!.pathSource).toBe('bias');
    expect(mods.at(-1)!.pathSource).toBe('weight');
  });

  it('lists layers it cannot name, and takes an explicit moduleMap (which also overrides scopes)', () => {
    const g = decodeOnnx(enc(unscoped('llama')));
    expect(findModules(g)).toEqual([]); // no scopes, folded weight names, no biases
    const unnamed = unnamedLinears(g, []);
    expect(unnamed.length).toBe(15);
    const paths = refModules('llama').map((r) => r.path);
    const moduleMap = Object.fromEntries(unnamed.map((l, i) => [l.node, paths[i]!]));
    const mods = findModules(g, { moduleMap });
    expect(mods.map((x) => [x.path, x.inFeatures, x.outFeatures])).toEqual(
      refModules('llama').map((r) => [r.path, r.in_features, r.out_features]),
    );
    expect(mods.every((x) => x.pathSource === 'moduleMap')).toBe(true);

    const scoped = decodeOnnx(bytesOf('llama'));
    const node = '/model/layers.0/self_attn/k_proj/MatMul';
    const over = findModules(scoped, { moduleMap: { [node]: 'custom.k' } });
    expect(over.find((x) => x.node === node)).toMatchObject({ path: 'custom.k', pathSource: 'moduleMap' });
  });

  it('sees through a Transpose of the weight, and a bias Add in either operand order', () => {
    const model = onnx.ModelProto.encode({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'g',
        node: [
          { opType: 'Transpose', name: 't', input: ['enc.q.weight'], output: ['wt'], attribute: [{ name: 'perm', type: 7, ints: [1, 0] }] },
          { opType: 'MatMul', name: 'mm', input: ['x', 'wt'], output: ['h'] },
          { opType: 'Add', name: 'add', input: ['h', 'enc.q.bias'], output: ['y'] },
          // A second layer named only by its bias, in the first operand.
          { opType: 'MatMul', name: 'mm2', input: ['y', 'onnx::MatMul_9'], output: ['h2'] },
          { opType: 'Add', name: 'add2', input: ['dec.out.bias', 'h2'], output: ['z'] },
        ],
        input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 2 }, { dimValue: 4 }] } } } }],
        output: [{ name: 'z', type: { tensorType: { elemType: 1 } } }],
        initializer: [
          { name: 'enc.q.weight', dims: [3, 4], dataType: 1, floatData: new Array(12).fill(0.5) },
          { name: 'enc.q.bias', dims: [3], dataType: 1, floatData: [1, 2, 3] },
          { name: 'onnx::MatMul_9', dims: [3, 5], dataType: 1, floatData: new Array(15).fill(1) },
          { name: 'dec.out.bias', dims: [5], dataType: 1, floatData: new Array(5).fill(0) },
        ],
      },
    }).finish();
    const mods = findModules(decodeOnnx(model));
    expect(mods).toEqual([
      {
        path: 'enc.q',
        pathSource: 'weight',
        kind: 'MatMul',
        node: 'mm',
        weight: 'enc.q.weight',
        weightLayout: 'out_in',
        inFeatures: 4,
        outFeatures: 3,
        bias: { node: 'add', initializer: 'enc.q.bias' },
        transpose: 't',
      },
      {
        path: 'dec.out',
        pathSource: 'bias',
        kind: 'MatMul',
        node: 'mm2',
        weight: 'onnx::MatMul_9',
        weightLayout: 'in_out',
        inFeatures: 3,
        outFeatures: 5,
        bias: { node: 'add2', initializer: 'dec.out.bias' },
      },
    ]);
  });

  it('parses scopes and parameter names', () => {
    expect(scopePath('/model/layers.0/self_attn/k_proj/MatMul')).toBe('model.layers.0.self_attn.k_proj');
    expect(scopePath('/bert/encoder/layer.0/attention/self/key/MatMul_1')).toBe('bert.encoder.layer.0.attention.self.key');
    expect(scopePath('/lm_head/MatMul')).toBe('lm_head');
    expect(scopePath('/MatMul')).toBeUndefined();
    expect(scopePath('MatMul_12')).toBeUndefined();
    expect(parameterPath('bert.encoder.layer.0.attention.self.key.weight', 'weight')).toBe('bert.encoder.layer.0.attention.self.key');
    expect(parameterPath('h.0.attn.c_attn.weight_transposed', 'weight')).toBe('h.0.attn.c_attn');
    expect(parameterPath('onnx::MatMul_123', 'weight')).toBeUndefined();
    expect(parameterPath('distilbert.transformer.layer.0.attention.k_lin.bias', 'bias')).toBe('distilbert.transformer.layer.0.attention.k_lin');
  });
});

describe('model_type', () => {
  for (const m of MODELS) {
    it(`${m}: from config.json, and from module paths alone`, () => {
      const mods = findModules(decodeOnnx(bytesOf(m)));
      const config = json(`tests/fixtures/${m}/config.json`);
      expect(detectModelType(mods, config)).toBe(config.model_type);
      expect(detectModelType(mods)).toBe(m);
    });
  }

  it('recognises headless exports and other families', () => {
    const t = (...paths: string[]) => detectModelType(paths.map((path) => ({ path })));
    expect(t('encoder.layer.0.attention.self.query')).toBe('bert');
    expect(t('roberta.encoder.layer.0.attention.self.query')).toBe('roberta');
    expect(t('h.3.attn.c_attn')).toBe('gpt2');
    expect(t('layers.0.self_attn.q_proj', 'layers.0.mlp.gate_proj')).toBe('llama');
    expect(t('transformer.layer.0.attention.q_lin')).toBe('distilbert');
    expect(t('model.decoder.layers.0.self_attn.q_proj')).toBe('opt');
    expect(t('encoder.block.0.layer.0.SelfAttention.q')).toBe('t5');
    expect(t('something.else')).toBeUndefined();
    expect(detectModelType([], { model_type: 'mistral' })).toBe('mistral');
  });
});

describe('describeGraph', () => {
  it('summarises inputs, outputs, ops, parameters and modules', () => {
    const g = decodeOnnx(bytesOf('gpt2'));
    const text = describeGraph(g, findModules(g));
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^ONNX graph '.*' from pytorch .* \(IR 7; opsets: ai\.onnx 14\)$/);
    expect(text).toContain('Inputs (2):\n  input_ids       int64  [batch, sequence]\n  attention_mask  int64  [batch, sequence]');
    expect(text).toContain('Outputs (1):\n  logits  float32  [batch, sequence, 120]');
    // 30,336 PyTorch parameters: the transposed copy of the tied wte the exporter stored for lm_head counted once.
    expect(text).toContain('Parameters: 30,336 in 28 float tensors (118.5 KiB)');
    expect(text).toMatch(/Ops: 318 nodes of 24 types \(ai\.onnx opset 14\), plus 198 Constant nodes folded on load/);
    expect(text).toContain('Unsqueeze ×47');
    expect(text).toContain('Modules (9 linear layers):');
    expect(text).toMatch(/transformer\.h\.0\.attn\.c_attn +Gemm +32 → 96 +bias +weight transformer\.h\.0\.attn\.c_attn\.weight \(in_out\)/);
    expect(text).toMatch(/lm_head +MatMul +32 → 120 +no bias/);
    expect(text).not.toContain('without a module path');

    const p = onnx.ModelProto.decode(bytesOf('llama')) as PModel;
    for (const n of p.graph!.node) n.name = '';
    const anon = decodeOnnx(onnx.ModelProto.encode(p).finish());
    expect(describeGraph(anon, findModules(anon))).toContain('Linear layers without a module path (15; name them with moduleMap):');
  });
});

describe('gpt2-bench (external data)', () => {
  it('finds the 25 linear layers of the bench model', () => {
    const model = bytesOf('gpt2-bench');
    const p = onnx.ModelProto.decode(model) as PModel;
    let size = 0;
    for (const t of p.graph.initializer) {
      const kv = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, Number(e.value)]));
      size = Math.max(size, kv.offset! + kv.length!);
    }
    const g = decodeOnnx(model, { externalData: { 'model.onnx_data': new Uint8Array(size) } });
    const mods = findModules(g);
    expect(mods.length).toBe(6 * 4 + 1);
    expect(mods[0]).toMatchObject({ path: 'transformer.h.0.attn.c_attn', inFeatures: 384, outFeatures: 1152, weightLayout: 'in_out' });
    expect(mods[3]).toMatchObject({ path: 'transformer.h.0.mlp.c_proj', inFeatures: 1536, outFeatures: 384 });
    expect(mods.at(-1)).toMatchObject({ path: 'lm_head', inFeatures: 384, outFeatures: 512 });
    expect(detectModelType(mods, JSON.parse(readFileSync('tests/fixtures/gpt2-bench/config.json', 'utf8')))).toBe('gpt2');
    expect(describeGraph(g, mods)).toMatch(/Parameters: [\d,]+ in 77 float tensors \(42\.3 MiB\), external data: model\.onnx_data/);
  });
});
