// Tiled matrix multiply with a fused prologue and epilogue (MatMul, Gemm, FusedMatMul):
//
//   Y[z] = (alpha · (opA(A[z]) ⊙ inScale) · opB(B[z]) + beta · C) ⊙ outScale
//
// opA(A) is M×K (A is stored [M,K], or [K,M] when transposed); opB(B) is K×N (B is [K,N], or [N,K]
// when transposed). inScale (K values) scales the K dimension of opA(A) as it is loaded; C is read
// at m·cStrideM + n·cStrideN (0 strides broadcast: Gemm's C, or a bias of N values); outScale (N
// values) multiplies each column after C is added. Y is row-major [M,N] per batch entry.
//
// Blocking: a workgroup of WG_X×WG_Y invocations computes one TM×TN tile of Y (TM = RM·WG_Y,
// TN = CN·WG_X). Each invocation owns an RM×CN block (RM, CN = 4 or 8) made of 4×4 sub-blocks
// spaced half a tile apart: rows 4·ty.. (and TM/2 + 4·ty..), columns 4·tx.. (and TN/2 + 4·tx..).
// That spacing keeps every workgroup-memory read of a K step conflict-free (neighbouring
// invocations read neighbouring vec4s). K advances in tiles of KT: both operand tiles are staged in
// workgroup memory K-major (As[k][m], Bs[k][n], as vec4 of four consecutive m or n), so one K step
// is RM/4 + CN/4 vec4 reads and RM·CN/4 vec4 FMAs; 8×8 blocks halve the reads per FMA of 4×4 ones.
//
// The accumulators are named variables (c*, d*), never an array: an array indexed in a loop is
// lowered to memory by compilers that do not unroll (software Vulkan, where it cost 3× overall),
// and named vectors stay in registers everywhere. `if (RM == 8u)` and `if (CN == 8u)` test
// pipeline constants and fold away at pipeline creation.
//
// Staging: each invocation moves LA = TM·KT/(4·NT) quads of A and LB quads of B per K tile
// (NT = WG_X·WG_Y; the host keeps both in 1..4). The next tile's quads are loaded into registers
// before the current tile is consumed (software pipelining, hiding global-memory latency behind
// the FMAs). A quad is 4 consecutive elements along its operand's contiguous dimension (K or M for
// A, N or K for B); consecutive invocations take consecutive quads, so global loads coalesce. Each
// invocation's quad coordinates and addresses are computed once (a Stager) and advanced per tile
// by additions only: index arithmetic per load cost as much as the load on a software adapter.
// With VEC_A / VEC_B (that dimension a multiple of 4, so every quad is aligned and entirely in or
// out of range) a quad is one vec4 load; otherwise four bounds-checked scalars. Out-of-range
// elements load as 0, so partial tiles need no special casing in the inner loop. A is bound as
// array<vec4<f32>>, B as vec4<f32> or (packed halves) vec2<u32> quads: their buffers must be padded
// to 16 bytes (pool buffers and packed weights always are).
//
// Batch: grid z (plus zBase, for batches over 65535) is a linear index over up to four batch dims
// (batchDims, innermost first) with per-operand element strides (0 for broadcast dims) for A, B and
// Y; dims past four are separate dispatches whose offsets arrive in aBase/bBase/yBase. mBase/nBase
// offset the tile grid the same way when a dimension has over 65535 tiles.
//
// Strided views: each matrix is read (A, B) or written (Y) with its own row stride lda, ldb, ldy
// (the distance between consecutive rows of the stored matrix, ≥ its contiguous extent), so a
// product reads attention's per-head q, k, v straight from the [B,T,3·H·D] projection and writes
// its context into [B,T,H·D] (src/compile/views.ts), with no copy. A contiguous operand has
// lda = K (or M when transposed); the host asks for vec4 loads and stores only where every quad of
// the view is aligned (row stride, batch strides and offset multiples of 4).
//
// Entry points: `main` stores vec4 rows of Y (N a multiple of 4); `main_scalar` stores scalars
// (a vec4 store there would straddle two invocations' columns). Both bind Y at the same slot.
//
// Overrides fix what shapes the hot loop (tile sizes, vec4 loads). The transposes and the fused
// inputs are bits of the uniform `flags`: they only change how a tile is staged (once per KT K
// steps) or the epilogue, so one pipeline serves them all (pipeline compiles cost far more than a
// uniform branch, notably at model load and on software adapters).

override WG_X: u32 = 16u;        // invocations along N
override WG_Y: u32 = 16u;        // invocations along M
override KT: u32 = 16u;          // K tile depth; NT must be a multiple of KT
override RM: u32 = 4u;           // rows per invocation: 4 or 8
override CN: u32 = 4u;           // columns per invocation: 4 or 8
override VEC_A: bool = false;    // A's contiguous dim (K, or M when transposed) % 4 == 0
override VEC_B: bool = false;    // B's contiguous dim (N, or K when transposed) % 4 == 0

