// Softmax family: Softmax, LogSoftmax, MaskedSoftmax (softmax(where(keep, x·scale / div, fill) +
// mask), keep optional) and SoftmaxGrad (dx = where(keep, y ⊙ (dy − Σ dy⊙y) / div, 0)), selected
// by the override OP.
//
// The tensor is viewed as [outer, len, inner] around the softmax axis.
//   - `rows` (inner == 1): a segment of TPR invocations owns a contiguous row, WG / TPR rows per
//     workgroup so short rows keep it busy; strided (coalesced) loads, vec4 when VEC == 1.
//   - `cols` (inner > 1): one invocation per strided row; neighbours hold neighbouring columns.
// Pass 1 keeps an online (max m, Σexp(z − m)) pair, merged across the segment by a fixed tree in
// workgroup memory (deterministic); pass 2 writes exp(z − m) / s. The max starts at −FLT_MAX, not
// −∞, so m_old − m_new is never ∞ − ∞: an all −∞ row ends with s == 0 and is written as zeros
// (log-softmax: z − m = −∞), never NaN.
// The mask (and keep) are read through broadcast strides: a per-row offset over merged leading
// dims (mdims / mstrides, kstrides) plus a last-axis stride `mlast` (`klast`) of 0 or 1. With keep,
// the masked softmax is the attention pattern Div → Where → Add → Softmax in one pass, computing
// the same f32 operations in the same order as those four kernels (compile/fuse.ts).
// Bindings a (x or dy), b (mask or y; `a` again for unary ops), k (keep, bool as u32 words; `a`
// again, never read, unless P.keep == 1), dst. Inputs are array<vec4<f32>>
// (buffers padded to 16 bytes); dst is array<f32>, as a store to one vector component may touch
// the whole vector and rows need not start on a vec4 boundary.

override WG: u32 = 256u;  // invocations per workgroup
override TPR: u32 = 256u; // invocations per row (`rows`): a power of two dividing WG
override OP: u32 = 0u;    // 0 softmax, 1 log-softmax, 2 masked softmax, 3 softmax gradient
override VEC: u32 = 0u;   // 1: len % 4 == 0, rows are read as vec4

// struct Params: generated from its declaration in src/ops/normalization.ts.

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<uniform> P: Params;

var<workgroup> red: array<vec2<f32>, WG>;

fn lda(i: u32) -> f32 { return a[i >> 2u][i & 3u]; }
fn ldb(i: u32) -> f32 { return b[i >> 2u][i & 3u]; }

// Offset of row `r` (row-major over x's leading dims) in the mask (keep: in the keep view).
fn mask_base(r: u32, keep: bool) -> u32 {
  var rem = r;
  var off = 0u;
  for (var d = i32(P.mrank) - 1; d >= 0; d--) {
    let n = P.mdims[d / 4][d % 4];
    var st = P.mstrides[d / 4][d % 4];
    if (keep) { st = P.kstrides[d / 4][d % 4]; }
    off += (rem % n) * st;
    rem /= n;
  }
  return off;
}

// x·scale / div where keep holds (or no keep is bound), else fill: the masked argument before the
// additive mask (kb: keep offset of the row, j: column).
fn kept(v: f32, kb: u32, j: u32) -> f32 {
  let s = v * P.scale / P.div;
  if (P.keep == 1u && k[kb + j * P.klast] == 0u) { return P.fill; }
  return s;
}

// The softmax argument at element i of the flat tensor (mb, kb: mask and keep offsets of its row,
// j: column).
fn z1(i: u32, mb: u32, kb: u32, j: u32) -> f32 {
  if (OP == 2u) { return kept(lda(i), kb, j) + ldb(mb + j * P.mlast); }
  return lda(i);
}

// Four softmax arguments at vec4 index i4 (VEC == 1; mb is then a multiple of 4 when mlast == 1).
fn z4(i4: u32, mb: u32, kb: u32, j4: u32) -> vec4<f32> {
  let x = a[i4];
  if (OP == 2u) {
    var m = vec4<f32>(ldb(mb));
    if (P.mlast == 1u) { m = b[mb / 4u + j4]; }
    var s = x * P.scale / P.div;
    if (P.keep == 1u) {
      let j = 4u * j4;
      let kv = vec4<u32>(k[kb + j * P.klast], k[kb + (j + 1u) * P.klast], k[kb + (j + 2u) * P.klast], k[kb + (j + 3u) * P.klast]);
      s = select(vec4<f32>(P.fill), s, kv != vec4<u32>(0u));
    }
    return s + m;
  }
  return x;
}

// Folds a block whose max is bm and whose values are z into the running (max, sum) pair.
fn online(acc: vec2<f32>, bm: f32, e: f32) -> vec2<f32> {
  let m = max(acc.x, bm);
  return vec2<f32>(m, acc.y * exp(acc.x - m) + e * exp(bm - m));
}

