// Strided copy: the data-movement engine of the layout ops.
//
//   dst[dst_base + Σ_d c_d·dst_strides[d]] = src[src_base + Σ_d c_d·src_strides[d]]
//
// for every coordinate c of the iteration space `dims` (row-major, rank ≤ 12). Transpose (general
// permutations), Slice (negative strides for negative steps), Expand (zero strides), Tile (an
// iteration space of (repeat, index) pairs), Concat and Split (one region per dispatch) are all
// this one map with different strides. The host drops dims of 1 and merges dims that are
// contiguous on both sides, so the rank (and the per-element index arithmetic) stays small.
//
// Elements move as raw 32-bit words: f32 and i32 tensors take the same path, bit-exactly.
// Invocation i handles iteration index i, so neighbouring invocations write neighbouring words
// whenever the innermost dst stride is 1 (always but for Concat regions, whose rows are contiguous).
// `main_vec4` is the same map in units of vec4 (16 bytes): the host takes it when the innermost
// dim is contiguous on both sides and its length, both bases and all strides are multiples of 4,
// and passes dims, bases and strides already divided by 4.
// A 1-D grid of workgroups may be folded into x and y (see grid() in kernel.ts).

override WG: u32 = 256u;

// struct Params: generated from its declaration in src/ops/layout-kernels.ts.

// The scalar and vec4 entry points each use one pair of these views of the same two bindings.
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(0) var<storage, read> src4: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst4: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> P: Params;

// (source offset, destination offset) of iteration index i: peel coordinates innermost first.
fn offsets(i: u32) -> vec2<i32> {
  var rem = i;
  var s = i32(P.src_base);
  var d = i32(P.dst_base);
  for (var k = i32(P.rank) - 1; k >= 0; k--) {
    let q = k / 4;
    let r = k % 4;
    let dim = P.dims[q][r];
    let c = i32(rem % dim);
    rem = rem / dim;
    s += c * P.src_strides[q][r];
    d += c * P.dst_strides[q][r];
  }
  return vec2<i32>(s, d);
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = workgroup_index(wid, nwg) * WG + lid;
  if (i >= P.n) { return; }
  let o = offsets(i);
  dst[o.y] = src[o.x];
}

@compute @workgroup_size(WG)
fn main_vec4(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = workgroup_index(wid, nwg) * WG + lid;
  if (i >= P.n) { return; }
  let o = offsets(i);
  dst4[o.y] = src4[o.x];
}
