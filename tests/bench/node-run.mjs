// Runs a TypeScript entry of the benchmarks in Node on Dawn (the `webgpu` package): bundles it with
// Vite (the transforms the tests get: WGSL `?raw` imports, CommonJS packages such as onnx-proto)
// into node_modules/.cache/ia3-webgpu-node/, then runs the bundle in a child Node process whose
// environment carries the Vulkan variables of tests/util/dawn-env.ts (the Vulkan loader's path
// must be set before a process starts). Nothing is downloaded.
//
// `ownSession` starts the child in a session of its own (setsid), as Playwright starts Chromium, so
// that the benchmark's two runtimes are placed alike for Linux's autogroup scheduler (on by default
// on desktop and server kernels), which divides a busy CPU between sessions before threads.
// SwiftShader's workers, the "GPU", are threads of that child. Measured here, the runtimes spend
// about the same CPU per kernel; what differs under load is the share of the CPU they get (README,
// "Benchmark › In Node"). `npm run bench` passes it; the other users do not compare against the
// browser and keep the caller's session.
//
import { spawn } from 'node:child_process';
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build, runnerImport } from 'vite';

const root = resolve(import.meta.dirname, '../..');

/**
 * Bundles `entry` (a path from the repository root) and runs it with `args`; resolves to its exit
 * status. `ownSession`: run the child in a new session (see above; Linux and macOS only).
 */
export async function runInNode(entry, args = [], { ownSession = false } = {}) {
  const name = basename(entry).replace(/\.ts$/, '');
  const outDir = resolve(root, 'node_modules/.cache/ia3-webgpu-node', name);
  await build({
    configFile: false,
    root,
    logLevel: 'warn',
    build: {
      ssr: resolve(root, entry),
      outDir,
      emptyOutDir: true,
      target: 'node20',
      minify: false,
      sourcemap: true,
      // The native addon and onnxruntime-web (which finds its .wasm files beside itself) stay in
      // node_modules; everything else is bundled.
      rollupOptions: { external: [/^webgpu(\/|$)/, /^onnxruntime-web\//, /\/node_modules\/onnxruntime-web\//], output: { entryFileNames: `${name}.mjs` } },
    },
    ssr: { noExternal: true },
    resolve: {
      // `onnxruntime-web` resolves to its WASM-only Node build under Node's export conditions; the
      // benchmark's baseline must be the build the browser page gets (WASM and WebGPU/JSEP).
      alias: [{ find: /^onnxruntime-web$/, replacement: resolve(root, 'node_modules/onnxruntime-web/dist/ort.bundle.min.mjs') }],
    },
  });
  const { module: dawn } = await runnerImport(resolve(root, 'tests/util/dawn-env.ts'));
  const extra = dawn.dawnEnv(process.env);
  console.log(`[node-run] ${entry} on Dawn: ${dawn.describeDawnEnv(extra)}`);
  const detached = ownSession && process.platform !== 'win32';
  const child = spawn(process.execPath, ['--enable-source-maps', '--expose-gc', resolve(outDir, `${name}.mjs`), ...args], {
    cwd: root,
    env: { ...process.env, ...extra },
    stdio: 'inherit',
    detached,
  });
  // A child in its own session no longer gets the terminal's Ctrl-C, nor dies with this process:
  // pass the signals on, and end it if this process exits first.
  const forward = (signal) => child.kill(signal);
  const orphan = () => child.kill('SIGTERM');
  if (detached) {
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(s, forward);
    process.on('exit', orphan);
  }
  return new Promise((done, fail) => {
    child.on('error', fail);
    child.on('exit', (code, signal) => {
      for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.off(s, forward);
      process.off('exit', orphan);
      done(code ?? (signal ? 128 : 1));
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [entry, ...args] = process.argv.slice(2);
  if (!entry) {
    console.error('usage: node tests/bench/node-run.mjs <entry.ts> [args…]');
    process.exit(2);
  }
  process.exit(await runInNode(entry, args));
}