override TM: u32 = RM * WG_Y;
override TN: u32 = CN * WG_X;
override TM4: u32 = TM / 4u;     // vec4 columns of a K-row of As
override TN4: u32 = TN / 4u;
override KT4: u32 = KT / 4u;
override NT: u32 = WG_X * WG_Y;
override QA: u32 = TM * KT / 4u; // operand quads per tile
override QB: u32 = TN * KT / 4u;
override LA: u32 = QA / NT;      // quads each invocation stages per tile (1..4)
override LB: u32 = QB / NT;

// F_TRANS_A, F_TRANS_B, F_C, F_IN_SCALE, F_OUT_SCALE: the bits of Params.flags, from src/ops/matmul.ts.
// struct Params: generated from its declaration in src/ops/matmul.ts.
// B (binding 1) and its readers bQuad(i) (elements i..i+3, i % 4 == 0) and bElem(e) come from
// src/ops/matmul.ts per weight storage: f32, or f16 halves packed in u32 words (dequantised here).

@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> C: array<f32>;
@group(0) @binding(3) var<storage, read> inScale: array<f32>;
@group(0) @binding(4) var<storage, read> outScale: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> Y1: array<f32>;
@group(0) @binding(6) var<uniform> P: Params;

var<workgroup> As: array<vec4<f32>, QA>;
var<workgroup> Bs: array<vec4<f32>, QB>;

// Staging geometry of one operand for one invocation, fixed for the whole K loop. Slot l (0..LA-1)
// holds the quad at operand coordinates (k0 + k + l·kSlot, x + l·xSlot), x being m for A and n
// for B; it is read from element idx + l·slot + k0·kStride and stored from vec4 st + l·stSlot of
// the tile. A quad along K lands in component `comp` of four consecutive K rows of the tile.
struct Stager {
  alongK: bool,
  idx: u32, slot: u32, kStride: u32,
  k: u32, kSlot: u32,
  x: u32, xSlot: u32,
  st: u32, stSlot: u32, comp: u32,
}

var<private> sa: Stager;
var<private> sb: Stager;
// The next K tile's quads (slots 0..3), held in registers while the current tile is consumed.
var<private> ra0: vec4<f32>;
var<private> ra1: vec4<f32>;
var<private> ra2: vec4<f32>;
var<private> ra3: vec4<f32>;
var<private> rb0: vec4<f32>;
var<private> rb1: vec4<f32>;
var<private> rb2: vec4<f32>;
var<private> rb3: vec4<f32>;

fn has(f: u32) -> bool { return (P.flags & f) != 0u; }

// The stager of an operand whose tile is X4 quads wide (TM4 or TN4), starting at x0, at element
// offset `off`, rows `ld` elements apart; `alongK` when its quads run along K (A [M,K], B [N,K]).
fn stager(alongK: bool, off: u32, x0: u32, ld: u32, X4: u32, lid: u32) -> Stager {
  var s: Stager;
  s.alongK = alongK;
  if (alongK) {
    // KT4 invocations cover one row's K quads; the next slot is NT/KT4 rows (a multiple of 4) on.
    let r = lid / KT4;
    s.k = 4u * (lid % KT4);
    s.kSlot = 0u;
    s.x = x0 + r;
    s.xSlot = NT / KT4;
    s.kStride = 1u;
    s.idx = off + s.x * ld + s.k;
    s.slot = s.xSlot * ld;
    s.st = s.k * X4 + r / 4u;
    s.stSlot = s.xSlot / 4u;
    s.comp = r % 4u;
  } else {
    // X4 invocations cover one K row; the next slot is NT/X4 K rows on.
    s.k = lid / X4;
    s.kSlot = NT / X4;
    s.x = x0 + 4u * (lid % X4);
    s.xSlot = 0u;
    s.kStride = ld;
    s.idx = off + s.k * ld + s.x;
    s.slot = s.kSlot * ld;
    s.st = lid;
    s.stSlot = NT;
    s.comp = 0u;
  }
  return s;
}

// Slot l of A's tile at k0, scaled by inScale; zero outside the matrix.
fn loadA(l: u32, k0: u32) -> vec4<f32> {
  let k = k0 + sa.k + l * sa.kSlot;
  let m = sa.x + l * sa.xSlot;
  if (m >= P.M || k >= P.K) { return vec4<f32>(0.0); }
  let i = sa.idx + l * sa.slot + k0 * sa.kStride;
  var v = vec4<f32>(0.0);
  if (VEC_A) {
    v = A[i >> 2u];
  } else {
    let n = select(P.M - m, P.K - k, sa.alongK);
    for (var j = 0u; j < min(n, 4u); j++) { let e = i + j; v[j] = A[e >> 2u][e & 3u]; }
  }
  if (has(F_IN_SCALE)) {
    if (sa.alongK) {
      for (var j = 0u; j < 4u; j++) { if (k + j < P.K) { v[j] *= inScale[k + j]; } }
    } else {
      v *= inScale[k];
    }
  }
  return v;
}

