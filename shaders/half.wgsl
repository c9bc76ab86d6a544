// Saved activations kept in half precision (src/ops/half.ts): PackHalf rounds an f32 tensor to
// IEEE half (`f16`) or bfloat16 (`bf16`), two per u32 word with element 2j in the low half;
// UnpackHalf widens them back to f32. Both are grid-stride loops over quads (four elements in two
// words), as the copy kernel is.
//
// The rounding is written with integer operations rather than WGSL's pack2x16float, whose rounding
// direction (and result for values beyond the half range) the spec leaves to the implementation:
// here every adapter rounds to nearest even exactly as the float64 reference does, finite values
// beyond ±65504 become ±∞ in f16 (bfloat16 has f32's range), NaN stays NaN, and subnormal halves
// are produced and read exactly. A half that became ∞ makes the gradient non-finite, which the
// Trainer reports (NonFiniteError) before any update.

override WG: u32 = 256u;

// struct Params: generated from its declaration in src/ops/half.ts.

// One interface for both entries, as 32-bit words in pairs: PackHalf reads two pairs (four f32
// bit patterns) per quad and writes one; UnpackHalf reads one and writes two.
@group(0) @binding(0) var<storage, read> src: array<vec2<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec2<u32>>;
@group(0) @binding(2) var<uniform> P: Params;

// f32 → IEEE half bits, round to nearest even.
fn f16_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  let sign = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) { return sign | 0x7e00u; } // NaN
  if (a >= 0x477ff000u) { return sign | 0x7c00u; } // ≥ 65520 rounds to ∞ (and ∞ itself)
  if (a >= 0x38800000u) { // a normal half: rebias the exponent by 127 − 15, round off 13 bits
    let m = a - 0x38000000u;
    return sign | ((m + 0xfffu + ((m >> 13u) & 1u)) >> 13u);
  }
  if (a < 0x33000000u) { return sign; } // below 2^-25: rounds to zero
  // A subnormal half: the value is mant · 2^(e − 150), i.e. mant >> (126 − e) units of 2^-24.
  let e = a >> 23u;
  let mant = (a & 0x7fffffu) | 0x800000u;
  let shift = 126u - e;
  let q = mant >> shift;
  let rest = mant & ((1u << shift) - 1u);
  let half = 1u << (shift - 1u);
  return sign | (q + select(0u, 1u, rest > half || (rest == half && (q & 1u) == 1u)));
}

fn f16_value(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let frac = h & 0x3ffu;
  if (e == 0u) { // zero or subnormal: frac · 2^-24, exact in f32
    let m = f32(frac) * 5.9604644775390625e-8;
    return select(m, -m, sign != 0u);
  }
  if (e == 0x1fu) { return bitcast<f32>(sign | 0x7f800000u | (frac << 13u)); }
  return bitcast<f32>(sign | ((e + 112u) << 23u) | (frac << 13u));
}

// f32 → bfloat16 bits, round to nearest even (f32's range: only values past FLT_MAX's neighbour become ∞).
fn bf16_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return ((b >> 16u) & 0x8000u) | 0x7fc0u; } // NaN
  return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

fn bf16_value(h: u32) -> f32 {
  return bitcast<f32>(h << 16u);
}

fn pack_quad(q: vec4<f32>, bf16: bool) -> vec2<u32> {
  if (bf16) {
    return vec2<u32>(bf16_bits(q.x) | (bf16_bits(q.y) << 16u), bf16_bits(q.z) | (bf16_bits(q.w) << 16u));
  }
  return vec2<u32>(f16_bits(q.x) | (f16_bits(q.y) << 16u), f16_bits(q.z) | (f16_bits(q.w) << 16u));
}

fn unpack_quad(w: vec2<u32>, bf16: bool) -> vec4<f32> {
  if (bf16) {
    return vec4<f32>(bf16_value(w.x & 0xffffu), bf16_value(w.x >> 16u), bf16_value(w.y & 0xffffu), bf16_value(w.y >> 16u));
  }
  return vec4<f32>(f16_value(w.x & 0xffffu), f16_value(w.x >> 16u), f16_value(w.y & 0xffffu), f16_value(w.y >> 16u));
}

@compute @workgroup_size(WG)
fn pack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * nwg.y * WG;
  let quads = P.quads;
  let bf16 = P.bf16 != 0u;
  for (var i = gid.y * nwg.x * WG + gid.x; i < quads; i += stride) {
    let q = vec4<f32>(bitcast<vec2<f32>>(src[2u * i]), bitcast<vec2<f32>>(src[2u * i + 1u]));
    dst[i] = pack_quad(q, bf16);
  }
}

@compute @workgroup_size(WG)
fn unpack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * nwg.y * WG;
  let quads = P.quads;
  let bf16 = P.bf16 != 0u;
  for (var i = gid.y * nwg.x * WG + gid.x; i < quads; i += stride) {
    let q = unpack_quad(src[i], bf16);
    dst[2u * i] = bitcast<vec2<u32>>(q.xy);
    dst[2u * i + 1u] = bitcast<vec2<u32>>(q.zw);
  }
}
