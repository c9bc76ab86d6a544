// Reduction over one axis group of a tensor viewed as (outer, R, inner), deterministic.
//
// One pass reduces the middle dim: out[o, i] = OP over r of x[o, r, i]. The host coalesces the
// reduced axes; a set of axes that is not one contiguous run is reduced group by group, one pass
// each, so no transposing copy is ever needed. A long reduced run with few outputs is split into
// `chunks` runs of `chunk` elements (this pass then writes [outer, chunks, inner] partials that a
// second pass reduces), which keeps the GPU busy when the whole tensor folds to a few values.
//
// Work mapping: a workgroup holds TI outputs × TR reduction lanes (TR a power of two). Each lane
// folds elements r = start + tr, start + tr + TR, ... serially in a fixed order, then the TR
// partials of an output are combined by a tree in workgroup memory: the same shape always sums in
// the same order, so results are bit-reproducible (no atomics). When inner == 1 the lanes of one
// output are adjacent threads, so their loads along r are coalesced; when inner > 1 adjacent
// threads take adjacent outputs (adjacent inner indices) for the same reason.
//
// Words are raw 32-bit: f32 for float dtypes, i32 for integer ones, reinterpreted per OP.
// ArgMax tracks (value, index) pairs; ties keep the first index, or the last with ARGMAX_LAST_*.
// The grid is 1-D over workgroups, folded into x/y by `grid()` past 65535.

override OP: u32;
override TI: u32 = 1u;
override TR: u32 = 256u;
override WG: u32 = TI * TR;

// struct Params: generated from its declaration in src/ops/reduce.ts.

@group(0) @binding(0) var<storage, read> X: array<u32>;
@group(0) @binding(1) var<storage, read_write> Y: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;

// Op selectors; src/ops/reduce.ts mirrors this table (a unit test checks they agree).
const SUM_F = 0u;
const SUM_I = 1u;
const SUMSQ_F = 2u;
const SUMSQ_I = 3u;
const MAX_F = 4u;
const MAX_I = 5u;
const MIN_F = 6u;
const MIN_I = 7u;
const PROD_F = 8u;
const PROD_I = 9u;
const ARGMAX_F = 10u;
const ARGMAX_I = 11u;
const ARGMAX_LAST_F = 12u;
const ARGMAX_LAST_I = 13u;

const NONE = 0xffffffffu;  // index of an ArgMax lane that saw no element

var<workgroup> sv: array<u32, WG>;
var<workgroup> si: array<u32, WG>;

fn is_arg() -> bool { return OP >= ARGMAX_F; }
fn is_float() -> bool { return (OP & 1u) == 0u; }

// The identity of the fold, as a word (-inf and +inf are bit patterns, never const floats).
fn identity() -> u32 {
  switch (OP) {
    case MAX_F, ARGMAX_F, ARGMAX_LAST_F: { return 0xff800000u; }
    case MAX_I, ARGMAX_I, ARGMAX_LAST_I: { return 0x80000000u; }
    case MIN_F: { return 0x7f800000u; }
    case MIN_I: { return 0x7fffffffu; }
    case PROD_F: { return 0x3f800000u; }
    case PROD_I: { return 1u; }
    default: { return 0u; }  // 0.0 and 0 share the all-zero word
  }
}

fn load(w: u32) -> u32 {
  switch (OP) {
    case SUMSQ_F: { let v = bitcast<f32>(w); return bitcast<u32>(v * v); }
    case SUMSQ_I: { let v = bitcast<i32>(w); return bitcast<u32>(v * v); }
    default: { return w; }
  }
}

fn combine(a: u32, b: u32) -> u32 {
  let fa = bitcast<f32>(a);
  let fb = bitcast<f32>(b);
  let ia = bitcast<i32>(a);
  let ib = bitcast<i32>(b);
  switch (OP) {
    case SUM_F, SUMSQ_F: { return bitcast<u32>(fa + fb); }
    case SUM_I, SUMSQ_I: { return bitcast<u32>(ia + ib); }
    case MAX_F: { return bitcast<u32>(max(fa, fb)); }
    case MAX_I: { return bitcast<u32>(max(ia, ib)); }
    case MIN_F: { return bitcast<u32>(min(fa, fb)); }
    case MIN_I: { return bitcast<u32>(min(ia, ib)); }
    case PROD_F: { return bitcast<u32>(fa * fb); }
    case PROD_I: { return bitcast<u32>(ia * ib); }
    default: { return a; }
  }
}

// Whether (vb, ib) beats (va, ia) for ArgMax. Lanes that saw nothing (index NONE) always lose,
// so an all -inf (or all INT_MIN) run still reports a real index.
fn beats(va: u32, ia: u32, vb: u32, ib: u32) -> bool {
  if (ib == NONE) { return false; }
  if (ia == NONE) { return true; }
  var greater: bool;
  var equal: bool;
  if (is_float()) {
    greater = bitcast<f32>(vb) > bitcast<f32>(va);
    equal = bitcast<f32>(vb) == bitcast<f32>(va);
  } else {
    greater = bitcast<i32>(vb) > bitcast<i32>(va);
    equal = vb == va;
  }
  let last = OP == ARGMAX_LAST_F || OP == ARGMAX_LAST_I;
  return greater || (equal && select((ib < ia), (ib > ia), last));
}

fn finalize(v: u32, idx: u32) -> u32 {
  switch (OP) {
    case SUM_F, SUMSQ_F: { return bitcast<u32>(bitcast<f32>(v) / f32(P.denom)); }
    case SUM_I, SUMSQ_I: { return bitcast<u32>(bitcast<i32>(v) / i32(P.denom)); }
    case ARGMAX_F, ARGMAX_I, ARGMAX_LAST_F, ARGMAX_LAST_I: { return idx; }
    default: { return v; }
  }
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let g = workgroup_index(wid, nwg);
  var ti: u32;
  var tr: u32;
  if (P.inner == 1u) {
    tr = lid % TR;
    ti = lid / TR;
  } else {
    ti = lid % TI;
    tr = lid / TI;
  }
  let o = g * TI + ti;
  // Past-the-end outputs (the last workgroup, or the overshoot of a folded grid) still take part
  // in the barriers below; they only skip loads and the store.
  let valid = o < P.outputs;
  let inn = o % P.inner;
  let q = o / P.inner;
  let ch = q % P.chunks;
  let outer = q / P.chunks;
  let start = ch * P.chunk;
  let end = min(P.R, start + P.chunk);
  let base = outer * P.R * P.inner + inn;

  var acc = identity();
  var idx = NONE;
  if (valid) {
    for (var r = start + tr; r < end; r += TR) {
      let v = load(X[base + r * P.inner]);
      if (is_arg()) {
        if (beats(acc, idx, v, r)) {
          acc = v;
          idx = r;
        }
      } else {
        acc = combine(acc, v);
      }
    }
  }
  let k = ti * TR + tr;
  sv[k] = acc;
  si[k] = idx;
  for (var s = TR / 2u; s > 0u; s = s / 2u) {
    workgroupBarrier();
    if (tr < s) {
      if (is_arg()) {
        if (beats(sv[k], si[k], sv[k + s], si[k + s])) {
          sv[k] = sv[k + s];
          si[k] = si[k + s];
        }
      } else {
        sv[k] = combine(sv[k], sv[k + s]);
      }
    }
  }
  if (valid && tr == 0u) {
    Y[o] = finalize(sv[k], si[k]);
  }
}
