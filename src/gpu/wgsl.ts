// WGSL sources composed from declarations, so what the host and a shader share is written once.
//
// Each kernel family's algorithm is a file in shaders/. What it shares with the host is not
// written there: its uniform structs are generated from the TypeScript declarations the host packs
// (`KernelDef.uniforms`, laid out by `uniformLayout`), host constants it reads (flag bits) come as
// WGSL `const`s, and helpers several files use come from the prelude, prepended only to the files
// that ask for them. A `Shader` is one composed file; its `kernel()` defines a KernelDef over it
// whose uniforms are one of the file's structs, and records it (tests check every kernel's WGSL
// interface against its declaration).

import { F32_MAX } from '../ir/dtype.js';
import { defineKernel, type KernelDef, type UniformField, type UniformType } from './kernel.js';

/** Shared WGSL helpers by name (prepended in this order, each at most once). */
const PRELUDE = {
  /** The linear index of a workgroup in a 1-D grid that `grid()` (gpu/kernel.ts) folded into x and y. */
  grid: 'fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.y * nwg.x + wid.x; }',
  /** The largest finite f32 (FLT_MAX), from ir/dtype.ts. */
  f32max: `const F32_MAX: f32 = ${F32_MAX.toExponential()};`,
  /**
   * Online log-sum-exp: `online` folds a block's (max, Σexp) into a running pair; `reduce` merges
   * it (or plain sums) over each segment of TPR lanes by a fixed tree in `red` — the file declares
   * `override TPR` and `var<workgroup> red: array<vec2<f32>, WG>` (the loss kernels, the fused head).
   */
  lse: `// Folds a block (max bm, Σexp(z − bm) = e) into the running (max, sum) pair.
fn online(acc: vec2<f32>, bm: f32, e: f32) -> vec2<f32> {
  let m = max(acc.x, bm);
  return vec2<f32>(m, acc.y * exp(acc.x - m) + e * exp(bm - m));
}

// Tree reduction over each segment of TPR invocations: (max, sum-exp) merge, or a plain sum.
// Called in uniform control flow; every invocation gets its segment's result.
fn reduce(lid: u32, v: vec2<f32>, lse: bool) -> vec2<f32> {
  let lane = lid % TPR;
  red[lid] = v;
  workgroupBarrier();
  for (var off = TPR / 2u; off > 0u; off >>= 1u) {
    if (lane < off) {
      let q = red[lid + off];
      if (lse) { red[lid] = online(red[lid], q.x, q.y); } else { red[lid] = red[lid] + q; }
    }
    workgroupBarrier();
  }
  let r = red[lid - lane];
  workgroupBarrier();
  return r;
}`,
  /**
   * GELU in f32 without cancellation (erf by series and continued fraction, the tanh form as a
   * sigmoid), `gelu4` and its derivative `gelu_grad4`: the element-wise kernel's Gelu, GeluGrad,
   * Erf and Sigmoid, and the IA3 gradient that reads pre-GELU activations (one formula for both).
   */
  gelu: `const SQRT1_2 = 0.70710678118654752;
const TWO_OVER_SQRT_PI = 1.1283791670955126;
const SQRT_PI = 1.7724538509055159;
const INV_SQRT_2PI = 0.3989422804014327;
const SQRT_2_OVER_PI = 0.7978845608028654;
const GELU_C = 0.044715;

// erfc(z) for z >= 1.5 by Laplace's continued fraction 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))),
// 16 levels deep: relative error < 1e-6 all along the tail (exp underflows to 0 past z ~ 9.3).
// Relative, not just absolute, precision is what keeps GELU and its gradient exact for x << 0.
fn erfc_tail(z: vec4<f32>) -> vec4<f32> {
  var k = z;
  for (var n = 16.0; n >= 1.0; n -= 1.0) {
    k = z + (0.5 * n) / k;
  }
  return exp(-z * z) / (SQRT_PI * k);
}

// erf(z) for |z| < 1.5: Maclaurin series 2/sqrt(pi) * sum_n (-1)^n z^(2n+1) / (n! (2n+1)) to n = 15
// (truncation < 1e-9; relative error ~2e-7 in f32), by Horner in z^2.
fn erf_series(z: vec4<f32>) -> vec4<f32> {
  let w = z * z;
  var s = vec4<f32>(-1.0 / 40537905408000.0);
  s = s * w + 1.0 / 2528170444800.0;
  s = s * w - 1.0 / 168129561600.0;
  s = s * w + 1.0 / 11975040000.0;
  s = s * w - 1.0 / 918086400.0;
  s = s * w + 1.0 / 76204800.0;
  s = s * w - 1.0 / 6894720.0;
  s = s * w + 1.0 / 685440.0;
  s = s * w - 1.0 / 75600.0;
  s = s * w + 1.0 / 9360.0;
  s = s * w - 1.0 / 1320.0;
  s = s * w + 1.0 / 216.0;
  s = s * w - 1.0 / 42.0;
  s = s * w + 1.0 / 10.0;
  s = s * w - 1.0 / 3.0;
  return TWO_OVER_SQRT_PI * z * (1.0 + w * s);
}

fn erf4(x: vec4<f32>) -> vec4<f32> {
  let z = abs(x);
  let tail = sign(x) * (1.0 - erfc_tail(max(z, vec4<f32>(1.5))));
  return select(tail, erf_series(x), z < vec4<f32>(1.5));
}

// Phi(x) = P(N(0,1) <= x) = 0.5 * erfc(-x / sqrt 2), without cancellation for negative x.
fn phi4(x: vec4<f32>) -> vec4<f32> {
  let z = x * SQRT1_2;
  let lower = 0.5 * erfc_tail(max(-z, vec4<f32>(1.5)));
  return select(0.5 * (1.0 + erf4(z)), lower, z < vec4<f32>(-1.5));
}

// Logistic sigmoid: e^{-|x|} never overflows, and the negative side keeps relative precision.
fn sigmoid4(x: vec4<f32>) -> vec4<f32> {
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= vec4<f32>(0.0));
}

// GELU, tanh form: 0.5 x (1 + tanh u) = x * sigmoid(2u), which does not cancel for x << 0.
fn gelu_tanh_s(x: vec4<f32>) -> vec4<f32> {
  return sigmoid4(2.0 * SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
}

// GELU (erf form, or the tanh form when \`tanh\`) and its derivative.
fn gelu4(x: vec4<f32>, tanh: bool) -> vec4<f32> {
  if (tanh) { return x * gelu_tanh_s(x); }
  return x * phi4(x);
}

fn gelu_grad4(x: vec4<f32>, tanh: bool) -> vec4<f32> {
  if (tanh) {
    // With s = sigmoid(2u) = (1 + tanh u) / 2: d/dx [x s] = s + x s (1 - s) 2u'.
    let s = gelu_tanh_s(x);
    let du = 2.0 * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
    return s + x * s * (1.0 - s) * du;
  }
  return phi4(x) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}`,
} as const;

