// The real-world ONNX fixtures (tests/fixtures/real/, written by tests/fixtures/generate_real.py) are
// consistent with their oracles: every file is the one reference.json describes, onnxruntime-web (WASM,
// in Node) reproduces the outputs and errors recorded in ort_reference.json when the test runs (so the
// oracle is live, not only committed), and the recorded PyTorch float64 outputs agree with them within
// each file's tolerance (which proves the hand-built contrib and quantised graphs compute the intended
// model).
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { floatToHalf, halfToFloat } from '../../src/ir/dtype.js';
import {
  compareMask,
  configureOrt,
  createSession,
  diff,
  fixtureNames,
  readJson,
  realRoot,
  runCase,
  sha256,
  type OrtReference,
  type Reference,
} from '../util/real-fixtures.js';

const root = realRoot(process.cwd());
configureOrt();
// Same WASM binary, one thread: the live run should repeat the committed numbers; the margin only
// absorbs the float32 shortest-decimal round trip.
const LIVE = { atol: 1e-6, rtol: 1e-6 };
const MAX_BYTES = 2 * 1024 * 1024;

const names = fixtureNames(root);

describe('real-world fixtures', () => {
  it('exist, one folder per fixture with config.json, reference.json and ort_reference.json', () => {
    expect(names).toEqual([
      'bert-ort-optimized',
      'bert-tf-opset10',
      'bert-variants',
      'gpt2-ort-optimized',
      'gpt2-past',
      'gpt2-quirks',
      'gpt2-variants',
      'llama-einsum',
      'llama-genai',
      'llama-past',
      'llama-variants',
      'qwen2-genai',
      'roberta-positions',
    ]);
    for (const f of names) {
      const cfg = readJson<Record<string, unknown>>(join(root, f, 'config.json'));
      expect(typeof cfg['model_type'], `${f}/config.json model_type`).toBe('string');
      expect(readJson<Record<string, unknown>>(join(root, f, 'reference.json'))['_generated']).toMatch(/generate_real\.py/);
      expect(readJson<Record<string, unknown>>(join(root, f, 'ort_reference.json'))['_generated']).toMatch(/ort-reference\.mjs/);
    }
  });
});

for (const fixture of names) {
  const dir = join(root, fixture);
  const ref = readJson<Reference>(join(dir, 'reference.json'));
  const ortRef = readJson<OrtReference>(join(dir, 'ort_reference.json'));

  describe(fixture, () => {
    it('files are those reference.json describes, small, and all ran in onnxruntime-web', () => {
      expect(Object.keys(ortRef.files)).toEqual(Object.keys(ref.files));
      expect(ortRef.backend).toMatch(/^wasm/);
      for (const [path, file] of Object.entries(ref.files)) {
        const p = join(dir, path);
        expect(sha256(p), `${path} sha256`).toBe(file.sha256);
        expect(statSync(p).size).toBe(file.bytes);
        expect(file.bytes).toBeLessThanOrEqual(MAX_BYTES);
        const o = ortRef.files[path]!;
        expect(o.status, `${path}: ${o.error ?? ''}`).toBe('ran');
        expect(o.cases.map((c) => c.name)).toEqual(file.cases.map((c) => c.name));
        // Only cases that PyTorch also refuses may fail in onnxruntime-web.
        for (const [i, c] of o.cases.entries()) expect(Boolean(c.error), `${path} ${c.name}`).toBe(Boolean(file.cases[i]!.torch_error));
      }
    });

    for (const [path, file] of Object.entries(ref.files)) {
      it(`${path}: onnxruntime-web reproduces ort_reference.json`, async () => {
        const session = await createSession(join(dir, path));
        try {
          for (const [i, c] of file.cases.entries()) {
            const want = ortRef.files[path]!.cases[i]!;
            const got = await runCase(session, c);
            if (want.error !== undefined) {
              expect(got.error, `${path} ${c.name}`).toBe(want.error);
              continue;
            }
            expect(got.error, `${path} ${c.name}`).toBeUndefined();
            expect(Object.keys(got.outputs!)).toEqual(Object.keys(want.outputs!));
            for (const [name, w] of Object.entries(want.outputs!)) {
              const gOut = got.outputs![name]!;
              expect(gOut.dtype).toBe(w.dtype);
              expect(gOut.dims, `${path} ${c.name} ${name} dims`).toEqual(w.dims);
              const d = diff(gOut, w, new Array<boolean>(w.data.length).fill(true), LIVE);
              expect(d.worst, `${path} ${c.name} ${name}: max |diff| ${d.maxAbs} at ${d.at}`).toBeLessThanOrEqual(1);
            }
          }
        } finally {
          await session.release();
        }
      });

      const tol = file.torch_tolerance;
      if (!tol) continue;
      it(`${path}: PyTorch float64 and onnxruntime-web agree within atol ${tol.atol}, rtol ${tol.rtol}`, () => {
        let compared = 0;
        for (const [i, c] of file.cases.entries()) {
          if (!c.torch) continue;
          const outs = ortRef.files[path]!.cases[i]!.outputs!;
          for (const [name, want] of Object.entries(c.torch)) {
            const got = outs[name]!;
            const keep = compareMask(c.compare?.[name] ?? 'all', got, c.inputs);
            expect(keep.some(Boolean), `${path} ${c.name} ${name}: nothing compared`).toBe(true);
            const d = diff(got, want, keep, tol);
            expect(d.worst, `${path} ${c.name} ${name}: max |ORT - torch| ${d.maxAbs} at ${d.at}`).toBeLessThanOrEqual(1);
            compared++;
          }
        }
        expect(compared).toBeGreaterThan(0);
      });
    }
  });
}

describe('fixture oracle plumbing', () => {
  it('float16 values round-trip through the JSON decoding the oracle uses', () => {
    for (const bits of [0x0000, 0x3c00, 0xbc00, 0x0001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x3555]) {
      expect(floatToHalf(halfToFloat(bits))).toBe(bits);
    }
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // a tie rounds to even
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
  });

  it("'valid_rows' and 'valid_keys' select what the attention mask marks valid", () => {
    const mask = { dtype: 'int64' as const, dims: [2, 3], data: [1, 1, 0, 0, 1, 1] };
    const rows = compareMask('valid_rows', { dtype: 'float32', dims: [2, 2, 1], data: [0, 0, 0, 0] }, { attention_mask: mask });
    expect(rows).toEqual([true, false, true, true]); // the last 2 of 3 mask columns
    const keys = compareMask('valid_keys', { dtype: 'float32', dims: [2, 1, 3, 1], data: [0, 0, 0, 0, 0, 0] }, { attention_mask: mask });
    expect(keys).toEqual([true, true, false, false, true, true]);
  });
});
