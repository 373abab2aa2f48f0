// The page GET / serves, in headless Chromium driven by playwright-core: upload a sample image,
// the caption appears, hovering a word draws its heatmap (canvas pixels change), the layer and head
// selectors and the keyboard work, and a screenshot is kept.
// Usage: node page.mjs BASE_URL API_KEY IMAGE EXPECTED_CAPTION SCREENSHOT_PNG CHROMIUM
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const [baseUrl, apiKey, image, expected, screenshot, executablePath] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu"] });
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => {
    // The browser logs the 401 this test provokes on purpose.
    if (m.type() === "error" && !/status of 401/.test(m.text())) problems.push("console: " + m.text());
  });
  await page.goto(baseUrl + "/");

  // Labelled and reachable by keyboard.
  const drop = page.getByRole("button", { name: /choose an image/i });
  assert.equal(await drop.getAttribute("tabindex"), "0");
  // Without the key: the error is shown and the key field appears; entering it captions.
  await page.setInputFiles("#file", image);
  await page.waitForSelector("#status.error", { timeout: 60_000 });
  assert.match(await page.textContent("#status"), /API key/);
  const key = page.getByLabel("API key");
  await key.waitFor({ state: "visible" });
  await key.fill(apiKey);
  await key.press("Tab");
  await page.waitForSelector("#caption[data-ready=true]", { timeout: 60_000 });
  const caption = await page.$eval("#caption", (el) => el.dataset.caption);
  assert.equal(caption, expected, "the page shows the CLI's caption");
  const words = page.locator("#caption button");
  const count = await words.count();
  assert.ok(count >= 2, "one button per token");

  // Canvas snapshots compared inside the page (fraction of pixels that differ).
  const snap = (name) => page.evaluate((n) => {
    const c = document.getElementById("view");
    (window.__snaps ||= {})[n] = c.getContext("2d").getImageData(0, 0, c.width, c.height).data.slice();
  }, name);
  const diff = (a, b) => page.evaluate(([x, y]) => {
    const p = window.__snaps[x], q = window.__snaps[y];
    if (p.length !== q.length) return 1;
    let n = 0;
    for (let i = 0; i < p.length; i += 4) if (p[i] !== q[i] || p[i + 1] !== q[i + 1] || p[i + 2] !== q[i + 2]) ++n;
    return n / (p.length / 4);
  }, [a, b]);

  await page.uncheck("#overlay-on");
  await snap("plain");
  await page.check("#overlay-on");
  await words.nth(0).hover();
  await snap("word0");
  assert.ok(await diff("plain", "word0") > 0.2, "hovering a word draws a heatmap over the image");
  // The last content word of the caption looks elsewhere than the first.
  await words.nth(count - 2).hover();
  await snap("wordN");
  assert.ok(await diff("word0", "wordN") > 0.01, "another word draws another map");
  assert.equal(await words.nth(count - 2).getAttribute("aria-pressed"), "true");

  await page.selectOption("#layer", "0");
  await page.selectOption("#head", "1");
  await snap("layer0head1");
  assert.ok(await diff("wordN", "layer0head1") > 0.01, "the layer and head selectors change the map");
  await page.selectOption("#layer", "rollout");
  await page.selectOption("#head", "mean");

  // Keyboard: focus a word, ArrowRight moves to the next one and shows its map.
  await words.nth(0).focus();
  await page.keyboard.press("ArrowRight");
  assert.equal(await words.nth(1).getAttribute("aria-pressed"), "true", "ArrowRight selects the next word");
  assert.match(await page.getAttribute("#view", "aria-label"), /Heatmap of where/);
  assert.match(await page.textContent("#timings"), /encoder .* ms/);

  await page.screenshot({ path: screenshot, fullPage: true });
  assert.deepEqual(problems, [], "no script errors");
  console.log(`page: ok (${count} words), screenshot ${screenshot}`);
} finally {
  await browser.close();
}
