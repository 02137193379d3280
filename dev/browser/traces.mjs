// Drives the observer page's Traces view in headless Chromium: signs in as the admin, asks for
// the trace in which ORDER_ID was placed and waits for its waterfall. Spans reach the trace
// store a little after the request answered, so a "no trace" answer is retried every 2 s for up
// to 20 s. Prints what the waterfall shows as one JSON line:
//   {"rows": n, "services": [sorted unique services], "names": [every span name, in row order]}
// Usage: node dev/browser/traces.mjs GATEWAY ADMIN_EMAIL ADMIN_PASSWORD ORDER_ID SCREENSHOT
import { signedIn } from "./signin.mjs";

const [gateway, email, password, orderId, screenshot] = process.argv.slice(2);
if (!screenshot) {
  console.error("usage: node dev/browser/traces.mjs GATEWAY ADMIN_EMAIL ADMIN_PASSWORD ORDER_ID SCREENSHOT");
  process.exit(2);
}
const WAIT_MS = 20000;
const RETRY_MS = 2000;

const { browser, page } = await signedIn(gateway, email, password);
try {
  await page.click("#tab-traces", { timeout: 15000 });
  await page.fill("#trace-query", orderId);

  // #trace-message's data-state says how the last request ended: ok, notfound or error.
  const deadline = Date.now() + WAIT_MS;
  let outcome = "";
  for (;;) {
    await page.click("#show-trace");
    const left = Math.max(deadline - Date.now(), 1);
    outcome = await page
      .waitForFunction(() => {
        if (document.querySelector("#waterfall .span-row")) return "rows";
        const state = document.querySelector("#trace-message").dataset.state;
        return state === "notfound" || state === "error" ? state : false;
      }, null, { timeout: left, polling: 100 })
      .then((handle) => handle.jsonValue())
      .catch(() => "timeout");
    if (outcome !== "notfound" || Date.now() + RETRY_MS > deadline) break;
    await page.waitForTimeout(RETRY_MS);
  }
  if (outcome !== "rows") {
    const message = await page.textContent("#trace-message").catch(() => "");
    // What the page showed, to see why (best effort).
    await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
    throw new Error(`no waterfall for order ${orderId} within ${WAIT_MS / 1000} s (${outcome}): ${message}`);
  }

  // The details column is sticky: scroll to the top so the full-page picture is the page as
  // first drawn.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: screenshot, fullPage: true });
  const rows = await page.$$eval("#waterfall .span-row", (elements) =>
    elements.map((row) => ({ service: row.dataset.service, name: row.dataset.name })));
  const services = [...new Set(rows.map((row) => row.service))].sort();
  console.log(JSON.stringify({ rows: rows.length, services, names: rows.map((row) => row.name) }));
} catch (error) {
  console.error(`traces.mjs: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
