// Fused cross-entropy over [rows, v] logits: CrossEntropyLoss (`ce_rows`, `ce_reduce`) and
// CrossEntropyLossGrad (`ce_count`, `ce_grad`).
//
// Row loss = m + log Σexp(z − m) − z[label]. `ce_rows` gives each row a segment of TPR invocations
// (WG / TPR rows per workgroup) that reads the vocabulary once with an online (max, sum-exp) pair,
// merged by a fixed tree in workgroup memory; lane 0 gathers z[label] and writes the row's loss and
// 0/1 validity to part[2][rows]. `ce_reduce`, one workgroup, sums those in a fixed order (no float
// atomics) into loss (÷ count for 'mean', 0 when nothing counts) and count.
// A label counts when it is not `ignore` and lies in [0, v); other rows contribute nothing.
// Gradient dz = dloss·(softmax(z) − onehot)/count: `ce_count` reduces the count, then `ce_grad`
// recomputes each row's (max, sum) and writes; rows that do not count get zeros.
// Logits are array<vec4<f32>> (buffers padded to 16 bytes), vec4 loads when VEC == 1; outputs
// are array<f32>; labels i32. Each entry point declares its own bindings (collisions are scoped
// per entry point):
//   ce_rows   logits, labels, part, P        ce_reduce  part, loss, count, P
//   ce_count  labels, count, P               ce_grad    logits, labels, dloss, count, dlogits, P

override WG: u32 = 256u;  // invocations per workgroup
override TPR: u32 = 256u; // invocations per row (`ce_rows`, `ce_grad`); WG for the single-workgroup sums
override VEC: u32 = 0u;   // 1: v % 4 == 0, rows are read as vec4

// struct Params: generated from its declaration in src/ops/loss.ts.

@group(0) @binding(0) var<storage, read> logits: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

@group(0) @binding(0) var<storage, read> rpart: array<f32>;
@group(0) @binding(1) var<storage, read_write> loss: array<f32>;
@group(0) @binding(2) var<storage, read_write> count: array<f32>;

@group(0) @binding(0) var<storage, read> clabels: array<i32>;
@group(0) @binding(1) var<storage, read_write> ccount: array<f32>;
@group(0) @binding(2) var<uniform> Q: Params;

@group(0) @binding(2) var<storage, read> dloss: array<f32>;
@group(0) @binding(3) var<storage, read> gcount: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<uniform> U: Params;

var<workgroup> red: array<vec2<f32>, WG>;

fn counts(label: i32, p: Params) -> bool {
  return label != p.ignore && label >= 0 && label < i32(p.v);
}

fn ldz(i: u32) -> f32 { return logits[i >> 2u][i & 3u]; }

// online() and reduce() (segments of TPR lanes over `red`) come from the prelude ('lse').

// One pass over a row of `len` logits (0 for dead segments) from flat offset `base`: (max, sum-exp).
fn row_stats(lid: u32, base: u32, len: u32) -> vec2<f32> {
  let lane = lid % TPR;
  var acc = vec2<f32>(-F32_MAX, 0.0);
  if (VEC == 1u) {
    for (var j = lane; j < len / 4u; j += TPR) {
      let z = logits[base / 4u + j];
      // Clamped so that an all −∞ vec4 gives exp(−∞ − bm) = 0 rather than NaN.
      let bm = max(max(max(z.x, z.y), max(z.z, z.w)), -F32_MAX);
      acc = online(acc, bm, dot(exp(z - bm), vec4<f32>(1.0)));
    }
  } else {
    for (var j = lane; j < len; j += TPR) { acc = online(acc, ldz(base + j), 1.0); }
  }
  return reduce(lid, acc, true);
}

@compute @workgroup_size(WG)
fn ce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let row = workgroup_index(wid, nwg) * (WG / TPR) + lid / TPR;
  let live = row < P.rows;
  let base = row * P.v;
  // Dead segments (past the last row) walk nothing but still take part in every barrier.
  let t = row_stats(lid, base, select(0u, P.v, live));
  if (live && lid % TPR == 0u) {
    let label = labels[row];
    let ok = counts(label, P);
    var l = 0.0;
    if (ok) { l = t.x + log(t.y) - ldz(base + u32(label)); }
    part[row] = l;
    part[P.rows + row] = select(0.0, 1.0, ok);
  }
}

@compute @workgroup_size(WG)
fn ce_reduce(@builtin(local_invocation_index) lid: u32) {
  var acc = vec2<f32>(0.0);
  for (var r = lid; r < P.rows; r += WG) { acc += vec2<f32>(rpart[r], rpart[P.rows + r]); }
  let t = reduce(lid, acc, false);
  if (lid == 0u) {
    loss[0] = select(t.x, t.x / t.y, P.mean == 1u && t.y > 0.0);
    count[0] = t.y;
  }
}

@compute @workgroup_size(WG)
fn ce_count(@builtin(local_invocation_index) lid: u32) {
  var acc = vec2<f32>(0.0);
  for (var r = lid; r < Q.rows; r += WG) { acc.x += select(0.0, 1.0, counts(clabels[r], Q)); }
  let t = reduce(lid, acc, false);
  if (lid == 0u) { ccount[0] = t.x; }
}

@compute @workgroup_size(WG)
fn ce_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let lane = lid % TPR;
  let row = workgroup_index(wid, nwg) * (WG / TPR) + lid / TPR;
  let live = row < U.rows;
  let base = row * U.v;
  let len = select(0u, U.v, live);
  let t = row_stats(lid, base, len);

  let label = labels[min(row, U.rows - 1u)];
  let ok = counts(label, U);
  let n = gcount[0];
  let coef = select(0.0, dloss[0] * select(1.0, 1.0 / n, U.mean == 1u && n > 0.0), ok);
  // p = exp(z − m)·coef/s; s == 0 only for an all −∞ row.
  let k = select(0.0, coef / t.y, t.y > 0.0);
  if (VEC == 1u) {
    for (var j = lane; j < len / 4u; j += TPR) {
      let z = logits[base / 4u + j];
      for (var c = 0u; c < 4u; c++) {
        let col = 4u * j + c;
        dlogits[base + col] = exp(z[c] - t.x) * k - select(0.0, coef, i32(col) == label);
      }
    }
  } else {
    for (var j = lane; j < len; j += TPR) {
      dlogits[base + j] = exp(ldz(base + j) - t.x) * k - select(0.0, coef, i32(j) == label);
    }
  }
}
