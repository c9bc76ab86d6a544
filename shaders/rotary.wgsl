// Rotary position embedding, forward and backward: y = x·cos + R(x)·sin, dx = cos·dy + Rᵀ(sin·dy).
//
// R pairs element p with element q of each row of d values and maps (x_p, x_q) → (−x_q, x_p):
//   INTERLEAVED == 0 (Hugging Face rotate_half): p = k, q = k + d/2
//   INTERLEAVED == 1 (GPT-J rotate_every_two):   p = 2k, q = 2k + 1
// so per pair, forward   y_p = x_p·c_p − x_q·s_p      y_q = x_q·c_q + x_p·s_q
//              backward  dx_p = c_p·dy_p + s_q·dy_q   dx_q = c_q·dy_q − s_p·dy_p   (Rᵀ = −R).
// One invocation per `unit` of a row: a single pair (VEC == 0), or with VEC == 1 four pairs as
// two vec4s (rotate_half, d % 8 == 0: x[k..k+3] and x[k+d/2..]) or two pairs as one vec4
// (interleaved, d % 4 == 0: x[4u..4u+3]). The grid is rows·units invocations, folded into x/y.
// cos and sin are read through numpy-broadcast strides: a per-row base offset over the merged
// leading dims (dims, cstr / sstr, innermost last) plus a last-axis stride (clast / slast) of 1,
// or 0 when they hold one value per row. Row bases are multiples of d when the stride is 1, so
// vec4 loads stay aligned.
// Bindings: x (or dy), cos, sin, y (or dx), P. Float inputs are array<vec4<f32>> and must be padded
// to 16 bytes (pooled buffers are); y is array<f32>, since a store to one vector component may
// touch the whole vector.

override WG: u32 = 256u;
override VEC: u32 = 0u;         // 1: vec4 loads (see above)
override INTERLEAVED: u32 = 0u; // 0 rotate_half, 1 interleaved pairs
override GRAD: u32 = 0u;        // 1: apply the transpose (backward)

// struct Params: generated from its declaration in src/ops/rotary.ts.

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> cosb: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> sinb: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> P: Params;

fn ldx(i: u32) -> f32 { return x[i >> 2u][i & 3u]; }
fn ldc(i: u32) -> f32 { return cosb[i >> 2u][i & 3u]; }
fn lds(i: u32) -> f32 { return sinb[i >> 2u][i & 3u]; }

// Row-start offsets of cos and sin for row r.
fn bases(r: u32) -> vec2<u32> {
  var rem = r;
  var off = vec2<u32>(0u);
  for (var k = i32(P.rank) - 1; k >= 0; k--) {
    let d = P.dims[k / 4][k % 4];
    off += (rem % d) * vec2<u32>(P.cstr[k / 4][k % 4], P.sstr[k / 4][k % 4]);
    rem /= d;
  }
  return off;
}

// Four consecutive cos (or sin) values from column j (j % 4 == 0), or one value splatted.
fn c4(base: u32, j: u32) -> vec4<f32> {
  if (P.clast == 1u) { return cosb[(base + j) / 4u]; }
  return vec4<f32>(ldc(base));
}
fn s4(base: u32, j: u32) -> vec4<f32> {
  if (P.slast == 1u) { return sinb[(base + j) / 4u]; }
  return vec4<f32>(lds(base));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = workgroup_index(wid, nwg) * WG + lid;
  let row = t / P.units;
  if (row >= P.rows) { return; }
  let u = t % P.units;
  let base = row * P.d;
  let cs = bases(row);
  let half = P.d / 2u;

  if (VEC == 1u && INTERLEAVED == 1u) {
    // One vec4 = pairs (0,1) and (2,3) of columns 4u..4u+3.
    let j = 4u * u;
    let v = x[(base + j) / 4u];
    let c = c4(cs.x, j);
    let s = s4(cs.y, j);
    var o: vec4<f32>;
    if (GRAD == 0u) {
      o = v * c + vec4<f32>(-v.y, v.x, -v.w, v.z) * s;
    } else {
      let sv = s * v;
      o = c * v + vec4<f32>(sv.y, -sv.x, sv.w, -sv.z);
    }
    for (var k = 0u; k < 4u; k++) { y[base + j + k] = o[k]; }
  } else if (VEC == 1u) {
    // Columns p..p+3 pair with q..q+3, q = p + d/2 (both vec4-aligned since d % 8 == 0).
    let p = 4u * u;
    let q = p + half;
    let xp = x[(base + p) / 4u];
    let xq = x[(base + q) / 4u];
    let cp = c4(cs.x, p);
    let cq = c4(cs.x, q);
    let sp = s4(cs.y, p);
    let sq = s4(cs.y, q);
    var op: vec4<f32>;
    var oq: vec4<f32>;
    if (GRAD == 0u) {
      op = xp * cp - xq * sp;
      oq = xq * cq + xp * sq;
    } else {
      op = cp * xp + sq * xq;
      oq = cq * xq - sp * xp;
    }
    for (var k = 0u; k < 4u; k++) {
      y[base + p + k] = op[k];
      y[base + q + k] = oq[k];
    }
  } else {
    var p = u;
    var q = u + half;
    if (INTERLEAVED == 1u) { p = 2u * u; q = p + 1u; }
    let xp = ldx(base + p);
    let xq = ldx(base + q);
    let cp = ldc(cs.x + p * P.clast);
    let cq = ldc(cs.x + q * P.clast);
    let sp = lds(cs.y + p * P.slast);
    let sq = lds(cs.y + q * P.slast);
    if (GRAD == 0u) {
      y[base + p] = xp * cp - xq * sp;
      y[base + q] = xq * cq + xp * sq;
    } else {
      y[base + p] = cp * xp + sq * xq;
      y[base + q] = cq * xq - sp * xp;
    }
  }
}
