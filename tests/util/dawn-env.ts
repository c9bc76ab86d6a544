// The environment Dawn (the `webgpu` npm package) needs to find a Vulkan adapter in Node, for the
// processes that the Node tests, `npm run bench -- --runtime node` and the PyTorch comparison start.
//
// Dawn loads the Vulkan loader (libvulkan.so.1) with dlopen, which reads LD_LIBRARY_PATH once, at
// process start: so this is computed by the parent and given to the child, never set in-process.
// Debian's chromium package ships a loader and SwiftShader's Vulkan driver in /usr/lib/chromium,
// so a machine with only Chromium installed needs nothing more:
//   - the loader dir is added only when the system has no libvulkan.so.1 of its own;
//   - SwiftShader is *added* to the drivers (VK_ADD_DRIVER_FILES), never substituted for them, so
//     on a machine with a GPU driver Dawn still prefers the real GPU (high-performance request).
// A user's own VK_ICD_FILENAMES / VK_DRIVER_FILES (a chosen driver) is left alone.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const CHROMIUM_LIB_DIR = '/usr/lib/chromium';
const SWIFTSHADER_ICD = `${CHROMIUM_LIB_DIR}/vk_swiftshader_icd.json`;

function systemHasVulkanLoader(): boolean {
  try {
    return /\blibvulkan\.so\.1\b/.test(execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    // No ldconfig on PATH (some containers): look where distributions install the loader.
    return ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib'].some((d) => existsSync(`${d}/libvulkan.so.1`));
  }
}

/** Variables to add to a child process's environment so Dawn finds a Vulkan adapter. */
export function dawnEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  if (process.platform !== 'linux') return out;
  if (existsSync(`${CHROMIUM_LIB_DIR}/libvulkan.so.1`) && !systemHasVulkanLoader()) {
    out.LD_LIBRARY_PATH = [CHROMIUM_LIB_DIR, env.LD_LIBRARY_PATH].filter(Boolean).join(':');
  }
  if (!env.VK_ICD_FILENAMES && !env.VK_DRIVER_FILES && existsSync(SWIFTSHADER_ICD)) {
    out.VK_ADD_DRIVER_FILES = [SWIFTSHADER_ICD, env.VK_ADD_DRIVER_FILES].filter(Boolean).join(':');
  }
  return out;
}

/** The same, as one line for logs: `LD_LIBRARY_PATH=… VK_ADD_DRIVER_FILES=…`. */
export function describeDawnEnv(env: Record<string, string>): string {
  return Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ') || '(system Vulkan, nothing added)';
}
