// Loads the web UI's pages in headless Chromium (Debian's, driven by playwright-core) and
// checks that each loads without console errors, failed requests or page errors, and shows
// data; keeps a screenshot of each. Used by tests/tests/web_ui.rs.
//
//   node ui/test/browser.mjs BASE_URL SCREENSHOT_DIR PAGE[:EXPECT]...
//
// PAGE is meetings, query or cluster; cluster:N expects N members of which the last one
// named by cluster:N:down=ID is unreachable. Prints one line per page; exits 1 on the first
// failure with what the page showed.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, shots, ...pages] = process.argv.slice(2);
if (!base || !shots || !pages.length) {
  console.error('usage: browser.mjs BASE_URL SCREENSHOT_DIR PAGE[:EXPECT]...');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const CHECKS = {
  async meetings(page) {
    await page.waitForSelector('#meetings[data-state="ready"] tbody tr', { timeout: 30000 });
    await page.waitForSelector('.uplot canvas', { timeout: 30000 });
    const meetings = await page.locator('#meetings tbody tr').count();
    // Pick the first meeting: the charts redraw for it alone and the URL names it.
    const first = (await page.locator('#meetings tbody tr td').first().textContent()).trim();
    await page.locator('#meetings tbody tr').first().click();
    await page.waitForFunction((id) => window.location.hash.includes(encodeURIComponent(id)), first, { timeout: 10000 });
    await page.waitForFunction(
      () => document.querySelectorAll('#meetings[data-state="ready"] tbody tr').length === 1,
      null,
      { timeout: 15000 },
    );
    const shown = (await page.locator('#meetings tbody tr td').first().textContent()).trim();
    if (shown !== first) throw new Error(`${first} picked, ${shown} shown`);
    return `${meetings} meetings; picked ${first}`;
  },
  async query(page) {
    await page.fill('#expr', 'sum by (meeting_id) (meeting_active_users)');
    await page.click('#execute');
    await page.waitForSelector('#result[data-state="ready"] .uplot canvas', { timeout: 30000 });
    // The legend has a row per series (no time row: its values are not live).
    const legend = await page.locator('#result .u-legend .u-series').count();
    await page.click('text=Table');
    await page.waitForSelector('#result[data-state="ready"] tbody tr', { timeout: 30000 });
    const rows = await page.locator('#result tbody tr').count();
    // A bad expression is an error shown on the page, not an exception.
    await page.fill('#expr', 'sum(');
    await page.click('#execute');
    await page.waitForSelector('#result[data-state="error"] .error', { timeout: 15000 });
    const error = (await page.locator('#result .error').textContent()).trim();
    if (!error.includes('bad_data')) throw new Error(`a bad query showed: ${error}`);
    await page.fill('#expr', 'sum by (meeting_id) (meeting_active_users)');
    await page.click('text=Graph');
    await page.waitForSelector('#result[data-state="ready"] .uplot canvas', { timeout: 30000 });
    return `${legend} series graphed, ${rows} rows in the table, a bad query shows "${error.slice(0, 60)}"`;
  },
  async cluster(page, expect) {
    const [members, down] = (expect || '1').split(':');
    const want = Number(members);
    await page.waitForFunction(
      ([n, d]) => {
        const rows = document.querySelectorAll('#members[data-state="ready"] tbody tr');
        if (rows.length !== n) return false;
        const unreachable = [...rows].filter((r) => r.textContent.includes('unreachable')).length;
        return unreachable === (d ? 1 : 0);
      },
      [want, down],
      { timeout: 30000 },
    );
    const text = await page.locator('#members').textContent();
    if (!text.includes('leader')) throw new Error(`no leader shown: ${text}`);
    if (down && !(await page.locator(`#members tbody tr:has-text("node ${down.replace('down=', '')}") >> text=unreachable`).count())) {
      throw new Error(`node ${down} is not the one shown unreachable: ${text}`);
    }
    return `${want} members, leader shown${down ? `, ${down.replace('down=', 'node ')} unreachable` : ''}`;
  },
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let failed = false;
try {
  for (const spec of pages) {
    const [name, ...rest] = spec.split(':');
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    const problems = [];
    // The query page's bad expression is meant to answer 400 (and Chromium logs that load as a
    // console error); any other failure is a fault.
    const meant = (url, status) => name === 'query' && status === 400 && /[?&]query=sum%28(&|$)/.test(url);
    page.on('console', (m) => {
      if (m.type() === 'error' && !meant(m.location().url || '', 400)) problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', (r) => {
      if (r.status() >= 400 && !meant(r.url(), r.status())) problems.push(`HTTP ${r.status()}: ${r.url()}`);
    });
    try {
      await page.goto(`${base}/ui/#/${name}`, { waitUntil: 'load' });
      const said = await CHECKS[name](page, rest.join(':'));
      if (problems.length) throw new Error(problems.join('\n'));
      await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
      console.log(`ok ${name}: ${said}`);
    } catch (e) {
      failed = true;
      await page.screenshot({ path: join(shots, `${name}-failed.png`), fullPage: true }).catch(() => {});
      const body = await page.locator('body').innerText().catch(() => '');
      console.log(`FAILED ${name}: ${e.message}\n${problems.join('\n')}\n--- the page showed:\n${body.slice(0, 3000)}`);
      break;
    } finally {
      await context.close();
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
