// Broadcasting element-wise kernel: y = OP(a, b, c) for unary, binary and ternary ops.
//
// Layout. Every binding is viewed as raw 32-bit words (`array<vec4<u32>>`) and reinterpreted per
// op with bitcast: float dtypes are f32 words, integer and bool dtypes i32 words (bool is 0/1).
// That lets one kernel serve mixed-type ops (Where, Cast, comparisons, Pow with an int exponent).
// Ops with fewer than three inputs bind their first input again in the unused slots.
//
// Each invocation produces four consecutive outputs and stores them as one vec4, so no two
// invocations ever write parts of the same vec4 (a component store may be compiled as a
// read-modify-write of the whole vector). Buffers are padded to 16 bytes by the pool; the last,
// partial vec4 keeps its padding words unchanged.
//
// Two paths, chosen by the FAST override at pipeline creation:
//   FAST:     every input has the output's element count or is a single element (bit k of
//             P.scalars): whole vec4 loads, no index arithmetic.
//   strided:  the host coalesces the broadcast into at most 8 dims (stored innermost first in
//             P.shape) with per-input element strides (0 along broadcast dims). Lane 0 decodes its
//             output index by div/mod; lanes 1..3 step along the innermost dim when they stay in
//             the same row, and decode again only when they cross it.
// The grid is 1-D over vec4s, folded into x/y by `grid()` past 65535 workgroups.

override OP: u32;
override WG: u32 = 256u;
override FAST: bool = false;

// struct Params: generated from its declaration in src/ops/elementwise.ts.

@group(0) @binding(0) var<storage, read> A: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> C: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> Y: array<vec4<u32>>;
@group(0) @binding(4) var<uniform> P: Params;

// Op selectors; src/ops/elementwise.ts mirrors this table (a unit test checks they agree).
// Float unary.
const EXP = 1u;
const LOG = 2u;
const SQRT = 3u;
const NEG_F = 4u;
const ABS_F = 5u;
const ERF = 6u;
const RECIP = 7u;
const TANH = 8u;
const SIGMOID = 9u;
const RELU_F = 10u;
const SIN = 11u;
const COS = 12u;
const FLOOR = 13u;
const CEIL = 14u;
const SOFTPLUS = 15u;
const GELU = 16u;
const GELU_TANH = 17u;
const CLIP_P = 18u;
// Integer / bool unary.
const NEG_I = 20u;
const ABS_I = 21u;
const RELU_I = 22u;
const NOT = 23u;
// Cast (F = f32 storage, I = i32 storage).
const F_TO_I = 30u;
const F_TO_I8 = 31u;
const F_TO_U8 = 32u;
const F_TO_BOOL = 33u;
const F_TO_F16 = 34u;
const I_TO_F = 35u;
const I_TO_F16 = 36u;
const I_TO_I8 = 37u;
const I_TO_U8 = 38u;
const I_TO_BOOL = 39u;
// Float binary.
const ADD_F = 40u;
const SUB_F = 41u;
const MUL_F = 42u;
const DIV_F = 43u;
const POW_FF = 44u;
const POW_FI = 45u;
const MIN_F = 46u;
const MAX_F = 47u;
const MEAN_F = 48u;
const EQ_F = 49u;
const LT_F = 50u;
const GT_F = 51u;
const LE_F = 52u;
const GE_F = 53u;
// Integer / bool binary.
const ADD_I = 60u;
const SUB_I = 61u;
const MUL_I = 62u;
const DIV_I = 63u;
const POW_II = 64u;
const POW_IF = 65u;
const MIN_I = 66u;
const MAX_I = 67u;
const EQ_I = 68u;
const LT_I = 69u;
const GT_I = 70u;
const LE_I = 71u;
const GE_I = 72u;
const AND = 73u;
const OR = 74u;
const XOR = 75u;
// Ternary.
const WHERE = 80u;
const CLIP_F = 81u;
const CLIP_I = 82u;
// Backward helpers: (dy, saved) -> dx.
const GELU_GRAD = 90u;
const GELU_TANH_GRAD = 91u;
const SIGMOID_GRAD = 92u;
const TANH_GRAD = 93u;
const RELU_GRAD = 94u;
const ERF_GRAD = 95u;

// Infinities and NaN must come from runtime values: a const-expression that evaluates to one is a
// shader-creation error.
fn inf_f32() -> f32 {
  var bits = 0x7f800000u;
  return bitcast<f32>(bits);
}

fn nan_f32() -> f32 {
  var bits = 0x7fc00000u;
  return bitcast<f32>(bits);
}

