// Index checks: a gather whose indices are computed on the GPU cannot raise when one is out of
// range, so this pass counts the indices outside [-axis_dim, axis_dim - 1] and records the largest
// and the smallest of them; the host reads the three words after the step and raises the error
// onnxruntime raises. The words start at 0 (the host clears them first): status[0] counts,
// status[1] is the atomicMax of e(j) = bitcast<u32>(j) ^ 0x80000000 (an order-preserving encoding of
// i32 as u32, so 0 is below every index), status[2] the atomicMax of ~e(j), which tracks the
// minimum. Only offending indices touch the atomics, so a clean step costs one read per index.

override WG: u32 = 256u;

// struct Params: generated from its declaration in src/ops/index-check.ts.

@group(0) @binding(0) var<storage, read> indices: array<i32>;
@group(0) @binding(1) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = workgroup_index(wid, nwg) * WG + lid;
  if (i >= P.n) { return; }
  let j = indices[i];
  if (j < -P.axis_dim || j >= P.axis_dim) {
    let e = bitcast<u32>(j) ^ 0x80000000u;
    atomicAdd(&status[0], 1u);
    atomicMax(&status[1], e);
    atomicMax(&status[2], ~e);
  }
}
