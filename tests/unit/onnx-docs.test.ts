// docs/supported-ops.md is generated from the op registry: this test fails when the committed file
// differs from the generated text, and rewrites it when run with UPDATE_DOCS=1.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { gpuPath, supportedOpsMarkdown } from '../../src/onnx/docs.js';
import { OPS } from '../../src/ops/registry.js';
import type { OpDef } from '../../src/ops/types.js';

const PATH = 'docs/supported-ops.md';

describe('docs/supported-ops.md', () => {
  it('is the generated text', () => {
    const text = supportedOpsMarkdown();
    if (process.env.UPDATE_DOCS === '1') writeFileSync(PATH, text);
    const committed = existsSync(PATH) ? readFileSync(PATH, 'utf8') : '';
    expect(committed, `${PATH} is stale: run UPDATE_DOCS=1 npx vitest run --project unit tests/unit/onnx-docs.test.ts`).toBe(text);
  });

  it('lists every registry op once, with its domain, opset and GPU path', () => {
    const text = supportedOpsMarkdown();
    for (const [name, def] of Object.entries(OPS) as [string, OpDef][]) {
      const rows = text.split('\n').filter((l) => l.startsWith(`| ${name} |`));
      expect(rows, name).toHaveLength(1);
      expect(rows[0]).toContain(`| ${def.domain || 'ai.onnx'} | ${def.sinceVersion ?? 1} | ${gpuPath(name, def)} |`);
    }
  });

  it('classifies lowerings: kernels, views, CPU folds, importer-handled ops', () => {
    const base = { domain: '', doc: 'x', shape: () => [], reference: () => [] };
    expect(gpuPath('X', { ...base, gpu: 'fold' })).toBe('folded on CPU');
    expect(gpuPath('X', { ...base, gpu: () => ({ alias: 0 }) })).toBe('view');
    expect(gpuPath('X', { ...base, gpu: () => ({ steps: [] }) })).toBe('kernel');
    expect(gpuPath('X', { ...base, gpu: (inputs) => ({ alias: inputs[0]!.dims.length }) })).toBe('kernel');
    expect(gpuPath('Identity', { ...base, gpu: () => ({ alias: 0 }) })).toBe('removed at specialisation');
    expect(gpuPath('Constant', { ...base, gpu: 'fold' })).toBe('folded on load');
  });
});
