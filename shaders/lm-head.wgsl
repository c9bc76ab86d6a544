// The LM head fused with its cross-entropy (LMHeadCrossEntropy), over logits that never exist
// whole: the host computes one chunk of rows × one block of the vocabulary at a time into a scratch
// buffer with the matmul kernels, and these kernels fold each chunk into per-row state.
//
//   lh_stats  merges a [rows, v] block (vocabulary columns v0..v0+v) of chunk rows row0.. into the
//             running per-row state S[r] = (max m, Σexp(z − m) s, label logit t, 0): online
//             log-sum-exp across vocabulary blocks (the first block initialises). TPR invocations
//             share a row, merged by a fixed tree in workgroup memory, as in loss.wgsl.
//   lh_grad   (lh_grad1 for widths not a multiple of 4) overwrites a block with ∂loss/∂z = coef·(exp(z − m)/s − [column = label]) from the
//             final state (coef = 1/count for 'mean', 1 for 'sum', 0 for rows that do not count);
//             the host multiplies it by the head's weight to get ∂loss/∂hidden for the chunk.
//   lh_loss   one workgroup: loss = Σ (m + log s − t) over counted rows (÷ count for 'mean', 0 when
//             nothing counts) and count, summed in a fixed order (no float atomics).
//   lh_add    y[off + i] += x[i]: ∂loss/∂hidden summed over vocabulary blocks.
// A label counts when it is not `ignore` and lies in [0, vocab). Blocks are array<vec4<f32>>
// (scratch buffers are padded to 16 bytes), read as vec4 when VEC == 1 (v % 4 == 0).
// Bindings per entry point:
//   lh_stats  block, labels, state, P          lh_grad(1)  labels, state, count, block (rw), P
//   lh_loss   state, labels, loss, count, P    lh_add   x, y (rw), P

override WG: u32 = 256u;  // invocations per workgroup
override TPR: u32 = 256u; // invocations per row (lh_stats, lh_grad); WG for lh_loss
override VEC: u32 = 0u;   // 1: v % 4 == 0, lh_stats reads block rows as vec4

// struct Params: generated from its declaration in src/ops/lm-head.ts.

@group(0) @binding(0) var<storage, read> block: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read_write> state: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> P: Params;

@group(0) @binding(0) var<storage, read> glabels: array<i32>;
@group(0) @binding(1) var<storage, read> gstate: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gcount: array<f32>;
@group(0) @binding(3) var<storage, read_write> gblock4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> gblock1: array<f32>;
@group(0) @binding(4) var<uniform> G: Params;

@group(0) @binding(0) var<storage, read> lstate: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> llabels: array<i32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> count: array<f32>;
@group(0) @binding(4) var<uniform> L: Params;

@group(0) @binding(0) var<storage, read> ax: array<f32>;
@group(0) @binding(1) var<storage, read_write> ay: array<f32>;
@group(0) @binding(2) var<uniform> A: Params;

var<workgroup> red: array<vec2<f32>, WG>;

fn counts(label: i32, p: Params) -> bool {
  return label != p.ignore && label >= 0 && label < i32(p.vocab);
}

// online() and reduce() (segments of TPR lanes over `red`) come from the prelude ('lse').

fn bz(i: u32) -> f32 { return block[i >> 2u][i & 3u]; }

@compute @workgroup_size(WG)
fn lh_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let lane = lid % TPR;
  let row = workgroup_index(wid, nwg) * (WG / TPR) + lid / TPR;
  let live = row < P.rows;
  let base = row * P.v;
  let len = select(0u, P.v, live);
  // Dead segments (past the last row) walk nothing but still take part in every barrier.
  var acc = vec2<f32>(-F32_MAX, 0.0);
  if (VEC == 1u) {
    for (var j = lane; j < len / 4u; j += TPR) {
      let z = block[base / 4u + j];
      // Clamped so that an all −∞ vec4 gives exp(−∞ − bm) = 0 rather than NaN.
      let bm = max(max(max(z.x, z.y), max(z.z, z.w)), -F32_MAX);
      acc = online(acc, bm, dot(exp(z - bm), vec4<f32>(1.0)));
    }
  } else {
    for (var j = lane; j < len; j += TPR) { acc = online(acc, bz(base + j), 1.0); }
  }
  let t = reduce(lid, acc, true);
  if (live && lane == 0u) {
    let r = P.row0 + row;
    let label = labels[r];
    var s = vec4<f32>(t.x, t.y, 0.0, 0.0);
    if (P.first == 0u) {
      let prev = state[r];
      s = vec4<f32>(online(prev.xy, t.x, t.y), prev.z, 0.0);
    }
    if (label >= i32(P.v0) && label < i32(P.v0 + P.v)) { s.z = bz(base + u32(label) - P.v0); }
    state[r] = s;
  }
}

// The coefficient of row `r`'s gradient and its (max, 1/sum) for lh_grad / lh_grad1.
struct RowGrad { coef: f32, k: f32, m: f32, at: i32 }

fn rowGrad(r: u32) -> RowGrad {
  let s = gstate[r];
  let label = glabels[r];
  let n = gcount[0];
  let coef = select(0.0, select(1.0, 1.0 / n, G.mean == 1u && n > 0.0), counts(label, G));
  // p = exp(z − m)·coef/s; s == 0 only for an all −∞ row.
  return RowGrad(coef, select(0.0, coef / s.y, s.y > 0.0), s.x, label - i32(G.v0));
}

@compute @workgroup_size(WG)
fn lh_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let row = workgroup_index(wid, nwg) * (WG / TPR) + lid / TPR;
  if (row >= G.rows) { return; }
  let g = rowGrad(G.row0 + row);
  let base = row * G.v / 4u;
  for (var j = lid % TPR; j < G.v / 4u; j += TPR) {
    var d = exp(gblock4[base + j] - g.m) * g.k;
    let c = i32(4u * j);
    for (var q = 0; q < 4; q++) { if (c + q == g.at) { d[q] -= g.coef; } }
    gblock4[base + j] = d;
  }
}

// The same for blocks of any width, written as scalars: a vec4 would straddle two rows, and a
// component write may touch the whole vector (a race between the rows' invocations).
@compute @workgroup_size(WG)
fn lh_grad1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let row = workgroup_index(wid, nwg) * (WG / TPR) + lid / TPR;
  if (row >= G.rows) { return; }
  let g = rowGrad(G.row0 + row);
  let base = row * G.v;
  for (var j = lid % TPR; j < G.v; j += TPR) {
    gblock1[base + j] = exp(gblock1[base + j] - g.m) * g.k - select(0.0, g.coef, i32(j) == g.at);
  }
}

@compute @workgroup_size(WG)
fn lh_loss(@builtin(local_invocation_index) lid: u32) {
  var acc = vec2<f32>(0.0);
  for (var r = lid; r < L.rows; r += WG) {
    if (counts(llabels[r], L)) {
      let s = lstate[r];
      acc += vec2<f32>(s.x + log(s.y) - s.z, 1.0);
    }
  }
  let t = reduce(lid, acc, false);
  if (lid == 0u) {
    loss[0] = select(t.x, t.x / t.y, L.mean == 1u && t.y > 0.0);
    count[0] = t.y;
  }
}

@compute @workgroup_size(WG)
fn lh_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let i = workgroup_index(wid, nwg) * WG + lid;
  if (i < A.rows) { ay[A.row0 + i] += ax[i]; }
}
