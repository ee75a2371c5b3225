#!/usr/bin/env node
// Load pages in headless Chromium and describe what a person would see.
//
//   node t/browser/page.js PLAN.json OUT.json
//
// PLAN: {"visits": [{"url": ..., "width": 390, "height": 844, "lang": "de",
//        "screenshot": "/abs/file.png", "wait_ms": 0, "timeout_ms": 30000}]}
// OUT:  [{"status", "url" (final), "title", "text" (body's innerText),
//        "html" (outerHTML), "lang", "scroll_width", "client_width"
//        (horizontal overflow when the first is larger), "console_errors",
//        "error" (null, or why this visit failed)}]
// One browser serves all visits (starting Chromium is the slow part).
'use strict';

const fs = require('fs');
const { launch, watchdog } = require('./lib');

async function visit(b, v) {
    const out = { console_errors: [], error: null };
    const ctx = await b.context({
        viewport: { width: v.width || 1280, height: v.height || 800 },
        locale: v.lang || 'en-US',
    });
    try {
        const page = await ctx.newPage();
        page.on('console', (m) => {
            if (m.type() === 'error') out.console_errors.push(m.text());
        });
        const resp = await page.goto(v.url, { waitUntil: 'load',
                                              timeout: v.timeout_ms || 30000 });
        if (v.wait_ms) await page.waitForTimeout(v.wait_ms);
        out.status = resp ? resp.status() : null;
        out.url = page.url();
        out.title = await page.title();
        Object.assign(out, await page.evaluate(() => ({
            text: document.body ? document.body.innerText : '',
            html: document.documentElement.outerHTML,
            lang: document.documentElement.lang,
            scroll_width: document.documentElement.scrollWidth,
            client_width: document.documentElement.clientWidth,
        })));
        if (v.screenshot) {
            await page.screenshot({ path: v.screenshot, fullPage: true });
            out.screenshot = v.screenshot;
        }
    } catch (e) {
        out.error = String(e && e.message || e);
    } finally {
        await ctx.close();
    }
    return out;
}

async function main() {
    const [planFile, outFile] = process.argv.slice(2);
    if (!planFile || !outFile) throw new Error('usage: page.js PLAN.json OUT.json');
    const plan = JSON.parse(fs.readFileSync(planFile, 'utf8'));
    const visits = plan.visits || [];
    watchdog(60000 + visits.reduce((t, v) => t + (v.timeout_ms || 30000)
                                             + (v.wait_ms || 0), 0));
    const b = await launch();
    const results = [];
    try {
        for (const v of visits) results.push(await visit(b, v));
    } finally {
        await b.close();
    }
    fs.writeFileSync(outFile, JSON.stringify(results) + '\n');
}

main().catch((e) => {
    process.stderr.write(`browser: ${e && e.stack || e}\n`);
    process.exit(2);
});
