// Shared launcher for nb_maint's browser tests: Debian's Chromium driven by
// playwright-core (no browser download), headless, in a fresh profile.  Used by t/browser/page.js and the NocoBase e2e run.
'use strict';

const { chromium } = require('playwright-core');

const EXECUTABLE = process.env.NB_CHROMIUM || '/usr/bin/chromium';

// No background traffic: this machine's network is closed, and Chromium
// otherwise keeps trying Google's hosts at every start.
const FLAGS = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
];

// One browser; playwright gives it a new empty --user-data-dir (removed on
// close).  Each visit gets its own context (viewport, locale, cookies).
async function launch(opts = {}) {
    const browser = await chromium.launch({
        executablePath: EXECUTABLE,
        headless: true,
        args: FLAGS,
        timeout: opts.timeout || 60000,
    });
    const context = (o = {}) => browser.newContext({
        viewport: o.viewport || { width: 1280, height: 800 },
        locale: o.locale || 'en-US',
    });
    return { browser, context, close: () => browser.close() };
}

// kill the whole run if it takes longer than ms (a test must never hang)
function watchdog(ms) {
    const t = setTimeout(() => {
        process.stderr.write(`browser: watchdog: no result after ${ms} ms\n`);
        process.exit(3);
    }, ms);
    t.unref();
}

module.exports = { launch, watchdog, EXECUTABLE, FLAGS };
