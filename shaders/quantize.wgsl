// Dynamic fake quantisation: y = DequantizeLinear(DynamicQuantizeLinear(x)), onnxruntime's uint8
// activation quantiser followed by its exact inverse, in f32 as onnxruntime computes it.
//
//   range: one workgroup folds min and max over all n elements (each invocation strides the
//          tensor, then a fixed tree in workgroup memory), widens the range to include 0, and
//          writes qp = [scale, zero point]: scale = (max − min) / 255 (1 when max == min),
//          zero point = round_half_even(clamp(−min / scale, 0, 255)).
//   apply: one invocation per element: q = clamp(round_half_even(x / scale) + zp, 0, 255),
//          y = (q − zp) · scale. WGSL's round() rounds halves to even, as onnxruntime does.
// Both entries share one interface (x in; y and qp out) so a lowering binds the same buffers twice;
// `range` leaves y alone and `apply` only reads qp. The single-workgroup range pass costs one read
// of x: the quantiser sits in front of matmuls whose reads of the same x dominate it.

override WG: u32 = 256u;

// struct Params: generated from its declaration in src/ops/quantize.ts.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> qp: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

var<workgroup> lo: array<f32, WG>;
var<workgroup> hi: array<f32, WG>;

@compute @workgroup_size(WG)
fn range(@builtin(local_invocation_index) lid: u32) {
  // Starting both at 0 is the widening to include 0.
  var a = 0.0;
  var b = 0.0;
  for (var i = lid; i < P.n; i += WG) {
    let v = x[i];
    a = min(a, v);
    b = max(b, v);
  }
  lo[lid] = a;
  hi[lid] = b;
  workgroupBarrier();
  for (var off = WG / 2u; off > 0u; off >>= 1u) {
    if (lid < off) {
      lo[lid] = min(lo[lid], lo[lid + off]);
      hi[lid] = max(hi[lid], hi[lid + off]);
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let mn = lo[0];
    let mx = hi[0];
    let scale = select((mx - mn) / 255.0, 1.0, mx == mn);
    qp[0] = scale;
    qp[1] = round(clamp(0.0 - mn / scale, 0.0, 255.0));
  }
}

@compute @workgroup_size(WG)
fn apply(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = workgroup_index(wid, nwg) * WG + lid;
  if (i >= P.n) { return; }
  let scale = qp[0];
  let zp = qp[1];
  let q = clamp(round(x[i] / scale) + zp, 0.0, 255.0);
  y[i] = (q - zp) * scale;
}
