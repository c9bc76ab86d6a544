// Batched 2-D transpose through workgroup memory: dst[b, c, r] = src[b, r, c].
//
// The host reduces a Transpose to this kernel when, after dropping dims of 1 and merging axes that
// stay adjacent, its permutation keeps leading axes in place and swaps the last two groups (the
// attention-score Kᵀ, NHWC<->NCHW, any [.., A, B] -> [.., B, A]); other permutations go through
// the strided kernel. A workgroup of TILE x ROWS invocations moves one TILE x TILE tile: it reads
// rows of the tile (consecutive invocations read consecutive source words: coalesced), stores them
// in workgroup memory, and writes the tile's columns as rows of the output (coalesced again). The
// tile row is padded by one word so the column-wise reads of workgroup memory hit distinct banks.
// Each invocation moves TILE / ROWS elements. Grid: x over column tiles, y over row tiles, z over
// the batch; partial tiles at the edges are masked, so any rows and cols work.
// Elements move as raw 32-bit words (f32 or i32 alike).

override TILE: u32 = 32u;
override ROWS: u32 = 8u;

// struct Params: generated from its declaration in src/ops/layout-kernels.ts.

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;

var<workgroup> tile: array<u32, TILE * (TILE + 1u)>;

@compute @workgroup_size(TILE, ROWS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = wid.z * P.rows * P.cols;
  let r0 = wid.y * TILE;
  let c0 = wid.x * TILE;
  for (var j = lid.y; j < TILE; j += ROWS) {
    let r = r0 + j;
    let c = c0 + lid.x;
    if (r < P.rows && c < P.cols) {
      tile[j * (TILE + 1u) + lid.x] = src[base + r * P.cols + c];
    }
  }
  workgroupBarrier();
  // Output row c (a source column), output column r (a source row).
  for (var j = lid.y; j < TILE; j += ROWS) {
    let c = c0 + j;
    let r = r0 + lid.x;
    if (c < P.cols && r < P.rows) {
      dst[base + c * P.rows + r] = tile[lid.x * (TILE + 1u) + j];
    }
  }
}
