// IA3 scaling and its backward.
//
//   forward   y  = x ⊙ s,  s = l1 ⊙ … ⊙ l_NL, broadcast over the rows of x viewed as [rows, C]
//   backward  dx = dy ⊙ s
//             dl_k = Σ_rows (dy ⊙ x) ⊙ Π_{j≠k} l_j
//   backward of a scaled GELU (ACT ≠ 0: the forward scaled gelu(x), x the pre-GELU state)
//             dx = dy ⊙ s ⊙ gelu'(x),  dl_k = Σ_rows (dy ⊙ gelu(x)) ⊙ Π_{j≠k} l_j
//             — GeluGrad fused in, and gelu(x) evaluated inline: the backward of IA3 on a GPT-2
//             MLP's c_proj input never needs GELU's output in memory (compile/fuse.ts).
//
// Tiling (every entry): x is [rows, C]; a "lane" is one column (scalar entries) or four adjacent
// columns (the _v4 entries, used when C % 4 == 0 so every row starts on a vec4 boundary). The grid
// is `tiles = chunks × colBlocks` workgroups, folded into x/y by grid() and recovered as
// t = wid.y·nwg.x + wid.x. Workgroup t owns column block t % colBlocks (CT lanes wide) and row
// chunk t / colBlocks (chunkRows rows). Thread (lid.x, lid.y) owns one lane and visits the rows
// r0+lid.y, r0+lid.y+RT, … of its chunk, so a warp reads consecutive lanes of one row (coalesced)
// and loads its column's scale s once for all its rows. The row loops step a flat index by RT·lanes
// with every uniform read into a register first: storage writes in the loop may alias the uniform
// buffer as far as a compiler knows, and a reload plus multiply per element is a measurable share
// of the work on CPU-emulated adapters.
//
// The backward is one fused pass: each thread writes dx for its elements and accumulates dy·x in a
// register; the RT row groups are summed by a fixed-order tree in workgroup memory and written as
// partials[chunk][c]. A second small pass (`finish`) sums the chunks of each column in fixed order
// and applies Π_{j≠k} l_j, once per vector k. No atomics: results are deterministic run to run.
// With RT = 1 (the software-adapter tiling) the tree and its barriers are compiled out: a software
// adapter runs a workgroup's SIMD groups one after another, and any barrier makes it suspend and
// resume each of them as a coroutine, which costs ~10× the streaming itself.
//
// Bindings (inputs, outputs, uniforms in group 0; entries share slots, never within one entry):
//   slot | scale_s / scale_v4 | grad_s / grad_v4   | finish
//   0    | x                  | x                  | partials [chunks, C]
//   1-4  | l1..l4             | l1..l4             | l1..l4
//   5    | y                  | dy                 | dl_k
//   6    | uniforms (Tiles)   | dx                 | uniforms (Finish)
//   7    |                    | partials (written) |
//   8    |                    | uniforms (Tiles)   |
// Vectors past NL are bound to l1 again and never read. The l_k are read as scalars: each thread
// loads them once, so only the streaming tensors (x, y, dy, dx) use vec4.

override NL: u32 = 1u;  // number of active vectors, 1..4
override CT: u32 = 64u; // workgroup x: lanes per column block
override RT: u32 = 4u;  // workgroup y: row groups (chunk groups in finish); a power of two, CT·RT ≤ 256
override DX: u32 = 1u;  // grad: 1 = write dx, 0 = skip it (dx is bound to a dummy buffer)
override ACT: u32 = 0u; // grad: 0 = x is the scaled value, 1 = x is pre-GELU (erf), 2 = pre-GELU (tanh)

// struct Tiles: generated from its declaration in src/ops/ia3.ts.

// struct Finish: generated from its declaration in src/ops/ia3.ts.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(0) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(0) var<storage, read> psum: array<f32>;
@group(0) @binding(1) var<storage, read> l1: array<f32>;
@group(0) @binding(2) var<storage, read> l2: array<f32>;
@group(0) @binding(3) var<storage, read> l3: array<f32>;
@group(0) @binding(4) var<storage, read> l4: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> dl: array<f32>;
@group(0) @binding(6) var<uniform> S: Tiles;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx4: array<vec4<f32>>;
@group(0) @binding(6) var<uniform> F: Finish;
@group(0) @binding(7) var<storage, read_write> part: array<f32>;
@group(0) @binding(8) var<uniform> G: Tiles;

// CT·RT ≤ 256 is the lowering's invariant; one slot per invocation.
var<workgroup> red: array<f32, 256>;
var<workgroup> red4: array<vec4<f32>, 256>;

/** The combined scale of column c, skipping vector `skip` (pass NL or more to skip none). */
fn scale_at(c: u32, skip: u32) -> f32 {
  var s = 1.0;
  if (skip != 0u) { s = l1[c]; }
  if (NL > 1u && skip != 1u) { s *= l2[c]; }
  if (NL > 2u && skip != 2u) { s *= l3[c]; }
  if (NL > 3u && skip != 3u) { s *= l4[c]; }
  return s;
}

fn scale4_at(lane: u32) -> vec4<f32> {
  let c = 4u * lane;
  return vec4<f32>(scale_at(c, 4u), scale_at(c + 1u, 4u), scale_at(c + 2u, 4u), scale_at(c + 3u, 4u));
}

