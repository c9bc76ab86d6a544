// Layer normalisation family: LayerNormalization and SimplifiedLayerNormalization (RMSNorm) with
// their gradients, selected by the override OP (0 layer norm, 1 RMS norm).
//
// The input is viewed as [rows, n]: n = the product of the normalised (trailing) dims.
//   - `fwd`: a segment of TPR invocations owns a row (WG / TPR rows per workgroup, so short rows
//     keep the workgroup busy). Pass 1 accumulates per-invocation Welford triples (count, mean, M2)
//     — vec4 blocks are folded in whole with Chan's parallel formula — and merges them through a
//     fixed tree in workgroup memory: one read of the row for numerically stable statistics,
//     deterministic order. RMS norm sums squares instead (its "mean" is 0). Pass 2 writes
//     y = (x − μ)·rstd·scale (+ bias), rstd = 1/√(var + ε); lane 0 stores μ and rstd for backward.
//   - `bwd`: dX per row with g = dY·scale, x̂ = (x − μ)·rstd:
//       layer norm  dX = rstd·(g − mean(g) − x̂·mean(g·x̂))
//       RMS norm    dX = rstd·(g − x̂·mean(g·x̂))
//   - `wpart` + `wfinal`: weight gradients dScale = Σ_rows dY·x̂ and dBias = Σ_rows dY, as a
//     deterministic two-stage column sum: `wpart` sums chunks of `chunk` rows per column into
//     part[chunk][2][n] (adjacent invocations take adjacent columns, so loads coalesce), `wfinal`
//     adds the chunks in order, once per output (`which`: 0 dScale, 1 dBias).
// Each entry point declares its own bindings (WGSL scopes binding collisions per entry point):
//   fwd    x, scale, bias, y, mean, rstd, P        (bias absent: bound to scale, flags bit 0 = 0)
//   bwd    dy, x, scale, mean, rstd, dx, P         (RMS: mean bound to rstd, unread)
//   wpart  dy, x, mean, rstd, part, Q
//   wfinal part, out, R
// Row-sized float inputs are array<vec4<f32>> and must be padded to 16 bytes (pooled buffers
// are); outputs are array<f32>, since a store to one vector component may touch the whole vector.

override WG: u32 = 256u;  // invocations per workgroup
override TPR: u32 = 256u; // invocations per row (`fwd`, `bwd`): a power of two dividing WG
override OP: u32 = 0u;    // 0 LayerNormalization, 1 SimplifiedLayerNormalization
override VEC: u32 = 0u;   // 1: n % 4 == 0, rows are read as vec4

// struct Params: generated from its declaration in src/ops/normalization.ts.

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> scale: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(6) var<uniform> P: Params;

@group(0) @binding(0) var<storage, read> dy: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> bx: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bscale: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bmean: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> brstd: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

@group(0) @binding(2) var<storage, read> wmean: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> wrstd: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
@group(0) @binding(5) var<uniform> Q: Params;

@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> wout: array<f32>;
@group(0) @binding(2) var<uniform> R: Params;

var<workgroup> red: array<vec3<f32>, WG>;

// Chan et al.: merges two Welford triples (count, mean, M2). Counts are exact in f32 below 2^24.
fn chan(p: vec3<f32>, q: vec3<f32>) -> vec3<f32> {
  let n = p.x + q.x;
  if (n == 0.0) { return p; }
  let f = q.x / n;
  let d = q.y - p.y;
  return vec3<f32>(n, p.y + d * f, p.z + q.z + d * d * p.x * f);
}

