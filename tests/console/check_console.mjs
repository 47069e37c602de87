// Headless-browser check of the broker's web console, driven by a Rust test.
//
//   node check_console.mjs <console-url> <screenshot-path> [--expect-topic T] [--timeout-ms N]
//
// Protocol on stdout, one line each:
//   loaded                 the page is up and #status reads "live" (the test starts producing now)
//   {"producer_id":...}    one JSON line per producer row shown, once some row (of T, if given)
//                          shows duplicates_absorbed > 0
//   done                   screenshot saved; exit 0
// On timeout, or if the page reloaded or threw, it still saves the screenshot, prints the
// page's text to stderr and exits 1. Chromium comes from $CHROMIUM or /usr/bin/chromium.

import { chromium } from 'playwright-core';

function parseArgs(argv) {
  const opts = { url: null, shot: null, topic: null, timeoutMs: 60000 };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--expect-topic') opts.topic = argv[++i];
    else if (argv[i] === '--timeout-ms') opts.timeoutMs = Number(argv[++i]);
    else rest.push(argv[i]);
  }
  [opts.url, opts.shot] = rest;
  if (!opts.url || !opts.shot || rest.length > 2 || opts.topic === undefined || !(opts.timeoutMs > 0)) {
    console.error('usage: node check_console.mjs <console-url> <screenshot-path> [--expect-topic T] [--timeout-ms N]');
    process.exit(2);
  }
  return opts;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every producer row the console shows, as the data-* contract in console.html describes it.
function producerRows(page) {
  return page.$$eval('tr[data-producer-id]', (rows) => rows.map((tr) => {
    const cell = tr.querySelector('[data-field="duplicates_absorbed"]');
    // The cell shows the count with thousands separators; data-value holds the bare number.
    const raw = cell ? (cell.getAttribute('data-value') ?? cell.textContent.replace(/[^0-9-]/g, '')) : '';
    return {
      producer_id: Number(tr.getAttribute('data-producer-id')),
      topic: tr.getAttribute('data-topic'),
      partition: Number(tr.getAttribute('data-partition')),
      duplicates_absorbed: raw === '' ? null : Number(raw),
    };
  }));
}

async function run(opts, browser) {
  const deadline = Date.now() + opts.timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[console] ${m.text()}`); });

  const fail = async (why) => {
    console.error(`check_console: ${why}`);
    try { await page.screenshot({ path: opts.shot, fullPage: true }); } catch (e) { console.error(`screenshot failed: ${e}`); }
    try { console.error(await page.evaluate(() => document.body ? document.body.innerText : '')); } catch { /* page gone */ }
    return 1;
  };

  try {
    await page.goto(opts.url, { waitUntil: 'load', timeout: left() });
    await page.waitForFunction(() => document.getElementById('status')?.textContent.trim() === 'live', null, { timeout: left() });
  } catch (e) {
    return fail(`console did not go live: ${e.message.split('\n')[0]}`);
  }
  // Survives only as long as this document does: a reload would clear it.
  await page.evaluate(() => { window.__tallyNoReload = true; });
  console.log('loaded');

  let rows = [];
  for (;;) {
    rows = await producerRows(page);
    const hit = rows.some((r) => (opts.topic === null || r.topic === opts.topic) && r.duplicates_absorbed > 0);
    if (hit) break;
    if (Date.now() >= deadline) {
      return fail(`timed out after ${opts.timeoutMs} ms waiting for a producer row${opts.topic !== null ? ` of topic ${JSON.stringify(opts.topic)}` : ''} with duplicates absorbed > 0`);
    }
    await sleep(250);
  }
  for (const r of rows) console.log(JSON.stringify(r));

  await sleep(1500); // let the chart gain a few more points before the picture
  const noReload = await page.evaluate(() => window.__tallyNoReload === true);
  if (!noReload) return fail('the page reloaded: updates must arrive in place');
  if (pageErrors.length) return fail(`the page threw:\n${pageErrors.join('\n')}`);
  await page.screenshot({ path: opts.shot, fullPage: true });
  console.log('done');
  return 0;
}

const opts = parseArgs(process.argv.slice(2));
let code = 1;
let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  code = await run(opts, browser);
} catch (e) {
  console.error(`check_console: ${e && e.stack ? e.stack : e}`);
  code = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
}
process.exit(code);
