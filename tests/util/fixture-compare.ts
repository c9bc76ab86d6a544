// The fixture JSON formats of tests/fixtures/real/ (reference.json, ort_reference.json) and the
// comparison rules of their cases: pure data and functions, so the browser tests use them too
// (tests/util/real-fixtures.ts adds the Node-only parts: files, hashes, onnxruntime-web sessions).

import type { TensorData } from '../../src/ir/tensor.js';

export type JsonDType = 'float32' | 'float16' | 'float64' | 'int64' | 'int32' | 'bool';

/** A tensor as the fixture JSON files write it (float32 values exact, float64 to 10 digits). */
export interface JsonTensor {
  dtype: JsonDType;
  dims: number[];
  data: (number | boolean)[];
}

/**
 * 'all'; 'valid_rows': rows (b, i) of an output [batch, seq, ...] whose attention_mask[b, T - seq + i] is 1;
 * 'valid_keys': entries (b, :, t, :) of a key/value cache [batch, heads, T, head_dim] whose attention_mask[b, t] is 1.
 */
export type CompareRule = 'all' | 'valid_rows' | 'valid_keys';

export interface RefCase {
  name: string;
  note?: string;
  inputs: Record<string, JsonTensor>;
  torch?: Record<string, JsonTensor>;
  torch_error?: string;
  compare?: Record<string, CompareRule>;
}

export interface RefFile {
  imitates: string;
  made_by: string;
  bytes: number;
  sha256: string;
  onnx_checker: string;
  ops: Record<string, number>;
  torch_reference?: string;
  torch_tolerance?: { atol: number; rtol: number };
  cases: RefCase[];
}

export interface Reference {
  fixture: string;
  description: string;
  files: Record<string, RefFile>;
}

export interface OrtCase {
  name: string;
  outputs?: Record<string, JsonTensor>;
  error?: string;
}

export interface OrtFile {
  status: 'ran' | 'refused';
  error?: string;
  cases: OrtCase[];
  max_abs_diff_vs_torch?: Record<string, number>;
}

export interface OrtReference {
  onnxruntime_web: string;
  backend: string;
  files: Record<string, OrtFile>;
}

/** Element mask of an output under a compare rule (true = compared). */
export function compareMask(rule: CompareRule, out: JsonTensor, inputs: Record<string, JsonTensor>): boolean[] {
  const n = out.data.length;
  if (rule === 'all') return new Array<boolean>(n).fill(true);
  const mask = inputs['attention_mask'];
  if (!mask || mask.dims.length !== 2) throw new Error("compare rule 'valid_rows' needs a 2-D attention_mask input");
  const [b, t] = mask.dims as [number, number];
  if (rule === 'valid_keys') {
    const [kb, heads, kt] = out.dims as [number, number, number];
    if (kb !== b || kt !== t) throw new Error(`cache dims ${out.dims} do not match attention_mask dims ${mask.dims}`);
    const inner = n / (kb * heads * kt);
    const keep: boolean[] = [];
    for (let i = 0; i < kb; i++)
      for (let h = 0; h < heads; h++)
        for (let j = 0; j < kt; j++) {
          const v = Number(mask.data[i * t + j]) === 1;
          for (let k = 0; k < inner; k++) keep.push(v);
        }
    return keep;
  }
  const [ob, os] = out.dims as [number, number];
  if (ob !== b) throw new Error(`output batch ${ob} != attention_mask batch ${b}`);
  const inner = n / (ob * os);
  const keep: boolean[] = [];
  for (let i = 0; i < ob; i++)
    for (let j = 0; j < os; j++) {
      const v = Number(mask.data[i * t + (t - os + j)]) === 1;
      for (let k = 0; k < inner; k++) keep.push(v);
    }
  return keep;
}

/** max |a - b| and the worst tolerance ratio |a - b| / (atol + rtol |b|) over the compared elements. */
export function diff(
  a: JsonTensor,
  b: JsonTensor,
  keep: boolean[],
  tol: { atol: number; rtol: number },
): { maxAbs: number; worst: number; at: number } {
  if (a.dims.join() !== b.dims.join()) return { maxAbs: Infinity, worst: Infinity, at: -1 };
  let maxAbs = 0;
  let worst = 0;
  let at = -1;
  for (let i = 0; i < a.data.length; i++) {
    if (!keep[i]) continue;
    const x = Number(a.data[i]);
    const y = Number(b.data[i]);
    const d = Math.abs(x - y);
    const r = Number.isNaN(d) ? Infinity : d / (tol.atol + tol.rtol * Math.abs(y));
    if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d;
    if (r > worst) {
      worst = r;
      at = i;
    }
  }
  return { maxAbs, worst, at };
}

/** Every output onnxruntime-web recorded for case `c` against `outputs`, under the case's compare rules. */
export function ortDiffs(
  c: RefCase,
  expected: OrtCase,
  outputs: Readonly<Record<string, { readonly dims: readonly number[]; readonly data: ArrayLike<number> }>>,
  tol: { atol: number; rtol: number },
): { name: string; maxAbs: number; worst: number }[] {
  return Object.entries(expected.outputs ?? {}).map(([name, want]) => {
    const got = outputs[name];
    if (!got) return { name, maxAbs: Infinity, worst: Infinity };
    const keep = compareMask(c.compare?.[name] ?? 'all', want, c.inputs);
    const d = diff({ dtype: 'float32', dims: [...got.dims], data: Array.from(got.data) }, want, keep, tol);
    return { name, maxAbs: d.maxAbs, worst: d.worst };
  });
}

/** A fixture JSON file fetched by URL (the browser tests read tests/fixtures/ through the dev server). */
export async function fetchJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: ${r.status}`);
  return (await r.json()) as T;
}

/** A fixture tensor (or a RefTensor) as a feed of the public API: int64, int32, bool or float32 data. */
export function tensorData(t: { dtype: string; dims: readonly number[]; data: ArrayLike<number | boolean> }): TensorData {
  const values = Array.from(t.data, Number);
  if (t.dtype === 'int64') return { data: BigInt64Array.from(values, (v) => BigInt(v)), dims: [...t.dims] };
  if (t.dtype === 'int32') return { data: Int32Array.from(values), dims: [...t.dims] };
  if (t.dtype === 'bool') return { data: Uint8Array.from(values), dims: [...t.dims] };
  return { data: Float32Array.from(values), dims: [...t.dims] };
}
