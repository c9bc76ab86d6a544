// Training-loop helpers over flat f32 arrays.
//
//   accumulate:  dst[i] = beta · dst[i] + alpha · src[i],  i < n
//
// With beta = 0 it is a scaled copy (the first micro-batch's gradient into the flat gradient
// buffer, or trained values back into the vectors the plans read); with beta = 1 it adds (gradient
// accumulation, alpha = 1 / steps). src and dst are distinct buffers or disjoint sub-ranges bound
// at 256-byte aligned offsets. A 1-D grid folded by grid() in x/y.

override WG: u32 = 64u;

// struct Params: generated from its declaration in src/train/kernels.ts.

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * WG + gid.x;
  if (i >= P.n) { return; }
  // beta = 0 must not read dst: it may hold NaN from a previous, skipped step.
  if (P.beta == 0.0) {
    dst[i] = P.alpha * src[i];
  } else {
    dst[i] = P.beta * dst[i] + P.alpha * src[i];
  }
}
