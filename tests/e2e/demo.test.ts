// End to end: build the demo page, serve the build, and drive it in headless Chromium (WebGPU).
// The page must load its shipped model, run it on WebGPU, agree with onnxruntime-web, and reach
// no host but its own. A screenshot is written to test-results/demo.png.
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { build, preview, type PreviewServer } from 'vite';
import { chromium, type Browser } from 'playwright';
import { chromiumLaunchOptions } from '../util/chromium.js';

const root = resolve(import.meta.dirname, '../..');
let server: PreviewServer;
let browser: Browser;
let origin: string;

beforeAll(async () => {
  await build({ configFile: resolve(root, 'vite.config.ts'), logLevel: 'warn' });
  server = await preview({ configFile: resolve(root, 'vite.config.ts'), preview: { port: 0, host: '127.0.0.1' }, logLevel: 'warn' });
  const address = server.httpServer.address();
  if (!address || typeof address === 'string') throw new Error('preview server has no port');
  origin = `http://127.0.0.1:${address.port}`;
  browser = await chromium.launch({ ...chromiumLaunchOptions(), headless: true });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  if (server) await new Promise<void>((done) => server.httpServer.close(() => done()));
});

it('loads the shipped model, runs it on WebGPU, matches onnxruntime-web, stays on its origin', async () => {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1300 } });
  const requests: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${origin}/`);
  await page.waitForSelector('#status.ok', { timeout: 120_000 });
  const adapter = await page.locator('#adapter').textContent();
  console.log(`[demo] adapter: ${adapter}`);
  expect(adapter).not.toMatch(/Error/);
  expect(await page.locator('#summary').textContent()).toMatch(/transformer\.h\.0\.attn\.c_attn/);
  await page.click('#run');
  const diffCell = page.locator('#results tbody tr').first().locator('td').nth(4);
  await expect.poll(async () => (await diffCell.textContent()) ?? '', { timeout: 120_000 }).toMatch(/e[-+]\d+/);
  const maxDiff = Number(await diffCell.textContent());
  expect(maxDiff).toBeLessThan(1e-3);
  mkdirSync(resolve(root, 'test-results'), { recursive: true });
  await page.screenshot({ path: resolve(root, 'test-results/demo.png'), fullPage: true });
  expect(errors).toEqual([]);
  expect(requests.filter((u) => !u.startsWith(origin) && !u.startsWith('data:'))).toEqual([]);
  await page.close();
}, 300_000);
