// Plain copy, dst = src, as a grid-stride loop over vec4s: the bandwidth baseline of the
// benchmarks (every element-wise kernel is judged as a ratio to it) and a device-side buffer copy.
//
// Invocation g of the T = WG · workgroups launched copies vec4s g, g + T, g + 2T, … so each pass of
// the loop is one fully coalesced sweep of T · 16 bytes, and the grid is sized to fill the device
// (copyProgram caps it) rather than to the buffer: few invocations each move many vec4s, and launch
// cost is paid once per invocation, not per element. The bound is read into a register before the
// loop: the stores could alias the uniform buffer as far as a compiler can tell, and a reload per
// element is measurable on CPU-emulated adapters.
// `n4` counts whole vec4s; the scalar tail (n % 4) is copied by invocation 0 so the vector path
// never reads past the end. The linear index survives a 2-D fold of the grid by grid().

override WG: u32 = 256u;

// struct Params: generated from its declaration in src/gpu/copy.ts.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let first = gid.y * nwg.x * WG + gid.x;
  let stride = nwg.x * nwg.y * WG;
  let n4 = P.n4;
  for (var i = first; i < n4; i += stride) {
    dst[i] = src[i];
  }
  // Tail: n % 4 trailing floats live in a final, partially used vec4.
  if (first == 0u && n4 * 4u < P.n) {
    var v = dst[n4];
    let s = src[n4];
    for (var k = 0u; k < P.n - n4 * 4u; k++) { v[k] = s[k]; }
    dst[n4] = v;
  }
}
