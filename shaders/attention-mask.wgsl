// Additive attention bias [B, 1, S, T] from the mask inputs of onnxruntime's attention ops: 0 where
// query i (0..S) of batch b may attend key j (0..T), a large negative value where it may not. The
// keys are the past (P = T − S of them) followed by the S new ones, so query i sits at position P + i.
//
// `masked` reads one int mask whose form the host picked from its shape (P.form):
//   1  [B]            keys at or after the end position mask[b] are masked       (right padding)
//   2  [2B]           also keys before the start position mask[B + b]            (left padding)
//   3  [B, T]         raw mask: 0 masks key j
//   4  [B, S, T]      raw mask per query
//   5  [B, 1, M, M2]  Megatron's square mask, read at row P + i
// masked entries get P.fill; with P.causal keys after P + i get −FLT_MAX (onnxruntime's
// `lowest()`), overriding the mask. `nomask` writes the causal part alone.
// `seqlens` is GroupQueryAttention's rule: seqlens[b] + 1 keys are valid in total; a first prompt
// (S == total) has no past, otherwise the past of batch b holds past_b = seqlens[b] + 1 − S valid
// keys. Past key j is visible when j < past_b, new key n = j − P when n ≤ i, and with a local
// window (P.window > 0) only keys at most P.window positions before the query. Invisible keys get
// −∞, so their probability is exactly 0, as in onnxruntime's kernel.
// One invocation per output element; the grid is folded into x/y by grid().

override WG: u32 = 256u;

// struct Params: generated from its declaration in src/ops/attention-mask.ts.

@group(0) @binding(0) var<storage, read> mask: array<i32>;
@group(0) @binding(1) var<storage, read_write> bias: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

@group(0) @binding(0) var<storage, read_write> cbias: array<f32>;
@group(0) @binding(1) var<uniform> Q: Params;

@group(0) @binding(0) var<storage, read> seqlens: array<i32>;
@group(0) @binding(1) var<storage, read> total: array<i32>;
@group(0) @binding(2) var<storage, read_write> gbias: array<f32>;
@group(0) @binding(3) var<uniform> R: Params;

const NEG_INF_BITS: u32 = 0xff800000u;

// (b, i, j) of output element e of a [B, S, T] grid.
fn coords(e: u32, s: u32, t: u32) -> vec3<u32> {
  return vec3<u32>(e / (s * t), (e / t) % s, e % t);
}

fn causal_masked(i: u32, j: u32, p: u32) -> bool {
  return j > p + i;
}

@compute @workgroup_size(WG)
fn masked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let e = workgroup_index(wid, nwg) * WG + lid;
  if (e >= P.b * P.s * P.t) { return; }
  let c = coords(e, P.s, P.t);
  let b = c.x;
  let i = c.y;
  let j = c.z;
  var hidden = false;
  switch (P.form) {
    case 1u: {
      hidden = i32(j) >= mask[b];
    }
    case 2u: {
      hidden = i32(j) >= mask[b] || i32(j) < min(mask[P.b + b], i32(P.t));
    }
    case 3u: {
      hidden = mask[b * P.t + j] <= 0;
    }
    case 4u: {
      hidden = mask[(b * P.s + i) * P.t + j] <= 0;
    }
    case 5u: {
      hidden = mask[(b * P.m1 + P.p + i) * P.m2 + j] <= 0;
    }
    default: {}
  }
  var v = select(0.0, P.fill, hidden);
  if (P.causal != 0u && causal_masked(i, j, P.p)) { v = -F32_MAX; }
  bias[e] = v;
}

@compute @workgroup_size(WG)
fn nomask(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let e = workgroup_index(wid, nwg) * WG + lid;
  if (e >= Q.b * Q.s * Q.t) { return; }
  let c = coords(e, Q.s, Q.t);
  cbias[e] = select(0.0, -F32_MAX, Q.causal != 0u && causal_masked(c.y, c.z, Q.p));
}

@compute @workgroup_size(WG)
fn seqlen(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let e = workgroup_index(wid, nwg) * WG + lid;
  if (e >= R.b * R.s * R.t) { return; }
  let c = coords(e, R.s, R.t);
  let i = i32(c.y);
  let j = i32(c.z);
  let s = i32(R.s);
  let p = i32(R.p);
  let first = total[0] == s;
  let past_b = select(seqlens[c.x] + 1 - s, 0, first);
  var visible: bool;
  var back: i32; // how many positions key j lies before query i
  if (j < p) {
    visible = j < past_b;
    back = past_b + i - j;
  } else {
    visible = j - p <= i;
    back = i - (j - p);
  }
  if (R.window > 0 && back > R.window) { visible = false; }
  // −∞ from its bits at run time (a constant −∞ is not a valid WGSL const-expression).
  var bits = NEG_INF_BITS;
  gbias[e] = select(bitcast<f32>(bits), 0.0, visible);
}
