// Headless Chromium test of the web page of `zeroclip serve`: open it, upload a fixture image,
// type labels, pick a template, and read the bar chart back; then drop an image and upload a bad
// one. The bars must be the API's own answer, sorted, summing to 1.
//
// Usage: ZEROCLIP_URL=http://127.0.0.1:PORT node page.test.mjs IMAGE
// (scripts/ci_browser_test.sh starts the server and runs this.)

import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const base = process.env.ZEROCLIP_URL;
const imagePath = process.argv[2];
if (!base || !imagePath) {
  console.error("usage: ZEROCLIP_URL=http://127.0.0.1:PORT node page.test.mjs IMAGE");
  process.exit(2);
}
const imageBytes = fs.readFileSync(imagePath);

async function readBars(page) {
  return page.$$eval(".bar-row", (rows) =>
    rows.map((r) => ({
      label: r.dataset.label,
      score: Number(r.dataset.score),
      text: r.querySelector(".label").textContent,
      width: parseFloat(r.querySelector(".fill").style.width),
    })),
  );
}

function checkBars(bars, labels) {
  assert.deepEqual([...bars.map((b) => b.label)].sort(), [...labels].sort(), "one bar per label");
  for (let i = 1; i < bars.length; i++) {
    assert.ok(bars[i - 1].score >= bars[i].score, "bars sorted by score");
  }
  const sum = bars.reduce((s, b) => s + b.score, 0);
  assert.ok(Math.abs(sum - 1) < 1e-4, `probabilities sum to 1 (got ${sum})`);
  for (const b of bars) {
    assert.equal(b.text, b.label, "bar shows its label");
    assert.ok(Math.abs(b.width - 100 * b.score) < 0.01, "bar length is the probability");
  }
}

/** What the API says for the same request: the page must show exactly this. */
async function apiScores(labels, templates) {
  const form = new FormData();
  form.append("image", new Blob([imageBytes]), path.basename(imagePath));
  form.append("labels", labels.join("\n"));
  form.append("templates", templates);
  const response = await fetch(base + "/v1/classify", { method: "POST", body: form });
  assert.equal(response.status, 200);
  const body = await response.json();
  return body.results[0].predictions;
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "zeroclip-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let failed = false;
try {
  const page = context.pages()[0] || (await context.newPage());
  const offsite = [];
  page.on("request", (r) => {
    const url = r.url();
    // Previews are local object URLs; anything else must come from the server itself.
    if (!url.startsWith(base) && !url.startsWith("blob:") && !url.startsWith("data:")) offsite.push(url);
  });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(base + "/");
  assert.match(await page.title(), /zeroclip/);

  // 1. Choose a file: the page classifies at once with its default labels.
  await page.setInputFiles("#file", imagePath);
  await page.waitForFunction(() => document.querySelectorAll(".bar-row").length === 3);
  checkBars(await readBars(page), ["a diagram", "a dog", "a cat"]);

  // 2. Type labels (comma-separated), pick the 7-template ensemble, classify.
  const labels = ["a diagram", "a dog", "a cat", "a red bird"];
  await page.fill("#labels", labels.join(", "));
  await page.selectOption("#template", "preset:imagenet7");
  await page.click("#classify");
  await page.waitForFunction(() => document.querySelectorAll(".bar-row").length === 4);
  await page.waitForFunction(() => /7 templates/.test(document.querySelector("#latency").textContent));
  const bars = await readBars(page);
  checkBars(bars, labels);
  const latency = await page.textContent("#latency");
  assert.match(latency, /^latency \d+ ms \(server [\d.]+ ms, 7 templates\)$/);
  const api = await apiScores(labels, "imagenet7");
  assert.deepEqual(bars.map((b) => b.label), api.map((p) => p.label), "same order as the API");
  bars.forEach((b, i) => assert.ok(Math.abs(b.score - api[i].score) < 1e-6, "same scores as the API"));
  console.log("bars:", bars.map((b) => `${b.label} ${(100 * b.score).toFixed(1)}%`).join(", "));
  console.log(latency);

  // 3. Drop an image onto the drop zone, one label per line, custom template.
  await page.fill("#labels", "a photo\na drawing");
  await page.selectOption("#template", "custom");
  await page.fill("#custom-template", "this is {}.");
  const b64 = imageBytes.toString("base64");
  await page.evaluate(async (data) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const file = new File([bytes], "dropped.png", { type: "image/png" });
    const dt = new DataTransfer();
    dt.items.add(file);
    document.querySelector("#drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, b64);
  await page.waitForFunction(() => document.querySelectorAll(".bar-row").length === 2);
  checkBars(await readBars(page), ["a photo", "a drawing"]);

  // 4. A file that is not a decodable image: the page shows the server's error naming it.
  const bad = path.join(userDataDir, "broken.png");
  fs.writeFileSync(bad, "not really a png");
  await page.setInputFiles("#file", bad);
  await page.waitForFunction(() => document.querySelector("#status").className === "error");
  const status = await page.textContent("#status");
  assert.match(status, /broken\.png/);
  console.log("bad image:", status);

  assert.deepEqual(offsite, [], "the page loads nothing from outside the server");
  assert.deepEqual(pageErrors, [], "no script errors");
  console.log("browser test: ok");
} catch (e) {
  failed = true;
  console.error("browser test: FAILED\n", e);
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
