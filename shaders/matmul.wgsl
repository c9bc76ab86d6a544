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
// TN = 4·WG_X); each invocation owns an RM×4 block (RM = 4 or 8), rows RM·ty.., columns 4·tx..,
// held as RM vec4 accumulators. RM = 8 cuts the workgroup-memory reads per FMA by a quarter
// (3 vec4 per 32 FMAs instead of 2 per 16): that bandwidth is what bounds this loop on most GPUs. K advances in tiles of KT: both operand tiles are staged in workgroup memory
// K-major (As[k][m], Bs[k][n], as vec4 of four consecutive m or n), so the inner loop is one vec4
// read of each and four vec4 FMAs. The next tile's global loads are issued into registers before
// the current tile is consumed (software pipelining), hiding memory latency behind the FMAs.
//
// Global loads move 4 consecutive elements along an operand's contiguous dimension (K or M for A,
// N or K for B). With VEC_A / VEC_B (that dimension a multiple of 4, so every quad is aligned and
// entirely in or out of range) a quad is one vec4 load; otherwise four bounds-checked scalars.
// Out-of-range elements load as 0, so partial tiles (M, N, K not multiples of the tile) need no
// special casing in the inner loop. Operands are bound as array<vec4<f32>>: their buffers must be
// padded to 16 bytes (pool buffers always are).
//
// Batch: grid z (plus zBase, for batches over 65535) is a linear index over up to four batch dims
// (batchDims, innermost first) with per-operand element strides (0 for broadcast dims); dims past
// four are separate dispatches whose offsets arrive in aBase/bBase/yBase. mBase/nBase offset the
// tile grid the same way when a dimension has over 65535 tiles.
//
// Entry points: `main` stores vec4 rows of Y (N a multiple of 4); `main_scalar` stores scalars
// (a vec4 store there would straddle two invocations' columns). Both bind Y at the same slot.
//
// Overrides fix what shapes the hot loop (tile sizes, vec4 loads). The transposes and the fused
// inputs are bits of the uniform `flags`: they only change how a tile is loaded (once per KT
// steps of 16 FMAs per invocation) or the epilogue, so a uniform branch costs nothing measurable,
// and one pipeline serves them all (pipeline compiles cost far more than the branch, notably
// at model load and on software adapters).

override WG_X: u32 = 16u;        // invocations along N
override WG_Y: u32 = 16u;        // invocations along M
override KT: u32 = 16u;          // K tile depth, a multiple of 4
override RM: u32 = 4u;           // rows per invocation: 4 or 8
override VEC_A: bool = false;    // A's contiguous dim (K, or M when transposed) % 4 == 0
override VEC_B: bool = false;    // B's contiguous dim (N, or K when transposed) % 4 == 0

override TM: u32 = RM * WG_Y;
override TN: u32 = 4u * WG_X;
override TM4: u32 = TM / 4u;     // vec4 columns of a K-row of As
override RG: u32 = RM / 4u;      // vec4 row groups per invocation
override TN4: u32 = WG_X;
override KT4: u32 = KT / 4u;
override NT: u32 = WG_X * WG_Y;
override QA: u32 = TM * KT / 4u; // operand quads per tile
override QB: u32 = TN * KT / 4u;

// Registers for one tile's quads per invocation; the host keeps QA/NT and QB/NT ≤ 4.
const MAXL: u32 = 4u;

// Bits of Params.flags.
const F_TRANS_A: u32 = 1u;
const F_TRANS_B: u32 = 2u;
const F_C: u32 = 4u;
const F_IN_SCALE: u32 = 8u;
const F_OUT_SCALE: u32 = 16u;

struct Params {
  M: u32, N: u32, K: u32, zBase: u32,
  mBase: u32, nBase: u32, aBase: u32, bBase: u32,
  yBase: u32, cStrideM: u32, cStrideN: u32, alpha: f32,
  beta: f32, flags: u32,
  batchDims: vec4<u32>,
  aStrides: vec4<u32>,
  bStrides: vec4<u32>,
}