fn loadB(l: u32, k0: u32) -> vec4<f32> {
  let k = k0 + sb.k + l * sb.kSlot;
  let n = sb.x + l * sb.xSlot;
  if (n >= P.N || k >= P.K) { return vec4<f32>(0.0); }
  let i = sb.idx + l * sb.slot + k0 * sb.kStride;
  if (VEC_B) { return bQuad(i); }
  let r = select(P.N - n, P.K - k, sb.alongK);
  var v = vec4<f32>(0.0);
  for (var j = 0u; j < min(r, 4u); j++) { let e = i + j; v[j] = bElem(e); }
  return v;
}

// Registers → workgroup memory, K-major: a quad along K is scattered over 4 K rows.
fn storeA(l: u32, v: vec4<f32>) {
  let at = sa.st + l * sa.stSlot;
  if (sa.alongK) {
    As[at][sa.comp] = v.x;
    As[at + TM4][sa.comp] = v.y;
    As[at + 2u * TM4][sa.comp] = v.z;
    As[at + 3u * TM4][sa.comp] = v.w;
  } else {
    As[at] = v;
  }
}

fn storeB(l: u32, v: vec4<f32>) {
  let at = sb.st + l * sb.stSlot;
  if (sb.alongK) {
    Bs[at][sb.comp] = v.x;
    Bs[at + TN4][sb.comp] = v.y;
    Bs[at + 2u * TN4][sb.comp] = v.z;
    Bs[at + 3u * TN4][sb.comp] = v.w;
  } else {
    Bs[at] = v;
  }
}

// Global → registers: this invocation's quads of the K tile at k0.
fn fetch(k0: u32) {
  ra0 = loadA(0u, k0);
  if (LA > 1u) { ra1 = loadA(1u, k0); }
  if (LA > 2u) { ra2 = loadA(2u, k0); }
  if (LA > 3u) { ra3 = loadA(3u, k0); }
  rb0 = loadB(0u, k0);
  if (LB > 1u) { rb1 = loadB(1u, k0); }
  if (LB > 2u) { rb2 = loadB(2u, k0); }
  if (LB > 3u) { rb3 = loadB(3u, k0); }
}

fn stage() {
  storeA(0u, ra0);
  if (LA > 1u) { storeA(1u, ra1); }
  if (LA > 2u) { storeA(2u, ra2); }
  if (LA > 3u) { storeA(3u, ra3); }
  storeB(0u, rb0);
  if (LB > 1u) { storeB(1u, rb1); }
  if (LB > 2u) { storeB(2u, rb2); }
  if (LB > 3u) { storeB(3u, rb3); }
}

// One invocation's block: c* hold columns 4·tx.., d* columns TN/2 + 4·tx.. (CN = 8); rows
// 4·ty + i in c0..c3/d0..d3 and TM/2 + 4·ty + i in c4..c7/d4..d7 (RM = 8).
struct Block {
  c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32>,
  c4: vec4<f32>, c5: vec4<f32>, c6: vec4<f32>, c7: vec4<f32>,
  d0: vec4<f32>, d1: vec4<f32>, d2: vec4<f32>, d3: vec4<f32>,
  d4: vec4<f32>, d5: vec4<f32>, d6: vec4<f32>, d7: vec4<f32>,
  yOff: u32,   // Y's batch offset
}

