// A loadtest HTML report in headless Chromium (Debian `chromium`), driven by playwright-core.
//
//   node report_browser.mjs --loadtest PATH/TO/loadtest --ws PORT [--chromium PATH] [--shots DIR]
//
// Runs a short paced fanout against the broker on 127.0.0.1:PORT with --report, opens the page
// from file:// and checks what a reader sees: the page asks for nothing but itself (no external
// assets), the parameters and results tables hold this run's figures, and both charts (latency
// percentile curve, throughput over time) are drawn: each SVG has a polyline with points that
// lays out with a non-zero size. Saves a screenshot to DIR and prints its path.
// Exit 0 on success, 1 with an "assertion failed: ..." line otherwise. Every wait is bounded.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { Fail, WAIT, arg, check, launchChromium } from './common.mjs';

const LOADTEST = arg('--loadtest');
const WS = arg('--ws');
const CHROMIUM = arg('--chromium', '/usr/bin/chromium');
const SHOTS = arg('--shots') || mkdtempSync(join(tmpdir(), 'stompbox-report-'));
if (!LOADTEST || !WS) {
  console.error('usage: node report_browser.mjs --loadtest PATH --ws PORT [--chromium PATH] [--shots DIR]');
  process.exit(2);
}

async function main() {
  const report = join(SHOTS, 'loadtest-report.html');
  const run = spawnSync(
    LOADTEST,
    ['fanout', '--url', `ws://127.0.0.1:${WS}/ws`, '-s', '20', '--rate', '5000', '--duration', '3',
      '--warmup', '0.5', '--prefix', 'report-browser', '--quiet', '--report', report],
    { encoding: 'utf8', timeout: 30_000 },
  );
  check(run.status === 0, `loadtest exited ${run.status}: ${run.stderr}`);
  const delivered = /delivered\s+([\d,]+) msg\/s/.exec(run.stdout);
  check(delivered, `no delivered rate in loadtest's table:\n${run.stdout}`);

  const browser = await launchChromium(chromium, CHROMIUM, WAIT);
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
    const url = pathToFileURL(report).href;
    const foreign = [];
    page.on('request', (r) => {
      if (r.url() !== url) foreign.push(r.url());
    });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(url, { waitUntil: 'load', timeout: WAIT });
    check(foreign.length === 0, `the page loaded other resources: ${foreign.join(', ')}`);
    check(errors.length === 0, `page errors: ${errors.join('; ')}`);

    const text = await page.innerText('body', { timeout: WAIT });
    for (const want of ['Parameters', 'Results', 'Latency', 'Throughput', 'subscribers', 'delivered']) {
      check(text.includes(want), `the page does not show "${want}"`);
    }
    // The tables carry this run's figure, as the tool printed it.
    check(text.includes(delivered[1]), `the page does not show this run's delivered rate ${delivered[1]}`);

    const charts = await page.$$eval('svg', (svgs) =>
      svgs.map((s) => {
        const r = s.getBoundingClientRect();
        const lines = [...s.querySelectorAll('polyline')].map((p) => {
          const b = p.getBBox();
          return { points: (p.getAttribute('points') || '').trim().split(/\s+/).length, w: b.width, h: b.height };
        });
        return { label: s.getAttribute('aria-label') || '', w: r.width, h: r.height, lines };
      }),
    );
    check(charts.length >= 2, `expected a latency and a throughput chart, found ${charts.length} svg`);
    for (const c of charts) {
      check(c.w > 100 && c.h > 50, `chart "${c.label}" lays out at ${c.w}x${c.h}`);
      const drawn = c.lines.filter((l) => l.points >= 2 && (l.w > 10 || l.h > 10));
      check(drawn.length > 0, `chart "${c.label}" draws no line: ${JSON.stringify(c.lines)}`);
    }
    const shot = join(SHOTS, 'loadtest-report.png');
    await page.screenshot({ path: shot, fullPage: true, timeout: WAIT });
    const size = statSync(shot).size;
    check(size > 20_000, `screenshot ${shot} is only ${size} bytes`);
    console.log(`report rendered: ${charts.map((c) => c.label).join(', ')}; screenshot ${shot} (${size} bytes)`);
  } finally {
    await browser.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.log(e instanceof Fail ? `assertion failed: ${e.message}` : `error: ${e.stack || e}`);
    process.exit(1);
  },
);
