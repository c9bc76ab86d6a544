// Prefix sum (ONNX CumSum) along one axis of a tensor viewed as (outer, n, inner).
//
// One workgroup scans one line (an (outer, inner) pair): it walks the line in chunks of WG
// elements; each chunk is scanned in workgroup memory (Hillis-Steele, log2(WG) steps) and offset
// by the running total of the chunks before it. The summation order depends only on the shape,
// so results are reproducible. `reverse` walks the line from its end; `exclusive` shifts the
// result by one element (the first output is 0) instead of subtracting, which would lose digits.
//
// Words are raw 32-bit: OP 0 adds f32, OP 1 adds i32. The grid is 1-D over lines, folded into x/y
// by `grid()` past 65535 workgroups.

override OP: u32;
override WG: u32 = 256u;

// struct Params: generated from its declaration in src/ops/reduce.ts.

@group(0) @binding(0) var<storage, read> X: array<u32>;
@group(0) @binding(1) var<storage, read_write> Y: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;

const ADD_F = 0u;
const ADD_I = 1u;

var<workgroup> s: array<u32, WG>;

fn add(a: u32, b: u32) -> u32 {
  if (OP == ADD_F) { return bitcast<u32>(bitcast<f32>(a) + bitcast<f32>(b)); }
  return bitcast<u32>(bitcast<i32>(a) + bitcast<i32>(b));
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  // Uniform per workgroup, so returning before the barriers is allowed.
  let line = workgroup_index(wid, nwg);
  if (line >= P.lines) { return; }
  let base = (line / P.inner) * P.n * P.inner + line % P.inner;
  var carry = 0u;  // the all-zero word is 0.0 and 0
  for (var c0 = 0u; c0 < P.n; c0 += WG) {
    let k = c0 + lid;
    let live = k < P.n;
    var at = 0u;
    var v = 0u;
    if (live) {
      at = base + select(k, P.n - 1u - k, P.reverse != 0u) * P.inner;
      v = X[at];
    }
    s[lid] = v;
    for (var off = 1u; off < WG; off = off * 2u) {
      workgroupBarrier();
      var t = 0u;
      if (lid >= off) { t = s[lid - off]; }
      workgroupBarrier();
      s[lid] = add(s[lid], t);
    }
    workgroupBarrier();
    var before = 0u;
    if (lid > 0u) { before = s[lid - 1u]; }
    if (live) {
      Y[at] = add(carry, select(s[lid], before, P.exclusive != 0u));
    }
    carry = add(carry, s[WG - 1u]);
    workgroupBarrier();
  }
}
