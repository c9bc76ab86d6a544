// Gather and GatherElements: out[i] = data[data_offset(c) + index(c)·axis_stride].
//
// Both ops read one word of `data` per output element, at an offset that is an affine function of
// the output coordinate c plus an index taken from `indices`:
//   Gather:          iteration [outer, n_indices, inner]; indices at [0, 1, 0]·c;
//                    data offset [axis_dim·inner, 0, 1]·c; axis_stride = inner.
//   GatherElements:  iteration = the indices' dims; indices contiguous; data offset uses the data
//                    strides with the gathered axis's stride zeroed; axis_stride = that stride.
// The host drops dims of 1, so the rank (≤ 8) is what the per-element index arithmetic pays.
// Indices are i32; a negative index counts from the end of the axis (ONNX). An index still out of
// range after that cannot raise here: float data (POISON = 1) gets a NaN, so nothing computed from
// it passes for a good value (a training step's loss turns non-finite and is refused), integer data
// is CLAMPED to [0, axis_dim - 1]; either way the read stays inside the tensor. The index check
// (shaders/index-check.wgsl) flags the step so the host raises onnxruntime's error, as the float64
// reference does directly.
// Consecutive invocations handle consecutive output words, so embedding lookups (inner = hidden
// size) read and write whole contiguous rows. A table too large for one binding is gathered from
// its row blocks, one dispatch each: `data` is then the block [block_lo, block_hi) of the axis, and
// an element whose (clamped) index lies outside it is left for the dispatch of its own block.

override WG: u32 = 256u;
override POISON: u32 = 0u;

// struct Params: generated from its declaration in src/ops/layout-kernels.ts.

@group(0) @binding(0) var<storage, read> data: array<u32>;
@group(0) @binding(1) var<storage, read> indices: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> P: Params;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = workgroup_index(wid, nwg) * WG + lid;
  if (i >= P.n) { return; }
  var rem = i;
  var ii = 0u;
  var dd = 0u;
  for (var k = i32(P.rank) - 1; k >= 0; k--) {
    let q = k / 4;
    let r = k % 4;
    let dim = P.dims[q][r];
    let c = rem % dim;
    rem = rem / dim;
    ii += c * P.idx_strides[q][r];
    dd += c * P.data_strides[q][r];
  }
  var j = indices[ii];
  if (j < 0) { j += P.axis_dim; }
  let inside = j >= 0 && j < P.axis_dim;
  j = clamp(j, 0, P.axis_dim - 1);
  // The block holding the clamped index writes the element (a poisoned one too, exactly once).
  if (j < P.block_lo || j >= P.block_hi) { return; }
  let v = data[dd + u32(j - P.block_lo) * P.axis_stride];
  out[i] = select(v, 0x7fc00000u, POISON == 1u && !inside); // 0x7fc00000: the f32 quiet NaN
}

// rows_int8: Gather along axis 0 of a 2-D table [axis_dim, axis_stride] kept as 8-bit codes
// (storage i8r / u8r, ir/dtype.ts: the codes four per word, then one f32 scale and one f32 zero
// point per row), dequantised as it is read: out[i] = (code − zp[row]) · scale[row]. One
// invocation per output element, consecutive ones along a row (embedding lookups read a row's
// consecutive bytes). An index out of range writes NaN, as the float path does.
override SIGNED: u32 = 0u;

// The row (or column) of the packed table an index picks — negative counts from the end, clamped
// into [0, axis_dim) so the read stays inside — and 1 when the index was in range.
fn packed_index(raw: i32) -> vec2<u32> {
  let j = select(raw, raw + P.axis_dim, raw < 0);
  return vec2<u32>(u32(clamp(j, 0, P.axis_dim - 1)), select(0u, 1u, j >= 0 && j < P.axis_dim));
}

@compute @workgroup_size(WG)
fn rows_int8(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = workgroup_index(wid, nwg) * WG + lid;
  if (i >= P.n) { return; }
  let h = P.axis_stride;
  let picked = packed_index(indices[i / h]);
  let r = picked.x;
  let rows = u32(P.axis_dim);
  let e = r * h + i % h;
  let byte = (data[e / 4u] >> ((e % 4u) * 8u)) & 0xffu;
  // Sign-extend the byte for int8 codes.
  let code = select(f32(byte), f32((bitcast<i32>(byte) << 24u) >> 24u), SIGNED == 1u);
  let base = (rows * h + 3u) / 4u;
  let v = (code - bitcast<f32>(data[base + rows + r])) * bitcast<f32>(data[base + r]);
  out[i] = select(bitcast<u32>(v), 0x7fc00000u, picked.y == 0u);
}

// cols_q4: Gather along axis 1 of a weight W [K, N] kept in MatMulNBits' 4-bit blocks (storage
// q4b<block>[z], ir/dtype.ts `Q4Layout`: row n of the codes holds column n of W, blocks along K),
// i.e. row n of the table Wᵀ [N, K] — a GatherBlockQuantized embedding, possibly tied to the LM
// head's MatMulNBits weight (onnx/precision.ts). Output [K, count]: out[k·count + j] =
// (code(k, n) − zp(n, k / BLOCK)) · scale(n, k / BLOCK) with n = indices[j]. Params fields here:
// n = K·count, axis_dim = N, axis_stride = count, block_hi = K. An index out of range writes NaN.
override Q4_BLOCK: u32 = 32u;
override Q4_ZP: u32 = 0u;

@compute @workgroup_size(WG)
fn cols_q4(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = workgroup_index(wid, nwg) * WG + lid;
  if (i >= P.n) { return; }
  let count = P.axis_stride;
  let k = i / count;
  let picked = packed_index(indices[i % count]);
  let col = picked.x;
  let cols = u32(P.axis_dim);
  let blocks = (u32(P.block_hi) + Q4_BLOCK - 1u) / Q4_BLOCK;
  let row_words = blocks * Q4_BLOCK / 8u;
  let code = f32((data[col * row_words + k / 8u] >> ((k % 8u) * 4u)) & 15u);
  let blk = k / Q4_BLOCK;
  let scale = bitcast<f32>(data[cols * row_words + col * blocks + blk]);
  var zp = 8.0;
  if (Q4_ZP == 1u) {
    let zi = col * ((blocks + 1u) / 2u) + blk / 2u;
    zp = f32((data[cols * (row_words + blocks) + zi / 4u] >> ((zi % 4u) * 8u + (blk % 2u) * 4u)) & 15u);
  }
  let v = (code - zp) * scale;
  out[i] = select(bitcast<u32>(v), 0x7fc00000u, picked.y == 0u);
}
