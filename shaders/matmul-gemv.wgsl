// Small-M matrix multiply (M ≤ 8 rows: token-by-token decoding, tiny batches), same contract as
// matmul.wgsl:  Y[z] = (alpha · (opA(A[z]) ⊙ inScale) · opB(B[z]) + beta · C) ⊙ outScale.
//
// With so few rows the work is a stream over B (K×N values, each used M times), so the kernel is
// organised around reading B once, coalesced, with K split across the invocations of a workgroup
// and reduced in workgroup memory in a fixed order (deterministic, no atomics):
//   - B is [K,N] (TRANS_B false): invocation (cq, s) owns 4 adjacent columns (one vec4 of a B row)
//     and the K rows s, s+KS, ...; a workgroup covers CQ·4 = 32 columns.
//   - B is [N,K] (TRANS_B true): invocation (s, c) owns column c and the K quads s, s+KS, ... of
//     its B row (vec4 loads along K); a workgroup covers WG/KS = 8 columns.
// The rows of opA(A) ⊙ inScale for a K chunk of KC are staged in workgroup memory first (shared by
// every column), laid out per mode so the inner loop reads one vec4 per row group:
//   TRANS_B false: As[2k + g] = rows 4g..4g+3 at k;  TRANS_B true: As[r·KC/4 + k/4] = k-quad of row r.
// ROW_GROUPS (1 or 2) is the number of 4-row groups: M ≤ 4 skips half the FMAs.
// Batch and tile offsets, and the row strides of strided views (lda, ldb, ldy), follow
// matmul.wgsl's Params; the output is stored as scalars (a tiny part of the traffic here).
// TRANS_B, VEC_B and ROW_GROUPS shape the hot loop and are overrides; A's transpose and the fused
// inputs only touch the staging and the epilogue, and are bits of Params.flags as in matmul.wgsl
// (its F_TRANS_B bit is ignored here).

override TRANS_B: bool = false;
override VEC_B: bool = false;
override ROW_GROUPS: u32 = 2u;

const WG: u32 = 256u;
const KC: u32 = 256u;        // K chunk staged per round
const KC4: u32 = KC / 4u;
const CQ: u32 = 8u;          // column quads per workgroup (TRANS_B false)
const KS_N: u32 = WG / CQ;   // K split (TRANS_B false)
const KS_T: u32 = 32u;       // K split (TRANS_B true)
const COLS_T: u32 = WG / KS_T;

// F_TRANS_A, F_TRANS_B, F_C, F_IN_SCALE, F_OUT_SCALE: the bits of Params.flags, from src/ops/matmul.ts.
// struct Params: generated from its declaration in src/ops/matmul.ts.
// B (binding 1) and its readers bQuad(i) (elements i..i+3, i % 4 == 0) and bElem(e) come from
// src/ops/matmul.ts per weight storage: f32, or f16 halves packed in u32 words (dequantised here).

@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> C: array<f32>;
@group(0) @binding(3) var<storage, read> inScale: array<f32>;
@group(0) @binding(4) var<storage, read> outScale: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;
@group(0) @binding(6) var<uniform> P: Params;

var<workgroup> As: array<vec4<f32>, 2u * KC>;
var<workgroup> red: array<vec4<f32>, WG>;

fn has(f: u32) -> bool { return (P.flags & f) != 0u; }

fn elemA(i: u32) -> f32 { return A[i >> 2u][i & 3u]; }

// 4 elements of B from linear index i (n of them in range).
fn quadB(i: u32, n: u32) -> vec4<f32> {
  if (VEC_B) {
    if (n >= 4u) { return bQuad(i); }
    return vec4<f32>(0.0);
  }
  var v = vec4<f32>(0.0);
  for (var j = 0u; j < min(n, 4u); j++) { let e = i + j; v[j] = bElem(e); }
  return v;
}