// Sums red[0..RT)[lid.x] over the row groups by a fixed-order tree; every invocation must call it
// (callers skip it when RT == 1: one row group needs no sum, and the barriers would remain).
fn tree(lid: vec3<u32>) -> f32 {
  for (var h = RT / 2u; h > 0u; h = h / 2u) {
    workgroupBarrier();
    if (lid.y < h) { red[lid.y * CT + lid.x] += red[(lid.y + h) * CT + lid.x]; }
  }
  workgroupBarrier();
  return red[lid.x];
}

fn tree4(lid: vec3<u32>) -> vec4<f32> {
  for (var h = RT / 2u; h > 0u; h = h / 2u) {
    workgroupBarrier();
    if (lid.y < h) { red4[lid.y * CT + lid.x] += red4[(lid.y + h) * CT + lid.x]; }
  }
  workgroupBarrier();
  return red4[lid.x];
}

@compute @workgroup_size(CT, RT)
fn scale_s(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = workgroup_index(wid, nwg);
  let lanes = S.lanes;
  let lane = (t % S.colBlocks) * CT + lid.x;
  if (t >= S.tiles || lane >= lanes) { return; }
  let s = scale_at(lane, 4u);
  let r0 = (t / S.colBlocks) * S.chunkRows;
  let end = min(r0 + S.chunkRows, S.rows) * lanes;
  for (var i = (r0 + lid.y) * lanes + lane; i < end; i += RT * lanes) {
    y[i] = x[i] * s;
  }
}

@compute @workgroup_size(CT, RT)
fn scale_v4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = workgroup_index(wid, nwg);
  let lanes = S.lanes;
  let lane = (t % S.colBlocks) * CT + lid.x;
  if (t >= S.tiles || lane >= lanes) { return; }
  let s = scale4_at(lane);
  let r0 = (t / S.colBlocks) * S.chunkRows;
  let end = min(r0 + S.chunkRows, S.rows) * lanes;
  for (var i = (r0 + lid.y) * lanes + lane; i < end; i += RT * lanes) {
    y4[i] = x4[i] * s;
  }
}

@compute @workgroup_size(CT, RT)
fn grad_s(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = workgroup_index(wid, nwg);
  // t is uniform over the workgroup, so this exit keeps the barriers below in uniform control flow.
  if (t >= G.tiles) { return; }
  let lanes = G.lanes;
  let chunk = t / G.colBlocks;
  let lane = (t % G.colBlocks) * CT + lid.x;
  var acc = 0.0;
  if (lane < lanes) {
    let s = scale_at(lane, 4u);
    let r0 = chunk * G.chunkRows;
    let end = min(r0 + G.chunkRows, G.rows) * lanes;
    for (var i = (r0 + lid.y) * lanes + lane; i < end; i += RT * lanes) {
      let g = dy[i];
      if (ACT == 0u) {
        acc += g * x[i];
        if (DX != 0u) { dx[i] = g * s; }
      } else {
        let v = vec4<f32>(x[i]);
        acc += g * gelu4(v, ACT == 2u).x;
        if (DX != 0u) { dx[i] = g * s * gelu_grad4(v, ACT == 2u).x; }
      }
    }
  }
  if (RT > 1u) {
    red[lid.y * CT + lid.x] = acc;
    acc = tree(lid);
  }
  if (lid.y == 0u && lane < lanes) { part[chunk * lanes + lane] = acc; }
}

@compute @workgroup_size(CT, RT)
fn grad_v4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = workgroup_index(wid, nwg);
  if (t >= G.tiles) { return; }
  let lanes = G.lanes;
  let chunk = t / G.colBlocks;
  let lane = (t % G.colBlocks) * CT + lid.x;
  var acc = vec4<f32>(0.0);
  if (lane < lanes) {
    let s = scale4_at(lane);
    let r0 = chunk * G.chunkRows;
    let end = min(r0 + G.chunkRows, G.rows) * lanes;
    for (var i = (r0 + lid.y) * lanes + lane; i < end; i += RT * lanes) {
      let g = dy4[i];
      if (ACT == 0u) {
        acc += g * x4[i];
        if (DX != 0u) { dx4[i] = g * s; }
      } else {
        let v = x4[i];
        acc += g * gelu4(v, ACT == 2u);
        if (DX != 0u) { dx4[i] = g * s * gelu_grad4(v, ACT == 2u); }
      }
    }
  }
  if (RT > 1u) {
    red4[lid.y * CT + lid.x] = acc;
    acc = tree4(lid);
  }
  if (lid.y == 0u && lane < lanes) {
    // Partials are laid out per column ([chunks, C] floats) whichever entry wrote them.
    let o = chunk * 4u * lanes + 4u * lane;
    part[o] = acc.x;
    part[o + 1u] = acc.y;
    part[o + 2u] = acc.z;
    part[o + 3u] = acc.w;
  }
}

// dl_k[c] = (Σ_chunks partials[chunk][c]) · Π_{j≠k} l_j[c]. One workgroup per CT columns; its RT
// row groups split the chunks (k = lid.y, lid.y+RT, …) and a tree adds them, in fixed order.
@compute @workgroup_size(CT, RT)
fn finish(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
  let b = workgroup_index(wid, nwg);
  if (b * CT >= F.cols) { return; }
  let c = b * CT + lid.x;
  var acc = 0.0;
  if (c < F.cols) {
    for (var k = lid.y; k < F.chunks; k += RT) { acc += psum[k * F.cols + c]; }
  }
  if (RT > 1u) {
    red[lid.y * CT + lid.x] = acc;
    acc = tree(lid);
  }
  if (lid.y == 0u && c < F.cols) { dl[c] = acc * scale_at(c, F.skip); }
}