fn bool4(c: vec4<bool>) -> vec4<u32> {
  return select(vec4<u32>(0u), vec4<u32>(1u), c);
}

fn f4(w: vec4<u32>) -> vec4<f32> { return bitcast<vec4<f32>>(w); }
fn i4(w: vec4<u32>) -> vec4<i32> { return bitcast<vec4<i32>>(w); }
fn wf(v: vec4<f32>) -> vec4<u32> { return bitcast<vec4<u32>>(v); }
fn wi(v: vec4<i32>) -> vec4<u32> { return bitcast<vec4<u32>>(v); }

// tanh: odd Taylor polynomial near 0 (where 1 - e^{-2|x|} would cancel), else via e^{-2|x|}.
fn tanh4(x: vec4<f32>) -> vec4<f32> {
  let ax = abs(x);
  let t = exp(-2.0 * ax);
  let far = sign(x) * (1.0 - t) / (1.0 + t);
  let x2 = x * x;
  var p = vec4<f32>(-929569.0 / 638512875.0);
  p = p * x2 + 21844.0 / 6081075.0;
  p = p * x2 - 1382.0 / 155925.0;
  p = p * x2 + 62.0 / 2835.0;
  p = p * x2 - 17.0 / 315.0;
  p = p * x2 + 2.0 / 15.0;
  p = p * x2 - 1.0 / 3.0;
  let near = x * (1.0 + x2 * p);
  return select(far, near, ax < vec4<f32>(0.55));
}

// log(1 + t) for t in [0, 1]: a short series below 1e-2, where 1 + t would round away t's digits.
fn log1p_unit(t: vec4<f32>) -> vec4<f32> {
  let series = t * (1.0 - t * (0.5 - t * (1.0 / 3.0 - t * 0.25)));
  return select(log(1.0 + t), series, t < vec4<f32>(1e-2));
}

// x^y with the sign rules of C's pow for negative bases; small integral exponents are exact.
fn powf(x: f32, y: f32) -> f32 {
  if (y == 0.0) { return 1.0; }
  if (y == 1.0) { return x; }
  if (y == 2.0) { return x * x; }
  if (y == 3.0) { return x * x * x; }
  if (y == -1.0) { return 1.0 / x; }
  if (y == 0.5 && x >= 0.0) { return sqrt(x); }
  let r = exp2(y * log2(abs(x)));
  if (x < 0.0) {
    if (floor(y) != y) { return nan_f32(); }
    if (fract(y * 0.5) != 0.0) { return -r; }
  }
  return r;
}

fn pow4(x: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(powf(x.x, y.x), powf(x.y, y.y), powf(x.z, y.z), powf(x.w, y.w));
}

// Integer power by squaring; a negative exponent truncates 1 / b^|e| toward zero.
fn powi(b: i32, e: i32) -> i32 {
  if (e < 0) {
    if (b == 1) { return 1; }
    if (b == -1) { return select(1, -1, (e & 1) != 0); }
    return 0;
  }
  var r = 1;
  var base = b;
  var k = e;
  while (k > 0) {
    if ((k & 1) != 0) { r = r * base; }
    base = base * base;
    k = k >> 1u;
  }
  return r;
}

fn pow4i(x: vec4<i32>, y: vec4<i32>) -> vec4<i32> {
  return vec4<i32>(powi(x.x, y.x), powi(x.y, y.y), powi(x.z, y.z), powi(x.w, y.w));
}

// Round to the nearest float16 value (storage stays f32); beyond binary16's range -> +-inf.
fn to_f16(x: vec4<f32>) -> vec4<f32> {
  let lo = unpack2x16float(pack2x16float(clamp(x.xy, vec2<f32>(-65504.0), vec2<f32>(65504.0))));
  let hi = unpack2x16float(pack2x16float(clamp(x.zw, vec2<f32>(-65504.0), vec2<f32>(65504.0))));
  let r = vec4<f32>(lo, hi);
  return select(r, sign(x) * inf_f32(), abs(x) >= vec4<f32>(65520.0));
}

// Float -> int conversion truncates toward zero (WGSL saturates out-of-range values).
fn trunc_i(x: vec4<f32>) -> vec4<i32> { return vec4<i32>(x); }
fn wrap_i8(v: vec4<i32>) -> vec4<i32> { return ((v + 128) & vec4<i32>(255)) - 128; }
fn wrap_u8(v: vec4<i32>) -> vec4<i32> { return v & vec4<i32>(255); }


