#!/usr/bin/env node
// A headless Chromium that a test steers line by line (for scenarios where
// the browser has to wait while the test changes the world around it).
//
//   node t/browser/driver.js        reads one JSON command a line on stdin,
//                                   answers one JSON line on stdout
//
// Commands ({"cmd": ..., "tab": "a", ...}); every answer has "ok" (and
// "error" when not ok):
//   open   tab url [width height lang dialogs]  new context+page, goto
//                                       url; dialogs: "accept" accepts
//                                       alert/confirm (default: dismiss);
//                                       cookies: [{name, value, url}] first
//   goto   tab url                      navigate an open tab
//   wait   tab [re] [not_re] [url_re] [min_nav] [timeout_ms]
//                                       until the body text matches re and
//                                       not not_re, the URL url_re, and the
//                                       tab has loaded min_nav pages;
//                                       answers ms waited and the text
//   text   tab                          body text, url, navigations
//   fill   tab selector value           type into an input
//   click  tab selector                 click
//   shot   tab path [full]              screenshot (full: the whole page)
//   select tab selector value           choose an <option> of a <select>
//   eval   tab js                       evaluate the expression js in the
//                                       page; answers {value}
//   viewport tab width height           resize the tab's viewport
//   net    tab [since]                  responses the tab got (url, status,
//                                       ms since open; status 0: failed)
//                                       from index since on, console
//                                       errors and page errors
//   close  tab
//   quit
// "navigations" counts the tab's main-frame loads since it was opened, so a
// test can tell a reload the page did by itself.
'use strict';

const readline = require('readline');
const { launch } = require('./lib');

const tabs = new Map();

async function bodyText(page) {
    return page.evaluate(() => document.body ? document.body.innerText : '')
        .catch(() => '');
}

function tab(c) {
    const t = tabs.get(c.tab);
    if (!t) throw new Error(`no tab ${c.tab}`);
    return t;
}

async function run(b, c) {
    switch (c.cmd) {
    case 'open': {
        const ctx = await b.context({
            viewport: { width: c.width || 1280, height: c.height || 800 },
            locale: c.lang || 'en-US',
        });
        if (c.cookies) await ctx.addCookies(c.cookies);
        const page = await ctx.newPage();
        const t = { ctx, page, navigations: 0, dialogs: [], net: [], errors: [],
                    t0: Date.now() };
        page.on('response', (r) => t.net.push({ url: r.url(), status: r.status(),
                                                ms: Date.now() - t.t0 }));
        page.on('requestfailed', (r) => t.net.push({ url: r.url(), status: 0,
                                                     ms: Date.now() - t.t0 }));
        page.on('console', (m) => {
            if (m.type() === 'error') t.errors.push(m.text().slice(0, 500));
        });
        page.on('pageerror', (e) => t.errors.push(String(e && e.message || e).slice(0, 500)));
        page.on('framenavigated', (f) => {
            if (f === page.mainFrame()) t.navigations++;
        });
        page.on('dialog', (d) => {
            t.dialogs.push(d.message());
            (c.dialogs === 'accept' ? d.accept() : d.dismiss()).catch(() => {});
        });
        tabs.set(c.tab, t);
        const r = await page.goto(c.url, { waitUntil: 'load',
                                           timeout: c.timeout_ms || 60000 });
        return { status: r ? r.status() : null, url: page.url() };
    }
    case 'goto': {
        const t = tab(c);
        const r = await t.page.goto(c.url, { waitUntil: 'load',
                                             timeout: c.timeout_ms || 60000 });
        return { status: r ? r.status() : null, url: t.page.url() };
    }
    case 'wait': {
        const t = tab(c), start = Date.now();
        const re = c.re !== undefined ? new RegExp(c.re) : null;
        const unre = c.not_re !== undefined ? new RegExp(c.not_re) : null;
        const urlRe = c.url_re !== undefined ? new RegExp(c.url_re) : null;
        const limit = start + (c.timeout_ms || 30000);
        let text = '';
        for (;;) {
            text = await bodyText(t.page);
            if ((!re || re.test(text)) && (!unre || !unre.test(text))
                && (!urlRe || urlRe.test(t.page.url()))
                && t.navigations >= (c.min_nav || 0)) break;
            if (Date.now() > limit) {
                return { ok: false, error: `no /${c.re}/ !/${c.not_re}/ `
                         + `url /${c.url_re}/ after `
                         + `${Date.now() - start} ms`, text,
                         url: t.page.url(), navigations: t.navigations };
            }
            await new Promise((r) => setTimeout(r, 200));
        }
        return { ms: Date.now() - start, text, url: t.page.url(),
                 navigations: t.navigations };
    }
    case 'text': {
        const t = tab(c);
        return { text: await bodyText(t.page), url: t.page.url(),
                 title: await t.page.title().catch(() => ''),
                 navigations: t.navigations, dialogs: t.dialogs };
    }
    case 'fill':
        await tab(c).page.fill(c.selector, c.value, { timeout: c.timeout_ms || 30000 });
        return {};
    case 'click':
        await tab(c).page.click(c.selector, { timeout: c.timeout_ms || 30000 });
        return {};
    case 'select':
        await tab(c).page.selectOption(c.selector, c.value,
                                       { timeout: c.timeout_ms || 30000 });
        return {};
    case 'eval':
        return { value: await tab(c).page.evaluate(c.js) };
    case 'viewport':
        await tab(c).page.setViewportSize({ width: c.width, height: c.height });
        return {};
    case 'net': {
        const t = tab(c);
        return { net: t.net.slice(c.since || 0), count: t.net.length,
                 errors: t.errors, ms: Date.now() - t.t0 };
    }
    case 'shot':
        await tab(c).page.screenshot({ path: c.path, fullPage: !!c.full });
        return { path: c.path };
    case 'close': {
        const t = tab(c);
        tabs.delete(c.tab);
        await t.ctx.close();
        return {};
    }
    default:
        throw new Error(`unknown command ${c.cmd}`);
    }
}

async function main() {
    const b = await launch();
    const rl = readline.createInterface({ input: process.stdin });
    const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
    say({ ok: true, ready: true });
    for await (const line of rl) {
        if (!line.trim()) continue;
        let c;
        try {
            c = JSON.parse(line);
        } catch (e) {
            say({ ok: false, error: `bad JSON: ${e.message}` });
            continue;
        }
        if (c.cmd === 'quit') break;
        try {
            say({ ok: true, ...(await run(b, c)) });
        } catch (e) {
            say({ ok: false, error: String(e && e.message || e) });
        }
    }
    await b.close();
    say({ ok: true, bye: true });
}

main().catch((e) => {
    process.stderr.write(`driver: ${e && e.stack || e}\n`);
    process.exit(2);
});
