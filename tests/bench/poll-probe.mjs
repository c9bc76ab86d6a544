// Why Node's benchmark figures trailed the browser's on SwiftShader, in one minimal reproduction:
// the same WGSL copy kernel, the same loop (5 dispatches per submission, median of 7 trials),
// timed four ways, round after round so that all of them see the same machine load:
//   node-spin     Node on Dawn, waiting with a plain `await queue.onSubmittedWorkDone()`: Dawn's
//                 Node binding polls with a setImmediate loop that spins a core for the whole wait;
//   node-await    the same, waiting through the library's awaitGpu (src/runtime.ts), which sleeps
//                 the event loop between the binding's polls;
//   node-session  node-await in a session of its own (setsid), as Playwright starts Chromium and
//                 as `npm run bench -- --runtime node` starts its Node process (node-run.mjs);
//   browser       headless Chromium with the benchmark's flags (its GPU process waits on a fence).
// Each line gives GB/s, the CPU time / wall time of the process that runs SwiftShader (its worker
// threads are threads of the Node process, or of Chromium's GPU process) and its CPU milliseconds
// per copy. On a busy machine with few cores node-spin trails the others (the spinning core);
// node-await and node-session spend about the same CPU per copy as the browser, but under load
// they mostly got a smaller share of the CPU than Chromium's GPU process, in either session
// (README, "Benchmark › In Node"). With idle cores all agree.
//
// Usage: node tests/bench/poll-probe.mjs [rounds=3]   (Linux; no network; Chromium from tests/util/chromium.ts)
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
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
    const c0 = await cpu(), t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await wait(device.queue.onSubmittedWorkDone());
    const ms = performance.now() - t0;
    const c = (await cpu()) - c0;
    return { ms: ms / reps, load: c / ms, cpuMs: c / reps };
  };
  await run(1);
  const trials = [];
  for (let t = 0; t < 7; t++) trials.push(await run(5));
  trials.sort((a, b) => a.ms - b.ms);
  device.destroy();
  return { gbs: ${8 * N} / trials[3].ms / 1e6, cpu: trials[3].load, cpuMs: trials[3].cpuMs };
}`;

async function child(mode) {
  const { create } = await import('webgpu');
  const { module: runtime } = await runnerImport(resolve(root, 'src/runtime.ts'));
  const wait = mode === 'node-spin' ? (p) => p : runtime.awaitGpu;
  const cpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const r = await (0, eval)(probe)(create([]), wait, cpu);
  console.log(JSON.stringify(r));
  process.exit(0);
}

/** Milliseconds of CPU that the threads of process `pid` have used (Linux /proc, in nanoseconds). */
function processCpuMs(pid) {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread exited meanwhile
    }
  }
  return ns / 1e6;
}

/** Chromium's GPU process: a descendant of this process (browser, then zygote) with --type=gpu-process. */
function gpuProcess() {
  const parent = (pid) => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1];
  const tree = new Set([String(process.pid)]);
  const pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  // Each pass adds the children of what is in the tree; the chain is a few levels deep.
  for (let depth = 0; depth < 4; depth++) {
    for (const pid of pids) {
      try {
        if (tree.has(parent(pid))) tree.add(pid);
      } catch {
        // exited meanwhile
      }
    }
  }
  return [...tree].find((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=gpu-process');
    } catch {
      return false;
    }
  });
}

async function browserRun(launch) {
  const server = createServer((_, res) => res.end('<!doctype html>')).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const browser = await chromium.launch({ ...launch, headless: true });
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    const gpuPid = gpuProcess();
    await page.exposeFunction('gpuProcessCpuMs', () => (gpuPid ? processCpuMs(gpuPid) : NaN));
    return await page.evaluate(`(${probe})(navigator.gpu, (p) => p, () => window.gpuProcessCpuMs())`);
  } finally {
    await browser.close();
    server.close();
  }
}

async function main(rounds) {
  const { module: dawn } = await runnerImport(resolve(root, 'tests/util/dawn-env.ts'));
  const { module: chromiumUtil } = await runnerImport(resolve(root, 'tests/util/chromium.ts'));
  const env = { ...process.env, ...dawn.dawnEnv(process.env) };
  const results = { 'node-spin': [], 'node-await': [], 'node-session': [], browser: [] };
  for (let r = 0; r < rounds; r++) {
    for (const mode of ['node-spin', 'node-await', 'node-session']) {
      const detached = mode === 'node-session';
      const out = spawnSync(process.execPath, [import.meta.filename, '--child', mode], { env, cwd: root, encoding: 'utf8', detached });
      if (out.status !== 0) throw new Error(`${mode} failed (${out.status}): ${out.stderr}`);
      results[mode].push(JSON.parse(out.stdout.trim().split('\n').pop()));
    }
    results.browser.push(await browserRun(chromiumUtil.chromiumLaunchOptions()));
    const line = Object.entries(results).map(([k, v]) => `${k} ${v.at(-1).gbs.toFixed(2)} GB/s (cpu ${v.at(-1).cpu.toFixed(2)}, ${v.at(-1).cpuMs.toFixed(0)} ms/copy)`);
    console.log(`round ${r + 1} (load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}): ${line.join(', ')}`);
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const base = median(results.browser.map((x) => x.gbs));
  for (const [k, v] of Object.entries(results)) {
    const m = median(v.map((x) => x.gbs));
    const share = median(v.map((x) => x.cpu));
    const cpuMs = median(v.map((x) => x.cpuMs));
    console.log(`${k.padEnd(12)} median ${m.toFixed(2)} GB/s, ${(m / base).toFixed(2)}× browser; CPU ${cpuMs.toFixed(1)} ms per copy, ${share.toFixed(2)} cores`);
  }
}

const args = process.argv.slice(2);
if (args[0] === '--child') await child(args[1]);
else await main(Number(args[0] ?? 3));