// sin and cos computed here rather than with WGSL's builtins: the spec only bounds their error
// by 2^-11 absolute on [-π, π] (SwiftShader and some GPUs are that coarse), which is visible in
// rotary embeddings. Cody–Waite reduction by π/2 (π/2 split into a float32 head and tail), then
// Taylor polynomials on [-π/4, π/4] whose truncation error (< 2e-10) is far below float32's
// rounding, then the quadrant's symmetry.
fn sincos4(x: vec4<f32>, want_cos: bool) -> vec4<f32> {
  let k = round(x * 0.6366197723675814);
  let r = (x - k * 1.5707963705062866) + k * 4.371139000186243e-8;
  let r2 = r * r;
  let s = r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0)))));
  let c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0)))));
  // cos(x) = sin(x + π/2): the same table, one quadrant on.
  let q = (vec4<i32>(k) + select(0, 1, want_cos)) & vec4<i32>(3);
  let v = select(s, c, (q & vec4<i32>(1)) == vec4<i32>(1));
  return select(v, -v, q >= vec4<i32>(2));
}

fn apply(a: vec4<u32>, b: vec4<u32>, c: vec4<u32>) -> vec4<u32> {
  let fa = f4(a);
  let fb = f4(b);
  let ia = i4(a);
  let ib = i4(b);
  switch (OP) {
    case EXP: { return wf(exp(fa)); }
    case LOG: { return wf(log(fa)); }
    case SQRT: { return wf(sqrt(fa)); }
    case NEG_F: { return wf(-fa); }
    case ABS_F: { return wf(abs(fa)); }
    case ERF: { return wf(erf4(fa)); }
    case RECIP: { return wf(1.0 / fa); }
    case TANH: { return wf(tanh4(fa)); }
    case SIGMOID: { return wf(sigmoid4(fa)); }
    case RELU_F: { return wf(max(fa, vec4<f32>(0.0))); }
    case SIN: { return wf(sincos4(fa, false)); }
    case COS: { return wf(sincos4(fa, true)); }
    case FLOOR: { return wf(floor(fa)); }
    case CEIL: { return wf(ceil(fa)); }
    case SOFTPLUS: { return wf(max(fa, vec4<f32>(0.0)) + log1p_unit(exp(-abs(fa)))); }
    case GELU: { return wf(gelu4(fa, false)); }
    case GELU_TANH: { return wf(gelu4(fa, true)); }
    // ONNX Clip is min(max(x, lo), hi): hi wins when lo > hi, unlike WGSL clamp.
    case CLIP_P: { return wf(min(max(fa, vec4<f32>(P.p0)), vec4<f32>(P.p1))); }
    case NEG_I: { return wi(-ia); }
    case ABS_I: { return wi(abs(ia)); }
    case RELU_I: { return wi(max(ia, vec4<i32>(0))); }
    case NOT: { return bool4(ia == vec4<i32>(0)); }
    case F_TO_I: { return wi(trunc_i(fa)); }
    case F_TO_I8: { return wi(wrap_i8(trunc_i(fa))); }
    case F_TO_U8: { return wi(wrap_u8(trunc_i(fa))); }
    case F_TO_BOOL: { return bool4(fa != vec4<f32>(0.0)); }
    case F_TO_F16: { return wf(to_f16(fa)); }
    case I_TO_F: { return wf(vec4<f32>(ia)); }
    case I_TO_F16: { return wf(to_f16(vec4<f32>(ia))); }
    case I_TO_I8: { return wi(wrap_i8(ia)); }
    case I_TO_U8: { return wi(wrap_u8(ia)); }
    case I_TO_BOOL: { return bool4(ia != vec4<i32>(0)); }
    case ADD_F: { return wf(fa + fb); }
    case SUB_F: { return wf(fa - fb); }
    case MUL_F: { return wf(fa * fb); }
    case DIV_F: { return wf(fa / fb); }
    case POW_FF: { return wf(pow4(fa, fb)); }
    case POW_FI: { return wf(pow4(fa, vec4<f32>(ib))); }
    case MIN_F: { return wf(min(fa, fb)); }
    case MAX_F: { return wf(max(fa, fb)); }
    case MEAN_F: { return wf((fa + fb) / P.p0); }
    case EQ_F: { return bool4(fa == fb); }
    case LT_F: { return bool4(fa < fb); }
    case GT_F: { return bool4(fa > fb); }
    case LE_F: { return bool4(fa <= fb); }
    case GE_F: { return bool4(fa >= fb); }
    case ADD_I: { return wi(ia + ib); }
    case SUB_I: { return wi(ia - ib); }
    case MUL_I: { return wi(ia * ib); }
    // WGSL integer division truncates toward zero, as C (and so ONNX runtimes) do.
    case DIV_I: { return wi(ia / ib); }
    case POW_II: { return wi(pow4i(ia, ib)); }
    case POW_IF: { return wi(trunc_i(pow4(vec4<f32>(ia), fb))); }
    case MIN_I: { return wi(min(ia, ib)); }
    case MAX_I: { return wi(max(ia, ib)); }
    case EQ_I: { return bool4(ia == ib); }
    case LT_I: { return bool4(ia < ib); }
    case GT_I: { return bool4(ia > ib); }
    case LE_I: { return bool4(ia <= ib); }
    case GE_I: { return bool4(ia >= ib); }
    case AND: { return bool4((ia != vec4<i32>(0)) & (ib != vec4<i32>(0))); }
    case OR: { return bool4((ia != vec4<i32>(0)) | (ib != vec4<i32>(0))); }
    case XOR: { return bool4((ia != vec4<i32>(0)) != (ib != vec4<i32>(0))); }
    // Where picks raw words, so it serves every dtype.
    case WHERE: { return select(c, b, ia != vec4<i32>(0)); }
    case CLIP_F: { return wf(min(max(fa, fb), f4(c))); }
    case CLIP_I: { return wi(min(max(ia, ib), i4(c))); }
    // Backward helpers: a = dy, b = the saved forward value.
    case GELU_GRAD: { return wf(fa * gelu_grad4(fb, false)); }
    case GELU_TANH_GRAD: { return wf(fa * gelu_grad4(fb, true)); }
    case SIGMOID_GRAD: { return wf(fa * fb * (1.0 - fb)); }
    case TANH_GRAD: { return wf(fa * (1.0 - fb * fb)); }
    case RELU_GRAD: { return wf(select(vec4<f32>(0.0), fa, fb > vec4<f32>(0.0))); }
    case ERF_GRAD: { return wf(fa * TWO_OVER_SQRT_PI * exp(-fb * fb)); }
    default: { return a; }
  }
}

