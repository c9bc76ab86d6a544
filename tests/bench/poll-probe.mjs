// Why Node's benchmark figures trailed the browser's on SwiftShader, in one minimal reproduction:
// the same WGSL copy kernel, the same loop (5 dispatches per submission, median of 7 trials),
// timed three ways, round after round so that all of them see the same machine load:
//   node-spin   Node on Dawn, waiting with a plain `await queue.onSubmittedWorkDone()`: Dawn's
//               Node binding polls with a setImmediate loop that spins a core for the whole wait;
//   node-await  the same, waiting through the library's awaitGpu (src/runtime.ts), which sleeps
//               the event loop between the binding's polls;
//   browser     headless Chromium with the benchmark's flags (its GPU process waits on a fence).
// Each line gives GB/s and, for Node, the process's CPU time / wall time (SwiftShader's worker
// threads are threads of that process). On a busy machine with few cores node-spin trails the
// other two; with idle cores the three agree (the spinning core is then spare).
//
// Usage: node tests/bench/poll-probe.mjs [rounds=3]   (no network; Chromium from tests/util/chromium.ts)
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { resolve } from 'node:path';
import { chromium } from 'playwright';
import { runnerImport } from 'vite';

const root = resolve(import.meta.dirname, '../..');
const N = 4 * 1024 * 1024; // f32 elements copied per dispatch
const WG = 64;

/** The probe itself, as a string: it runs in a page and in Node alike. `wait` settles a GPU promise. */
const probe = `async (gpu, wait, cpu) => {
  const device = await (await gpu.requestAdapter()).requestDevice();
  const code = \`
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = g.x + g.y * nw.x * ${WG}u;
  if (i < ${N / 4}u) { dst[i] = src[i]; }
}\`;
  const pipe = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
  const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08;
  const src = device.createBuffer({ size: ${4 * N}, usage: STORAGE | COPY_DST });
  const dst = device.createBuffer({ size: ${4 * N}, usage: STORAGE | COPY_SRC });
  const bind = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: dst } }] });
  const groups = ${N / 4 / WG}, gx = Math.min(groups, 65535), gy = Math.ceil(groups / gx);
  const run = async (reps) => {
    const enc = device.createCommandEncoder();
    for (let i = 0; i < reps; i++) {
      const pass = enc.beginComputePass();
      pass.setPipeline(pipe); pass.setBindGroup(0, bind); pass.dispatchWorkgroups(gx, gy); pass.end();
    }
    const t0 = performance.now(), c0 = cpu();
    device.queue.submit([enc.finish()]);
    await wait(device.queue.onSubmittedWorkDone());
    const ms = performance.now() - t0;
    return { ms: ms / reps, load: (cpu() - c0) / ms };
  };
  await run(1);
  const trials = [];
  for (let t = 0; t < 7; t++) trials.push(await run(5));
  trials.sort((a, b) => a.ms - b.ms);
  device.destroy();
  return { gbs: ${8 * N} / trials[3].ms / 1e6, cpu: trials[3].load };
}`;

async function child(mode) {
  const { create } = await import('webgpu');
  const { module: runtime } = await runnerImport(resolve(root, 'src/runtime.ts'));
  const wait = mode === 'node-await' ? runtime.awaitGpu : (p) => p;
  const cpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const r = await (0, eval)(probe)(create([]), wait, cpu);
  console.log(JSON.stringify(r));
  process.exit(0);
}

async function browserRun(launch) {
  const server = createServer((_, res) => res.end('<!doctype html>')).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const browser = await chromium.launch({ ...launch, headless: true });
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    return await page.evaluate(`(${probe})(navigator.gpu, (p) => p, () => NaN)`);
  } finally {
    await browser.close();
    server.close();
  }
}

async function main(rounds) {
  const { module: dawn } = await runnerImport(resolve(root, 'tests/util/dawn-env.ts'));
  const { module: chromiumUtil } = await runnerImport(resolve(root, 'tests/util/chromium.ts'));
  const env = { ...process.env, ...dawn.dawnEnv(process.env) };
  const results = { 'node-spin': [], 'node-await': [], browser: [] };
  for (let r = 0; r < rounds; r++) {
    for (const mode of ['node-spin', 'node-await']) {
      const out = spawnSync(process.execPath, [import.meta.filename, '--child', mode], { env, cwd: root, encoding: 'utf8' });
      if (out.status !== 0) throw new Error(`${mode} failed (${out.status}): ${out.stderr}`);
      results[mode].push(JSON.parse(out.stdout.trim().split('\n').pop()));
    }
    results.browser.push(await browserRun(chromiumUtil.chromiumLaunchOptions()));
    const line = Object.entries(results).map(([k, v]) => `${k} ${v.at(-1).gbs.toFixed(2)} GB/s${Number.isNaN(v.at(-1).cpu) ? '' : ` (cpu ${v.at(-1).cpu.toFixed(2)})`}`);
    console.log(`round ${r + 1}: ${line.join(', ')}`);
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const base = median(results.browser.map((x) => x.gbs));
  for (const [k, v] of Object.entries(results)) {
    const m = median(v.map((x) => x.gbs));
    console.log(`${k.padEnd(10)} median ${m.toFixed(2)} GB/s, ${(m / base).toFixed(2)}× browser`);
  }
}

const args = process.argv.slice(2);
if (args[0] === '--child') await child(args[1]);
else await main(Number(args[0] ?? 3));