@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> C: array<f32>;
@group(0) @binding(3) var<storage, read> inScale: array<f32>;
@group(0) @binding(4) var<storage, read> outScale: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> Y1: array<f32>;
@group(0) @binding(6) var<uniform> P: Params;

var<workgroup> As: array<vec4<f32>, QA>;
var<workgroup> Bs: array<vec4<f32>, QB>;

var<private> acc: array<vec4<f32>, 8>;
var<private> ra: array<vec4<f32>, MAXL>;
var<private> rb: array<vec4<f32>, MAXL>;

fn has(f: u32) -> bool { return (P.flags & f) != 0u; }

// `n` elements of A from linear index `i` onwards (n ≥ 4 means the whole quad).
fn quadA(i: u32, n: u32) -> vec4<f32> {
  if (VEC_A) {
    if (n >= 4u) { return A[i >> 2u]; }
    return vec4<f32>(0.0);
  }
  var v = vec4<f32>(0.0);
  for (var j = 0u; j < min(n, 4u); j++) { let e = i + j; v[j] = A[e >> 2u][e & 3u]; }
  return v;
}

fn quadB(i: u32, n: u32) -> vec4<f32> {
  if (VEC_B) {
    if (n >= 4u) { return B[i >> 2u]; }
    return vec4<f32>(0.0);
  }
  var v = vec4<f32>(0.0);
  for (var j = 0u; j < min(n, 4u); j++) { let e = i + j; v[j] = B[e >> 2u][e & 3u]; }
  return v;
}

// Global → registers: the quads of the K tile at k0 that this invocation stages.
fn loadTiles(lid: u32, m0: u32, n0: u32, k0: u32, aOff: u32, bOff: u32) {
  for (var l = 0u; l < MAXL; l++) {
    let q = lid + l * NT;
    if (q >= QA) { break; }
    var v = vec4<f32>(0.0);
    if (has(F_TRANS_A)) {
      // A is [K,M]: the quad is 4 rows m.. at one k.
      let k = k0 + q / TM4;
      let m = m0 + 4u * (q % TM4);
      if (k < P.K && m < P.M) {
        v = quadA(aOff + k * P.M + m, P.M - m);
        if (has(F_IN_SCALE)) { v *= inScale[k]; }
      }
    } else {
      // A is [M,K]: the quad is 4 k.. of one row m.
      let m = m0 + q / KT4;
      let k = k0 + 4u * (q % KT4);
      if (m < P.M && k < P.K) {
        v = quadA(aOff + m * P.K + k, P.K - k);
        if (has(F_IN_SCALE)) {
          for (var j = 0u; j < 4u; j++) { if (k + j < P.K) { v[j] *= inScale[k + j]; } }
        }
      }
    }
    ra[l] = v;
  }
  for (var l = 0u; l < MAXL; l++) {
    let q = lid + l * NT;
    if (q >= QB) { break; }
    var v = vec4<f32>(0.0);
    if (has(F_TRANS_B)) {
      // B is [N,K]: the quad is 4 k.. of one column n.
      let n = n0 + q / KT4;
      let k = k0 + 4u * (q % KT4);
      if (n < P.N && k < P.K) { v = quadB(bOff + n * P.K + k, P.K - k); }
    } else {
      // B is [K,N]: the quad is 4 columns n.. at one k.
      let k = k0 + q / TN4;
      let n = n0 + 4u * (q % TN4);
      if (k < P.K && n < P.N) { v = quadB(bOff + k * P.N + n, P.N - n); }
    }
    rb[l] = v;
  }
}

