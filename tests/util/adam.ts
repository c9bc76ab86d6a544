// AdamW steps over PeftModel.lossAndGradients (β 0.9/0.999, ε 1e-8, no decay), applied on the CPU
// through stateDict/loadStateDict: training tests of models the Trainer does not drive (files with
// past inputs) or that check the gradients a step uses.
import type { TensorData } from '../../src/ir/tensor.js';
import type { PeftModel } from '../../src/peft/model.js';

/** One step per batch; returns the mean loss of the first two and of the last two steps. */
export async function adamSteps(peft: PeftModel, batches: readonly { inputs: Record<string, TensorData>; labels: TensorData }[], lr: number): Promise<[number, number]> {
  const m = new Map<string, Float64Array>();
  const v = new Map<string, Float64Array>();
  const losses: number[] = [];
  for (let t = 1; t <= batches.length; t++) {
    const { loss, gradients } = await peft.lossAndGradients(batches[t - 1]!);
    losses.push(loss);
    const state = peft.stateDict();
    const next: Record<string, TensorData> = {};
    for (const [key, g] of Object.entries(gradients)) {
      const gd = g.data as Float32Array;
      const mk = m.get(key) ?? new Float64Array(gd.length);
      const vk = v.get(key) ?? new Float64Array(gd.length);
      const p = Float32Array.from(state[key]!.data as Float32Array);
      for (let i = 0; i < gd.length; i++) {
        mk[i] = 0.9 * mk[i]! + 0.1 * gd[i]!;
        vk[i] = 0.999 * vk[i]! + 0.001 * gd[i]! ** 2;
        p[i] = p[i]! - (lr * (mk[i]! / (1 - 0.9 ** t))) / (Math.sqrt(vk[i]! / (1 - 0.999 ** t)) + 1e-8);
      }
      m.set(key, mk);
      v.set(key, vk);
      next[key] = { data: p, dims: state[key]!.dims };
    }
    peft.loadStateDict(next);
  }
  return [(losses[0]! + losses[1]!) / 2, (losses[losses.length - 1]! + losses[losses.length - 2]!) / 2];
}