export type PreludePart = keyof typeof PRELUDE;

export interface ShaderOptions {
  /** Uniform structs by WGSL name, generated from these declarations. */
  readonly structs?: Readonly<Record<string, readonly UniformField[]>>;
  /** Host constants the shader reads, as `const NAME: u32`. */
  readonly consts?: Readonly<Record<string, number>>;
  /** Prelude helpers the shader uses. */
  readonly prelude?: readonly PreludePart[];
  /**
   * WGSL the host writes per variant of the file, placed just before its text (an operand's
   * binding and readers for one storage format, so one algorithm serves f32 and packed weights).
   */
  readonly variant?: string;
}

/** The WGSL type of a uniform field: a scalar, or `n` values packed as vec4s (one vec4 when n ≤ 4). */
export function wgslUniformType(t: UniformType): string {
  if (typeof t === 'string') return t;
  const quads = Math.ceil(t.length / 4);
  return quads === 1 ? `vec4<${t.array}>` : `array<vec4<${t.array}>, ${quads}>`;
}

/** The WGSL struct of a uniform declaration (the layout `uniformLayout` packs). */
export function uniformStruct(name: string, fields: readonly UniformField[]): string {
  return `struct ${name} {\n${fields.map(([f, t]) => `  ${f}: ${wgslUniformType(t)},\n`).join('')}}`;
}

/** Defines a kernel over a shader: its uniform struct named (one of the shader's), not written. */
export type ShaderKernelDef = Omit<KernelDef, 'source' | 'uniforms' | 'uniformStruct'> & { readonly uniforms?: string };

/** One composed shader file and the kernels defined over it. */
export class Shader {
  /** Prelude, host constants and generated structs, then the file's text. */
  readonly source: string;
  private readonly defined: KernelDef[] = [];

  constructor(
    /** The file in shaders/ the text came from. */
    readonly file: string,
    text: string,
    readonly options: ShaderOptions = {},
  ) {
    const parts: string[] = [`// ---- composed for shaders/${file}: prelude, host constants, uniform structs`];
    for (const p of Object.keys(PRELUDE) as PreludePart[]) if (options.prelude?.includes(p)) parts.push(PRELUDE[p]);
    for (const [name, v] of Object.entries(options.consts ?? {})) parts.push(`const ${name}: u32 = ${v}u;`);
    for (const [name, fields] of Object.entries(options.structs ?? {})) parts.push(uniformStruct(name, fields));
    if (options.variant) parts.push(options.variant);
    parts.push(`// ---- shaders/${file}`, text);
    this.source = parts.join('\n');
  }

  /** The kernels defined over this shader so far. */
  get kernels(): readonly KernelDef[] {
    return this.defined;
  }

  /** A kernel over this shader whose uniform struct is `def.uniforms` (a struct of the shader). */
  kernel(def: ShaderKernelDef): KernelDef {
    const struct = def.uniforms;
    const fields = struct === undefined ? [] : this.options.structs?.[struct];
    if (!fields) throw new Error(`kernel ${def.name}: shaders/${this.file} declares no uniform struct '${struct}'`);
    const k = defineKernel({ ...def, source: this.source, uniforms: fields, ...(struct === undefined ? {} : { uniformStruct: struct }) });
    this.defined.push(k);
    return k;
  }
}
