// Drives the observer page in headless Chromium: signs in as the admin, waits for every
// replica's tree (six services × replicas), stops a cart actor through the page (in whichever
// cart replica's pane it is) and waits for its restart count to go up; reads the state the
// payment service's bridge shows for its consumer.
// Usage: node dev/browser/observer.mjs GATEWAY ADMIN_EMAIL ADMIN_PASSWORD CART_ACTOR SCREENSHOT
// (CART_ACTOR `any`: the first cart the page lists, for a system under load.)
import { signedIn } from "./signin.mjs";

const [gateway, email, password, wanted, screenshot] = process.argv.slice(2);
const { browser, page } = await signedIn(gateway, email, password);
try {
  // The trees drawn as lists: the graph has no `.actor` lines to click (the page remembers the
  // choice in localStorage; a fresh browser starts with the list anyway).
  await page.click("#mode-list");
  const replicas = await (await page.request.get(`${gateway}/admin/replicas`)).json();
  let trees = 0;
  for (const service of ["user", "product", "cart", "order", "payment", "notification"]) {
    for (let replica = 1; replica <= replicas[service]; replica++) {
      const pane = replica === 1 ? service : `${service}-${replica}`;
      await page.waitForSelector(`#service-${pane} .actor[data-name="${service}"]`, { timeout: 15000 });
      trees++;
    }
  }
  const carts = `.service[data-service=cart]`;
  const cartActor = wanted === "any"
    ? await page.locator(`${carts} .actor[data-name^="cart:"]`).first().getAttribute("data-name")
    : wanted;
  const actor = page.locator(`${carts} .actor[data-name="${cartActor}"]`);
  await actor.waitFor({ timeout: 15000 });
  await actor.click();
  await page.click("#stop");
  await page.waitForFunction(
    (name) => {
      const node = document.querySelector(`.service[data-service=cart] .actor[data-name="${name}"]`);
      return node && Number(node.dataset.restarts) >= 1;
    },
    cartActor,
    { timeout: 15000 },
  );
  await page.screenshot({ path: screenshot, fullPage: true });
  const restarts = await page
    .locator(`.service[data-service=cart] .actor[data-name="${cartActor}"]`)
    .getAttribute("data-restarts");
  const bridge = await page
    .locator(`.service[data-service=payment] .actor[data-name="payment.bridge"] .detail`)
    .first()
    .textContent();
  console.log(JSON.stringify({ trees, stopped: cartActor, restarts: Number(restarts), bridge }));
} finally {
  await browser.close();
}