// Tree reduction over each segment of TPR invocations (Welford merge or plain sum); every
// invocation gets its segment's result. Called in uniform control flow.
fn reduce(lid: u32, v: vec3<f32>, welford: bool) -> vec3<f32> {
  let lane = lid % TPR;
  red[lid] = v;
  workgroupBarrier();
  for (var off = TPR / 2u; off > 0u; off >>= 1u) {
    if (lane < off) {
      if (welford) { red[lid] = chan(red[lid], red[lid + off]); } else { red[lid] = red[lid] + red[lid + off]; }
    }
    workgroupBarrier();
  }
  let r = red[lid - lane];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
  let lane = lid % TPR;
  let row = workgroup_index(wid, nwg) * (WG / TPR) + lid / TPR;
  let live = row < P.rows;
  // Dead segments (past the last row) walk nothing but still take part in every barrier.
  let cnt = select(0u, P.n, live);
  let base = row * P.n;

  var w = vec3<f32>(0.0);
  if (VEC == 1u) {
    for (var j = lane; j < cnt / 4u; j += TPR) {
      let v = x[base / 4u + j];
      if (OP == 1u) {
        w.z += dot(v, v);
      } else {
        let bm = dot(v, vec4<f32>(0.25));
        let d = v - bm;
        w = chan(w, vec3<f32>(4.0, bm, dot(d, d)));
      }
    }
  } else {
    for (var j = lane; j < cnt; j += TPR) {
      let i = base + j;
      let v = x[i >> 2u][i & 3u];
      if (OP == 1u) { w.z += v * v; } else { w = chan(w, vec3<f32>(1.0, v, 0.0)); }
    }
  }
  let t = reduce(lid, w, OP == 0u);
  let mu = select(t.y, 0.0, OP == 1u);
  let rs = inverseSqrt(t.z / f32(P.n) + P.eps);
  if (live && lane == 0u) {
    mean[row] = mu;
    rstd[row] = rs;
  }

  let hasBias = (P.flags & 1u) != 0u;
  if (VEC == 1u) {
    for (var j = lane; j < cnt / 4u; j += TPR) {
      let o = (x[base / 4u + j] - mu) * rs * scale[j] + select(vec4<f32>(0.0), bias[j], hasBias);
      for (var c = 0u; c < 4u; c++) { y[base + 4u * j + c] = o[c]; }
    }
  } else {
    for (var j = lane; j < cnt; j += TPR) {
      let i = base + j;
      let s = scale[j >> 2u][j & 3u];
      let b = select(0.0, bias[j >> 2u][j & 3u], hasBias);
      y[i] = (x[i >> 2u][i & 3u] - mu) * rs * s + b;
    }
  }
}

@compute @workgroup_size(WG)
fn bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
  let lane = lid % TPR;
  let row = workgroup_index(wid, nwg) * (WG / TPR) + lid / TPR;
  let live = row < P.rows;
  let cnt = select(0u, P.n, live);
  let base = row * P.n;
  let r = min(row, P.rows - 1u); // statistics of dead segments are read in bounds and unused
  var mu = 0.0;
  if (OP == 0u) { mu = bmean[r >> 2u][r & 3u]; }
  let rs = brstd[r >> 2u][r & 3u];

  // Σ g and Σ g·x̂ over the row.
  var acc = vec3<f32>(0.0);
  if (VEC == 1u) {
    for (var j = lane; j < cnt / 4u; j += TPR) {
      let g = dy[base / 4u + j] * bscale[j];
      let xh = (bx[base / 4u + j] - mu) * rs;
      acc += vec3<f32>(dot(g, vec4<f32>(1.0)), dot(g, xh), 0.0);
    }
  } else {
    for (var j = lane; j < cnt; j += TPR) {
      let i = base + j;
      let g = dy[i >> 2u][i & 3u] * bscale[j >> 2u][j & 3u];
      let xh = (bx[i >> 2u][i & 3u] - mu) * rs;
      acc += vec3<f32>(g, g * xh, 0.0);
    }
  }
  let t = reduce(lid, acc, false) / f32(P.n);
  let mg = select(t.x, 0.0, OP == 1u);
  let mgx = t.y;

  if (VEC == 1u) {
    for (var j = lane; j < cnt / 4u; j += TPR) {
      let g = dy[base / 4u + j] * bscale[j];
      let xh = (bx[base / 4u + j] - mu) * rs;
      let o = rs * (g - mg - xh * mgx);
      for (var c = 0u; c < 4u; c++) { dx[base + 4u * j + c] = o[c]; }
    }
  } else {
    for (var j = lane; j < cnt; j += TPR) {
      let i = base + j;
      let g = dy[i >> 2u][i & 3u] * bscale[j >> 2u][j & 3u];
      let xh = (bx[i >> 2u][i & 3u] - mu) * rs;
      dx[i] = rs * (g - mg - xh * mgx);
    }
  }
}

@compute @workgroup_size(WG)
fn wpart(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let blk = workgroup_index(wid, nwg);
  let chunk = blk / Q.cblocks;
  let j = (blk % Q.cblocks) * WG + lid;
  if (chunk >= Q.nchunks || j >= Q.n) { return; }
  let r1 = min(Q.rows, (chunk + 1u) * Q.chunk);
  var ds = 0.0;
  var db = 0.0;
  for (var r = chunk * Q.chunk; r < r1; r++) {
    let i = r * Q.n + j;
    var mu = 0.0;
    if (OP == 0u) { mu = wmean[r >> 2u][r & 3u]; }
    let g = dy[i >> 2u][i & 3u];
    ds += g * (bx[i >> 2u][i & 3u] - mu) * wrstd[r >> 2u][r & 3u];
    db += g;
  }
  part[2u * chunk * Q.n + j] = ds;
  part[(2u * chunk + 1u) * Q.n + j] = db;
}

@compute @workgroup_size(WG)
fn wfinal(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let j = workgroup_index(wid, nwg) * WG + lid;
  if (j >= R.n) { return; }
  var s = 0.0;
  for (var c = 0u; c < R.nchunks; c++) { s += parts[(2u * c + R.which) * R.n + j]; }
  wout[j] = s;
}
