// Every kernel's WGSL interface against its declaration (KernelDef): the uniform struct it binds
// is the one generated from `uniforms`, at the binding after its inputs and outputs, defined once;
// every input and output is a storage binding of the right access; the entry point exists. And
// every file in shaders/ is composed by a Shader (a new file must be listed here; matmul's files
// once per storage of B: f32, packed halves, 4-bit blocks, 8-bit channels).
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { copyShader } from '../../src/gpu/copy.js';
import { maskShader } from '../../src/ops/attention-mask.js';
import { uniformStruct, type Shader } from '../../src/gpu/wgsl.js';
import { elementwiseShader } from '../../src/ops/elementwise.js';
import { halfShader } from '../../src/ops/half.js';
import { ia3Shader } from '../../src/ops/ia3.js';
import { indexCheckShader } from '../../src/ops/index-check.js';
import { gatherShader, padShader, stridedShader, transposeShader, triluShader } from '../../src/ops/layout-kernels.js';
import { lmHeadShader } from '../../src/ops/lm-head.js';
import { lossShader } from '../../src/ops/loss.js';
import { matmulGemvI8Shader, matmulGemvPackedShader, matmulGemvQ4Shader, matmulGemvShader, matmulI8Shader, matmulPackedShader, matmulQ4Shader, matmulShader } from '../../src/ops/matmul.js';
import { normShader, softmaxShader } from '../../src/ops/normalization.js';
import { optimShader } from '../../src/ops/optim.js';
import { quantizeShader } from '../../src/ops/quantize.js';
import { reduceShader, scanShader } from '../../src/ops/reduce.js';
import { rotaryShader } from '../../src/ops/rotary.js';
import { trainShader } from '../../src/train/kernels.js';

const SHADERS: readonly Shader[] = [
  copyShader,
  maskShader,
  trainShader,
  elementwiseShader,
  halfShader,
  ia3Shader,
  indexCheckShader,
  gatherShader,
  padShader,
  stridedShader,
  transposeShader,
  triluShader,
  lossShader,
  lmHeadShader,
  matmulShader,
  matmulGemvShader,
  matmulPackedShader,
  matmulGemvPackedShader,
  matmulQ4Shader,
  matmulGemvQ4Shader,
  matmulI8Shader,
  matmulGemvI8Shader,
  normShader,
  softmaxShader,
  optimShader,
  quantizeShader,
  reduceShader,
  scanShader,
  rotaryShader,
];

const DIR = resolve(__dirname, '../../shaders');

describe('WGSL sources', () => {
  it('compose every file in shaders/, its text last', () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith('.wgsl')).sort();
    expect([...new Set(SHADERS.map((s) => s.file))].sort()).toEqual(files);
    for (const s of SHADERS) expect(s.source.endsWith(readFileSync(resolve(DIR, s.file), 'utf8')), s.file).toBe(true);
  });

  for (const shader of SHADERS) {
    it(`declare the interface of every kernel of ${shader.file}`, () => {
      expect(shader.kernels.length, 'kernels defined over the shader').toBeGreaterThan(0);
      const src = shader.source;
      const bindings = [...src.matchAll(/@group\(0\)\s*@binding\((\d+)\)\s*var<(\w+)(?:,\s*(\w+))?>\s*(\w+)\s*:\s*([^;]+);/g)].map((m) => ({
        binding: Number(m[1]),
        space: m[2]!,
        access: m[3] ?? 'read',
        type: m[5]!.trim(),
      }));
      for (const k of shader.kernels) {
        const n = k.inputs.length + k.outputs.length;
        k.inputs.forEach((name, i) => expect(bindings.some((b) => b.binding === i && b.space === 'storage' && b.access === 'read'), `${k.name}: input '${name}' at binding ${i}`).toBe(true));
        k.outputs.forEach((name, j) => expect(bindings.some((b) => b.binding === k.inputs.length + j && b.space === 'storage' && b.access === 'read_write'), `${k.name}: output '${name}' at binding ${k.inputs.length + j}`).toBe(true));
        expect(new RegExp(`\\bfn ${k.entryPoint ?? 'main'}\\(`).test(src), `${k.name}: entry point`).toBe(true);
        if (k.uniforms.length === 0) continue;
        const struct = k.uniformStruct!;
        expect(bindings.some((b) => b.binding === n && b.space === 'uniform' && b.type === struct), `${k.name}: uniform ${struct} at binding ${n}`).toBe(true);
        expect(src.split(`struct ${struct} {`).length - 1, `${k.name}: struct ${struct} defined once`).toBe(1);
        expect(src.includes(uniformStruct(struct, k.uniforms)), `${k.name}: struct ${struct} generated from the declaration`).toBe(true);
      }
    });
  }
});
