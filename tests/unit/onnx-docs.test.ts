// docs/supported-ops.md is generated from the op registry: this test fails when the committed file
// differs from the generated text, and rewrites it when run with UPDATE_DOCS=1.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { gpuPath, opsetRange, supportedOpsMarkdown } from '../../src/onnx/docs.js';
import { EXPANDED_OPS, OPS } from '../../src/ops/registry.js';
import type { ExpandedOpDef, OpDef } from '../../src/ops/types.js';

const PATH = 'docs/supported-ops.md';

describe('docs/supported-ops.md', () => {
  it('is the generated text', () => {
    const text = supportedOpsMarkdown();
    if (process.env.UPDATE_DOCS === '1') writeFileSync(PATH, text);
    const committed = existsSync(PATH) ? readFileSync(PATH, 'utf8') : '';
    expect(committed, `${PATH} is stale: run UPDATE_DOCS=1 npx vitest run --project unit tests/unit/onnx-docs.test.ts`).toBe(text);
  });

  it('lists every registry op once per domain, with its opset and GPU path (expanded fused ops too)', () => {
    const text = supportedOpsMarkdown();
    const defs = [...Object.entries(OPS), ...Object.entries(EXPANDED_OPS)] as [string, OpDef | ExpandedOpDef][];
    for (const [name, def] of defs) {
      const rows = text.split('\n').filter((l) => l.startsWith(`| ${name} | ${def.domain || 'ai.onnx'} |`));
      expect(rows, `${def.domain}.${name}`).toHaveLength(1);
      expect(rows[0]).toContain(`| ${def.domain || 'ai.onnx'} | ${opsetRange(def)} | ${gpuPath(name, def)} |`);
    }
    expect(gpuPath('Attention', EXPANDED_OPS.Attention)).toBe('expanded on load');
    expect(gpuPath('Einsum', OPS.Einsum)).toBe('expanded at specialisation');
  });

  it('classifies lowerings: kernels, views, CPU folds, importer-handled ops', () => {
    const base = { domain: '', doc: 'x', shape: () => [], reference: () => [] };
    expect(gpuPath('X', { ...base, gpu: 'fold' })).toBe('folded on CPU');
    expect(gpuPath('X', { ...base, gpu: () => ({ alias: 0 }) })).toBe('view');
    expect(gpuPath('X', { ...base, gpu: () => ({ steps: [] }) })).toBe('kernel');
    expect(gpuPath('X', { ...base, gpu: (inputs) => ({ alias: inputs[0]!.dims.length }) })).toBe('kernel');
    expect(gpuPath('Identity', { ...base, gpu: () => ({ alias: 0 }) })).toBe('removed at specialisation');
    expect(gpuPath('Constant', { ...base, gpu: 'fold' })).toBe('folded on load');
    expect(gpuPath('X', { ...base, gpu: () => ({ steps: [] }), expand: () => undefined })).toBe('expanded at specialisation');
    expect(gpuPath('If', { ...base, gpu: () => ({ steps: [] }) })).toBe('branch chosen at specialisation');
  });

  it('gives the opsets an op runs: the importer range for ai.onnx, the op\'s own otherwise', () => {
    const base = { doc: 'x', shape: () => [], reference: () => [], gpu: 'fold' as const };
    expect(opsetRange({ ...base, domain: '' })).toBe('7–21');
    expect(opsetRange({ ...base, domain: '', sinceVersion: 13 })).toBe('13–21');
    expect(opsetRange({ ...base, domain: '', sinceVersion: 11, untilVersion: 26 })).toBe('11–21');
    expect(opsetRange({ ...base, domain: '', sinceVersion: 11, untilVersion: 18 })).toBe('11–18');
    expect(opsetRange({ ...base, domain: 'com.microsoft' })).toBe('1+');
  });
});
