// The real-world ONNX fixtures of tests/fixtures/real/ (written by tests/fixtures/generate_real.py)
// and their onnxruntime-web oracle (tests/fixtures/ort-reference.mjs writes ort_reference.json; the
// unit test tests/unit/fixtures-real.test.ts re-runs it live). Shared by both: reading the JSON files,
// feeding a case to onnxruntime-web's WASM backend in Node, the comparison rules.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-web';
import { floatToHalf, halfToFloat } from '../../src/ir/dtype.js';
import type { JsonTensor, OrtCase, RefCase } from './fixture-compare.js';

export * from './fixture-compare.js';

/** tests/fixtures/real, from the repository root. */
export function realRoot(repoRoot: string): string {
  return join(repoRoot, 'tests', 'fixtures', 'real');
}

/** Fixture folders that hold a reference.json, sorted. */
export function fixtureNames(root: string): string[] {
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(root, d.name, 'reference.json')))
    .map((d) => d.name)
    .sort();
}

export function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

export function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** One onnxruntime-web setting for every run: WASM backend, one thread (deterministic sums). */
export function configureOrt(): typeof ort {
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  return ort;
}

export function toOrtTensor(t: JsonTensor): ort.Tensor {
  const d = t.data;
  switch (t.dtype) {
    case 'float32':
      return new ort.Tensor('float32', Float32Array.from(d as number[]), t.dims);
    case 'float16':
      return new ort.Tensor('float16', Uint16Array.from(d as number[], floatToHalf), t.dims);
    case 'int64':
      return new ort.Tensor('int64', BigInt64Array.from(d as number[], (v) => BigInt(v)), t.dims);
    case 'int32':
      return new ort.Tensor('int32', Int32Array.from(d as number[]), t.dims);
    case 'bool':
      return new ort.Tensor('bool', Uint8Array.from(d as boolean[], (v) => (v ? 1 : 0)), t.dims);
    default:
      throw new Error(`no onnxruntime-web input for dtype ${t.dtype}`);
  }
}

/** The shortest decimal that reads back as the same float32 (what the Python side writes too). */
export function shortestFloat32(v: number): number {
  if (!Number.isFinite(v)) throw new Error(`non-finite value ${v}`);
  for (let p = 1; p <= 9; p++) {
    const r = Number(v.toPrecision(p));
    if (Math.fround(r) === v) return r === 0 ? 0 : r;
  }
  return v;
}

export function fromOrtTensor(t: ort.Tensor): JsonTensor {
  const dims = [...t.dims];
  switch (t.type) {
    case 'float32':
      return { dtype: 'float32', dims, data: Array.from(t.data as Float32Array, shortestFloat32) };
    case 'float16': {
      const raw = t.data as unknown as ArrayLike<number>;
      const bits = raw instanceof Uint16Array ? raw : Uint16Array.from(raw, floatToHalf);
      return { dtype: 'float16', dims, data: Array.from(bits, (h) => shortestFloat32(halfToFloat(h))) };
    }
    case 'int64':
      return { dtype: 'int64', dims, data: Array.from(t.data as BigInt64Array, (v) => Number(v)) };
    case 'int32':
      return { dtype: 'int32', dims, data: Array.from(t.data as Int32Array) };
    case 'bool':
      return { dtype: 'bool', dims, data: Array.from(t.data as Uint8Array, (v) => v !== 0) };
    default:
      throw new Error(`unexpected onnxruntime-web output type ${t.type}`);
  }
}

export async function createSession(onnxPath: string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(readFileSync(onnxPath), { executionProviders: ['wasm'] });
}

/** Runs one case; every graph output, in the session's order. Errors come back as text. */
export async function runCase(session: ort.InferenceSession, c: RefCase): Promise<OrtCase> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(c.inputs)) feeds[name] = toOrtTensor(t);
  try {
    const result = await session.run(feeds);
    const outputs: Record<string, JsonTensor> = {};
    for (const name of session.outputNames) outputs[name] = fromOrtTensor(result[name]!);
    return { name: c.name, outputs };
  } catch (e) {
    return { name: c.name, error: errorText(e) };
  }
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