// Registers → workgroup memory, K-major. Quads that run along K are scattered over 4 K-rows.
fn storeTiles(lid: u32) {
  for (var l = 0u; l < MAXL; l++) {
    let q = lid + l * NT;
    if (q >= QA) { break; }
    if (has(F_TRANS_A)) {
      As[q] = ra[l];
    } else {
      let r = q / KT4;
      let kk = 4u * (q % KT4);
      for (var j = 0u; j < 4u; j++) { As[(kk + j) * TM4 + (r >> 2u)][r & 3u] = ra[l][j]; }
    }
  }
  for (var l = 0u; l < MAXL; l++) {
    let q = lid + l * NT;
    if (q >= QB) { break; }
    if (has(F_TRANS_B)) {
      let c = q / KT4;
      let kk = 4u * (q % KT4);
      for (var j = 0u; j < 4u; j++) { Bs[(kk + j) * TN4 + (c >> 2u)][c & 3u] = rb[l][j]; }
    } else {
      Bs[q] = rb[l];
    }
  }
}

// Accumulates this invocation's 4×4 block of the workgroup's tile; returns Y's batch offset.
fn gemmTile(wid: vec3<u32>, lid3: vec3<u32>) -> u32 {
  let bz = P.zBase + wid.z;
  var rem = bz;
  var aOff = P.aBase;
  var bOff = P.bBase;
  for (var d = 0u; d < 4u; d++) {
    let c = rem % P.batchDims[d];
    rem = rem / P.batchDims[d];
    aOff += c * P.aStrides[d];
    bOff += c * P.bStrides[d];
  }
  let m0 = (P.mBase + wid.y) * TM;
  let n0 = (P.nBase + wid.x) * TN;
  let lid = lid3.y * WG_X + lid3.x;
  for (var i = 0u; i < RM; i++) { acc[i] = vec4<f32>(0.0); }

  let tiles = (P.K + KT - 1u) / KT;
  if (tiles > 0u) { loadTiles(lid, m0, n0, 0u, aOff, bOff); }
  for (var t = 0u; t < tiles; t++) {
    storeTiles(lid);
    workgroupBarrier();
    if (t + 1u < tiles) { loadTiles(lid, m0, n0, (t + 1u) * KT, aOff, bOff); }
    for (var kk = 0u; kk < KT; kk++) {
      let b = Bs[kk * TN4 + lid3.x];
      for (var g = 0u; g < RG; g++) {
        let a = As[kk * TM4 + lid3.y * RG + g];
        acc[4u * g] += a.x * b;
        acc[4u * g + 1u] += a.y * b;
        acc[4u * g + 2u] += a.z * b;
        acc[4u * g + 3u] += a.w * b;
      }
    }
    workgroupBarrier();
  }
  return P.yBase + bz * P.M * P.N;
}

// alpha·acc + beta·C, then ⊙ outScale, for row m and the 4 columns from n (those < N).
fn epilogue(i: u32, m: u32, n: u32) -> vec4<f32> {
  var v = P.alpha * acc[i];
  for (var j = 0u; j < 4u; j++) {
    if (n + j < P.N) {
      if (has(F_C)) { v[j] += P.beta * C[m * P.cStrideM + (n + j) * P.cStrideN]; }
      if (has(F_OUT_SCALE)) { v[j] *= outScale[n + j]; }
    }
  }
  return v;
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let yOff = gemmTile(wid, lid);
  let n = (P.nBase + wid.x) * TN + 4u * lid.x;
  if (n >= P.N) { return; }
  for (var i = 0u; i < RM; i++) {
    let m = (P.mBase + wid.y) * TM + RM * lid.y + i;
    if (m < P.M) { Y4[(yOff + m * P.N + n) >> 2u] = epilogue(i, m, n); }
  }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main_scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let yOff = gemmTile(wid, lid);
  let n = (P.nBase + wid.x) * TN + 4u * lid.x;
  if (n >= P.N) { return; }
  for (var i = 0u; i < RM; i++) {
    let m = (P.mBase + wid.y) * TM + RM * lid.y + i;
    if (m < P.M) {
      let v = epilogue(i, m, n);
      for (var j = 0u; j < min(4u, P.N - n); j++) { Y1[yOff + m * P.N + n + j] = v[j]; }
    }
  }
}
