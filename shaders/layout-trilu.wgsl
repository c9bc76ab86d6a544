// Trilu: keep the upper (UPPER = 1) or lower (UPPER = 0) triangle of each matrix in the last two
// dims, zeroing the rest. Element (row, col) of a [rows, cols] matrix is kept when
// col - row >= k (upper) or col - row <= k (lower). One invocation per element; the batch is folded
// into the linear index. Elements move as raw 32-bit words, and zero is the all-zero word in both
// f32 and i32. The host clamps k to [-(rows + 1), cols + 1] so it fits an i32 without changing the
// result.

override WG: u32 = 256u;
override UPPER: u32 = 1u;

// struct Params: generated from its declaration in src/ops/layout-kernels.ts.

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = workgroup_index(wid, nwg) * WG + lid;
  if (i >= P.n) { return; }
  let col = i32(i % P.cols);
  let row = i32((i / P.cols) % P.rows);
  let d = col - row;
  let keep = select(d <= P.k, d >= P.k, UPPER == 1u);
  dst[i] = select(0u, src[i], keep);
}
