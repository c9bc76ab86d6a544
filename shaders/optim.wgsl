// Optimizer kernels over one flat f32 buffer of every trainable value.
//
// Global gradient norm (torch.nn.utils.clip_grad_norm_), two deterministic stages:
//   sumsq_partial  workgroup w sums g² over its own contiguous chunk [w·chunk, (w+1)·chunk) with a
//                  block-strided loop (coalesced) and a fixed-order tree → partials[w]
//   sumsq_finish   one workgroup sums the partials the same way and writes
//                  normScale = [norm, scale], scale = min(1, maxNorm / (norm + 1e-6)) when clipping
//                  is on, else 1.
// AdamW (torch.optim.AdamW, decoupled weight decay), one invocation per value:
//   g = grad · scale;  p ← p·(1 − lr·wd);  m ← lerp(m, g, 1 − β1);  v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
// with the scalar factors computed in float64 on the CPU. If norm is NaN or ±Inf the whole update
// is skipped, so a bad batch never overwrites params, m or v (the trainer reads the norm and stops).
//
// Non-finite tests use the bit pattern: WGSL lets compilers assume floats are finite, so a
// `x != x` test may be folded away, but an all-ones exponent cannot be.
//
// Bindings (inputs, outputs, uniforms; entries share slots, never within one entry):
//   slot | sumsq_partial     | sumsq_finish      | adamw
//   0    | grads             | partials          | grads
//   1    | partials (written)| normScale (written)| normScale
//   2    | uniforms (Partial)| uniforms (Finish) | params (updated)
//   3    |                   |                   | m (updated)
//   4    |                   |                   | v (updated)
//   5    |                   |                   | uniforms (AdamW)

override WG: u32 = 256u; // threads per workgroup; a power of two (tree reduction)

// structs Partial, Finish, AdamW: generated from their declarations in src/ops/optim.ts.

@group(0) @binding(0) var<storage, read> grads: array<f32>;
@group(0) @binding(0) var<storage, read> partialsIn: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> normScaleOut: array<f32>;
@group(0) @binding(1) var<storage, read> normScale: array<f32>;
@group(0) @binding(2) var<uniform> P: Partial;
@group(0) @binding(2) var<uniform> F: Finish;
@group(0) @binding(2) var<storage, read_write> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<uniform> A: AdamW;

var<workgroup> red: array<f32, WG>;

fn is_finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Sums red[0..WG) by a fixed-order tree; every invocation must call it.
fn tree(lid: u32) -> f32 {
  for (var h = WG / 2u; h > 0u; h = h / 2u) {
    workgroupBarrier();
    if (lid < h) { red[lid] += red[lid + h]; }
  }
  workgroupBarrier();
  return red[0];
}

@compute @workgroup_size(WG)
fn sumsq_partial(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = workgroup_index(wid, nwg);
  // w is uniform over the workgroup: the barriers below stay in uniform control flow.
  if (w >= P.groups) { return; }
  let end = min((w + 1u) * P.chunk, P.n);
  var acc = 0.0;
  for (var i = w * P.chunk + lid; i < end; i += WG) {
    let g = grads[i];
    acc += g * g;
  }
  red[lid] = acc;
  let total = tree(lid);
  if (lid == 0u) { partials[w] = total; }
}

@compute @workgroup_size(WG)
fn sumsq_finish(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < F.count; i += WG) { acc += partialsIn[i]; }
  red[lid] = acc;
  let total = tree(lid);
  if (lid == 0u) {
    let norm = sqrt(total);
    var scale = 1.0;
    if (F.clip != 0u && is_finite(norm)) { scale = min(1.0, F.maxNorm / (norm + 1e-6)); }
    normScaleOut[0] = norm;
    normScaleOut[1] = scale;
  }
}

@compute @workgroup_size(WG)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * WG + gid.x;
  if (i >= A.n || !is_finite(normScale[0])) { return; }
  let g = grads[i] * normScale[1];
  let p = params[i] * A.decay;
  let m0 = m[i];
  // torch's lerp switches form at weight 0.5 to stay exact at the end points; follow it.
  var m1: f32;
  if (A.beta1Weight < 0.5) {
    m1 = m0 + A.beta1Weight * (g - m0);
  } else {
    m1 = g - (g - m0) * (1.0 - A.beta1Weight);
  }
  let v1 = v[i] * A.beta2 + A.oneMinusBeta2 * (g * g);
  let denom = sqrt(v1) / A.bc2Sqrt + A.eps;
  params[i] = p - A.stepSize * (m1 / denom);
  m[i] = m1;
  v[i] = v1;
}