fn combine(p: vec2<f32>, q: vec2<f32>) -> vec2<f32> {
  if (OP == 3u) { return p + q; }
  let m = max(p.x, q.x);
  return vec2<f32>(m, p.y * exp(p.x - m) + q.y * exp(q.x - m));
}

// Tree reduction over the TPR invocations of each segment; every invocation gets its segment's
// result. Called in uniform control flow by all invocations of the workgroup.
fn reduce(lid: u32, v: vec2<f32>) -> vec2<f32> {
  let lane = lid % TPR;
  red[lid] = v;
  workgroupBarrier();
  for (var off = TPR / 2u; off > 0u; off >>= 1u) {
    if (lane < off) { red[lid] = combine(red[lid], red[lid + off]); }
    workgroupBarrier();
  }
  let r = red[lid - lane];
  workgroupBarrier(); // `red` is free for reuse once everyone has read its result
  return r;
}

// The output at one element from its argument z (or dy, y for the gradient) and the row totals.
// The gradient with keep is SoftmaxGrad → Where(keep, ·, 0) → Div(·, div) in one pass (the
// backward of the fused masked softmax's argument; kb, j: keep offset of the row and column).
fn finish(z: f32, yv: f32, tot: vec2<f32>, kb: u32, j: u32) -> f32 {
  if (OP == 3u) {
    if (P.keep == 1u && k[kb + j * P.klast] == 0u) { return 0.0; }
    return yv * (z - tot.x) / P.div;
  }
  if (OP == 1u) { return z - tot.x - select(0.0, log(tot.y), tot.y > 0.0); }
  return exp(z - tot.x) * select(0.0, 1.0 / tot.y, tot.y > 0.0);
}

@compute @workgroup_size(WG)
fn rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let lane = lid % TPR;
  let row = workgroup_index(wid, nwg) * (WG / TPR) + lid / TPR;
  let live = row < P.rows;
  // Dead segments (past the last row) walk nothing but still take part in every barrier.
  let len = select(0u, P.len, live);
  let base = row * P.len;
  var mb = 0u;
  var kb = 0u;
  if (OP == 2u) { mb = mask_base(row, false); }
  if (P.keep == 1u) { kb = mask_base(row, true); }

  var acc = vec2<f32>(-F32_MAX, 0.0);
  if (OP == 3u) { acc = vec2<f32>(0.0); }
  if (VEC == 1u) {
    let b4 = base / 4u;
    for (var j = lane; j < len / 4u; j += TPR) {
      if (OP == 3u) {
        acc.x += dot(a[b4 + j], b[b4 + j]);
      } else {
        let z = z4(b4 + j, mb, kb, j);
        // Clamped so that an all −∞ vec4 gives exp(−∞ − bm) = 0 rather than exp(−∞ + ∞) = NaN.
        let bm = max(max(max(z.x, z.y), max(z.z, z.w)), -F32_MAX);
        acc = online(acc, bm, dot(exp(z - bm), vec4<f32>(1.0)));
      }
    }
  } else {
    for (var j = lane; j < len; j += TPR) {
      if (OP == 3u) {
        acc.x += lda(base + j) * ldb(base + j);
      } else {
        acc = online(acc, z1(base + j, mb, kb, j), 1.0);
      }
    }
  }
  let tot = reduce(lid, acc);

  if (VEC == 1u) {
    let b4 = base / 4u;
    for (var j = lane; j < len / 4u; j += TPR) {
      var z: vec4<f32>;
      var yv = vec4<f32>(0.0);
      if (OP == 3u) { z = a[b4 + j]; yv = b[b4 + j]; } else { z = z4(b4 + j, mb, kb, j); }
      for (var c = 0u; c < 4u; c++) { dst[base + 4u * j + c] = finish(z[c], yv[c], tot, kb, 4u * j + c); }
    }
  } else {
    for (var j = lane; j < len; j += TPR) {
      var yv = 0.0;
      if (OP == 3u) { yv = ldb(base + j); }
      dst[base + j] = finish(z1(base + j, mb, kb, j), yv, tot, kb, j);
    }
  }
}

@compute @workgroup_size(WG)
fn cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let c = workgroup_index(wid, nwg) * WG + lid;
  if (c >= P.rows) { return; }
  let st = P.inner;
  let base = (c / st) * P.len * st + c % st;
  var acc = vec2<f32>(-F32_MAX, 0.0);
  if (OP == 3u) { acc = vec2<f32>(0.0); }
  for (var k = 0u; k < P.len; k++) {
    let i = base + k * st;
    if (OP == 3u) { acc.x += lda(i) * ldb(i); } else { acc = online(acc, lda(i), 1.0); }
  }
  for (var k = 0u; k < P.len; k++) {
    let i = base + k * st;
    var yv = 0.0;
    if (OP == 3u) { yv = ldb(i); }
    dst[i] = finish(lda(i), yv, acc, 0u, 0u);
  }
}
