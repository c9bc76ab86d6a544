// Plain copy, dst = src, four floats per invocation through vec4 loads and stores.
// The bandwidth baseline of the benchmarks: any element-wise kernel is judged as a ratio to it.
// `n4` counts whole vec4s; the scalar tail (n % 4) is copied by the first invocation of the
// first workgroup so the vector path never reads past the end.

override WG: u32 = 256u;

struct Params { n: u32, n4: u32 }

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * WG + gid.x;
  if (i < P.n4) {
    dst[i] = src[i];
  }
  // Tail: n % 4 trailing floats live in a final, partially used vec4.
  if (i == 0u && P.n4 * 4u < P.n) {
    let t = P.n4;
    var v = dst[t];
    let s = src[t];
    for (var k = 0u; k < P.n - P.n4 * 4u; k++) { v[k] = s[k]; }
    dst[t] = v;
  }
}