fn gemmTile(wid: vec3<u32>, lid3: vec3<u32>) -> Block {
  let bz = P.zBase + wid.z;
  var rem = bz;
  var aOff = P.aBase;
  var bOff = P.bBase;
  var yOff = P.yBase;
  for (var d = 0u; d < 4u; d++) {
    let c = rem % P.batchDims[d];
    rem = rem / P.batchDims[d];
    aOff += c * P.aStrides[d];
    bOff += c * P.bStrides[d];
    yOff += c * P.yStrides[d];
  }
  let tx = lid3.x;
  let ty = lid3.y;
  let lid = ty * WG_X + tx;
  sa = stager(!has(F_TRANS_A), aOff, (P.mBase + wid.y) * TM, P.lda, TM4, lid);
  sb = stager(has(F_TRANS_B), bOff, (P.nBase + wid.x) * TN, P.ldb, TN4, lid);

  var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
  var c4 = vec4<f32>(0.0); var c5 = vec4<f32>(0.0); var c6 = vec4<f32>(0.0); var c7 = vec4<f32>(0.0);
  var d0 = vec4<f32>(0.0); var d1 = vec4<f32>(0.0); var d2 = vec4<f32>(0.0); var d3 = vec4<f32>(0.0);
  var d4 = vec4<f32>(0.0); var d5 = vec4<f32>(0.0); var d6 = vec4<f32>(0.0); var d7 = vec4<f32>(0.0);

  let tiles = (P.K + KT - 1u) / KT;
  if (tiles > 0u) { fetch(0u); }
  for (var t = 0u; t < tiles; t++) {
    stage();
    workgroupBarrier();
    if (t + 1u < tiles) { fetch((t + 1u) * KT); }
    for (var kk = 0u; kk < KT; kk++) {
      let a = As[kk * TM4 + ty];
      let b = Bs[kk * TN4 + tx];
      c0 += a.x * b; c1 += a.y * b; c2 += a.z * b; c3 += a.w * b;
      var a2 = vec4<f32>(0.0);
      if (RM == 8u) {
        a2 = As[kk * TM4 + WG_Y + ty];
        c4 += a2.x * b; c5 += a2.y * b; c6 += a2.z * b; c7 += a2.w * b;
      }
      if (CN == 8u) {
        let b2 = Bs[kk * TN4 + WG_X + tx];
        d0 += a.x * b2; d1 += a.y * b2; d2 += a.z * b2; d3 += a.w * b2;
        if (RM == 8u) { d4 += a2.x * b2; d5 += a2.y * b2; d6 += a2.z * b2; d7 += a2.w * b2; }
      }
    }
    workgroupBarrier();
  }
  return Block(c0, c1, c2, c3, c4, c5, c6, c7, d0, d1, d2, d3, d4, d5, d6, d7, yOff);
}

// alpha·acc + beta·C, then ⊙ outScale, for row m and the 4 columns from n (those < N).
fn epilogue(acc: vec4<f32>, m: u32, n: u32) -> vec4<f32> {
  var v = P.alpha * acc;
  for (var j = 0u; j < 4u; j++) {
    if (n + j < P.N) {
      if (has(F_C)) { v[j] += P.beta * C[m * P.cStrideM + (n + j) * P.cStrideN]; }
      if (has(F_OUT_SCALE)) { v[j] *= outScale[n + j]; }
    }
  }
  return v;
}

// Store one 4×4 sub-block at rows m.., columns n.. (n < N): as vec4 rows into Y4, or as scalars
// into Y1. (An entry point may use only one of the two aliases of binding 5.)
fn put4(yOff: u32, m: u32, n: u32, r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>) {
  let rows = array<vec4<f32>, 4>(r0, r1, r2, r3);
  for (var i = 0u; i < min(4u, P.M - min(m, P.M)); i++) {
    Y4[(yOff + (m + i) * P.ldy + n) >> 2u] = epilogue(rows[i], m + i, n);
  }
}

fn put1(yOff: u32, m: u32, n: u32, r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>) {
  let rows = array<vec4<f32>, 4>(r0, r1, r2, r3);
  for (var i = 0u; i < min(4u, P.M - min(m, P.M)); i++) {
    let v = epilogue(rows[i], m + i, n);
    let at = yOff + (m + i) * P.ldy + n;
    for (var j = 0u; j < min(4u, P.N - n); j++) { Y1[at + j] = v[j]; }
  }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = gemmTile(wid, lid);
  let m = (P.mBase + wid.y) * TM + 4u * lid.y;
  let n = (P.nBase + wid.x) * TN + 4u * lid.x;
  if (n < P.N) {
    put4(r.yOff, m, n, r.c0, r.c1, r.c2, r.c3);
    if (RM == 8u) { put4(r.yOff, m + TM / 2u, n, r.c4, r.c5, r.c6, r.c7); }
  }
  if (CN == 8u && n + TN / 2u < P.N) {
    put4(r.yOff, m, n + TN / 2u, r.d0, r.d1, r.d2, r.d3);
    if (RM == 8u) { put4(r.yOff, m + TM / 2u, n + TN / 2u, r.d4, r.d5, r.d6, r.d7); }
  }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main_scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = gemmTile(wid, lid);
  let m = (P.mBase + wid.y) * TM + 4u * lid.y;
  let n = (P.nBase + wid.x) * TN + 4u * lid.x;
  if (n < P.N) {
    put1(r.yOff, m, n, r.c0, r.c1, r.c2, r.c3);
    if (RM == 8u) { put1(r.yOff, m + TM / 2u, n, r.c4, r.c5, r.c6, r.c7); }
  }
  if (CN == 8u && n + TN / 2u < P.N) {
    put1(r.yOff, m, n + TN / 2u, r.d0, r.d1, r.d2, r.d3);
    if (RM == 8u) { put1(r.yOff, m + TM / 2u, n + TN / 2u, r.d4, r.d5, r.d6, r.d7); }
  }
}