// Stages (opA(A) ⊙ inScale)[0..4·ROW_GROUPS, k0..k0+KC] in As, zero outside M and K.
fn stageA(lid: u32, k0: u32, aOff: u32) {
  for (var e = lid; e < 4u * ROW_GROUPS * KC; e += WG) {
    let r = e / KC;
    let kk = e % KC;
    let k = k0 + kk;
    var v = 0.0;
    if (r < P.M && k < P.K) {
      if (has(F_TRANS_A)) { v = elemA(aOff + k * P.lda + r); } else { v = elemA(aOff + r * P.lda + k); }
      if (has(F_IN_SCALE)) { v *= inScale[k]; }
    }
    if (TRANS_B) { As[r * KC4 + (kk >> 2u)][kk & 3u] = v; } else { As[2u * kk + (r >> 2u)][r & 3u] = v; }
  }
}

fn finish(m: u32, n: u32, s: f32, yOff: u32) {
  if (m < P.M && n < P.N) {
    var v = P.alpha * s;
    if (has(F_C)) { v += P.beta * C[m * P.cStrideM + n * P.cStrideN]; }
    if (has(F_OUT_SCALE)) { v *= outScale[n]; }
    Y[yOff + m * P.ldy + n] = v;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
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
  var acc: array<vec4<f32>, 8>;
  for (var r = 0u; r < 8u; r++) { acc[r] = vec4<f32>(0.0); }

  if (!TRANS_B) {
    let cq = lid % CQ;
    let s = lid / CQ;
    let n = ((P.nBase + wid.x) * CQ + cq) * 4u;
    for (var k0 = 0u; k0 < P.K; k0 += KC) {
      stageA(lid, k0, aOff);
      workgroupBarrier();
      if (n < P.N) {
        for (var kk = s; kk < KC; kk += KS_N) {
          let k = k0 + kk;
          if (k >= P.K) { break; }
          let b = quadB(bOff + k * P.ldb + n, P.N - n);
          let a0 = As[2u * kk];
          acc[0] += a0.x * b; acc[1] += a0.y * b; acc[2] += a0.z * b; acc[3] += a0.w * b;
          if (ROW_GROUPS > 1u) {
            let a1 = As[2u * kk + 1u];
            acc[4] += a1.x * b; acc[5] += a1.y * b; acc[6] += a1.z * b; acc[7] += a1.w * b;
          }
        }
      }
      workgroupBarrier();
    }
    // Reduce the KS_N partial sums of each row in a fixed order.
    for (var r = 0u; r < 4u * ROW_GROUPS; r++) {
      red[lid] = acc[r];
      workgroupBarrier();
      if (s == 0u) {
        var t = vec4<f32>(0.0);
        for (var j = 0u; j < KS_N; j++) { t += red[cq + j * CQ]; }
        for (var j = 0u; j < 4u; j++) { finish(r, n + j, t[j], yOff); }
      }
      workgroupBarrier();
    }
  } else {
    let s = lid % KS_T;
    let c = lid / KS_T;
    let n = (P.nBase + wid.x) * COLS_T + c;
    for (var k0 = 0u; k0 < P.K; k0 += KC) {
      stageA(lid, k0, aOff);
      workgroupBarrier();
      if (n < P.N) {
        for (var q = s; q < KC4; q += KS_T) {
          let k = k0 + 4u * q;
          if (k >= P.K) { break; }
          let b = quadB(bOff + n * P.ldb + k, P.K - k);
          for (var r = 0u; r < 4u * ROW_GROUPS; r++) { acc[r] += As[r * KC4 + q] * b; }
        }
      }
      workgroupBarrier();
    }
    for (var g = 0u; g < ROW_GROUPS; g++) {
      let r = 4u * g;
      red[lid] = vec4<f32>(
        dot(acc[r], vec4<f32>(1.0)), dot(acc[r + 1u], vec4<f32>(1.0)),
        dot(acc[r + 2u], vec4<f32>(1.0)), dot(acc[r + 3u], vec4<f32>(1.0)));
      workgroupBarrier();
      if (s == 0u) {
        var t = vec4<f32>(0.0);
        for (var j = 0u; j < KS_T; j++) { t += red[c * KS_T + j]; }
        for (var j = 0u; j < 4u; j++) { finish(r + j, n, t[j], yOff); }
      }
      workgroupBarrier();
    }
  }
}