fn dim(d: u32) -> u32 { return P.shape[d >> 2u][d & 3u]; }

// Element offsets of a, b, c for output element i (strided path).
fn offsets(i: u32) -> vec3<u32> {
  var rem = i;
  var o = vec3<u32>(0u);
  for (var d = 0u; d < P.rank; d++) {
    let n = dim(d);
    let k = rem % n;
    rem = rem / n;
    o += k * vec3<u32>(P.sa[d >> 2u][d & 3u], P.sb[d >> 2u][d & 3u], P.sc[d >> 2u][d & 3u]);
  }
  return o;
}

fn word(which: u32, o: u32) -> u32 {
  switch (which) {
    case 0u: { return A[o >> 2u][o & 3u]; }
    case 1u: { return B[o >> 2u][o & 3u]; }
    default: { return C[o >> 2u][o & 3u]; }
  }
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let t = workgroup_index(wid, nwg) * WG + lid;  // vec4 index
  let base = t * 4u;
  if (base >= P.n) { return; }
  var a: vec4<u32>;
  var b: vec4<u32>;
  var c: vec4<u32>;
  if (FAST) {
    // A single-element input sits in word 0 of its buffer: splat it.
    if ((P.scalars & 1u) != 0u) { a = vec4<u32>(A[0].x); } else { a = A[t]; }
    if ((P.scalars & 2u) != 0u) { b = vec4<u32>(B[0].x); } else { b = B[t]; }
    if ((P.scalars & 4u) != 0u) { c = vec4<u32>(C[0].x); } else { c = C[t]; }
  } else {
    let o0 = offsets(base);
    let d0 = select(1u, dim(0u), P.rank > 0u);
    let k0 = select(0u, base % d0, P.rank > 0u);
    let s0 = select(vec3<u32>(0u), vec3<u32>(P.sa[0].x, P.sb[0].x, P.sc[0].x), P.rank > 0u);
    a.x = word(0u, o0.x);
    b.x = word(1u, o0.y);
    c.x = word(2u, o0.z);
    for (var l = 1u; l < 4u; l++) {
      if (base + l >= P.n) { break; }
      var o: vec3<u32>;
      if (k0 + l < d0) {
        o = o0 + l * s0;
      } else {
        o = offsets(base + l);
      }
      a[l] = word(0u, o.x);
      b[l] = word(1u, o.y);
      c[l] = word(2u, o.z);
    }
  }
  var y = apply(a, b, c);
  if (base + 4u > P.n) {
    // Partial last vec4: keep the padding words as they were.
    let keep = vec4<u32>(0u, 1u, 2u, 3u) >= vec4<u32>(P.n - base);
    y = select(y, Y[t], keep);
  }
  Y[t] = y;
}
