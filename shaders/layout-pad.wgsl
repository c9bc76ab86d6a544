// Lattice gather: Pad (constant, reflect, edge, wrap), SliceGrad, and fills.
//
// Each output element maps, per dim d, its coordinate c to t = c - offsets[d] and then to a source
// coordinate in [0, in_dims[d]):
//   MODE 0 (constant): the source coordinate is t / steps[d] when t is a multiple of steps[d] and
//                      the quotient is in range, else the element is `value`. With steps of 1 this
//                      is constant Pad; with a Slice's start and step (either sign) it writes dy
//                      back onto the lattice the Slice read: SliceGrad in one pass, no scatter.
//   MODE 1 (reflect):  t folded into [0, n) with period 2(n-1), mirroring about the edge elements
//                      without repeating them (n = 1 repeats the single element, as numpy does).
//   MODE 2 (edge):     t clamped to [0, n-1].
//   MODE 3 (wrap):     t modulo n.
// (Steps are 1 in modes 1-3.) A fill is constant mode over a source of extent 0.
// The source offset is src_base + Σ_d coord_d·in_strides[d]; negative pads (cropping) are folded
// into src_base and in_dims by the host. `value` holds raw bits (f32 or i32), like the data words.
// Every output element is written exactly once, by its own invocation: deterministic, no atomics.

override WG: u32 = 256u;
override MODE: u32 = 0u;

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
  var rem = i;
  var s = i32(P.src_base);
  var inside = true;
  for (var k = i32(P.rank) - 1; k >= 0; k--) {
    let q = k / 4;
    let r = k % 4;
    let dim = P.out_dims[q][r];
    let c = i32(rem % dim);
    rem = rem / dim;
    let n = P.in_dims[q][r];
    let t = c - P.offsets[q][r];
    var x = 0;
    switch MODE {
      case 1u: {
        if (n > 1) {
          let period = 2 * (n - 1);
          x = ((t % period) + period) % period;
          if (x >= n) { x = period - x; }
        }
      }
      case 2u: {
        x = clamp(t, 0, n - 1);
      }
      case 3u: {
        x = ((t % n) + n) % n;
      }
      default: {
        let step = P.steps[q][r];
        x = t / step;
        if (t % step != 0 || x < 0 || x >= n) { inside = false; }
      }
    }
    s += x * P.in_strides[q][r];
  }
  var v = P.value;
  if (inside) { v = src[u32(s)]; }
  dst[i] = v;
}
