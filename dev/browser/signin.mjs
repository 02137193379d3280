// What every observer script starts with: Debian's Chromium, headless (never a downloaded
// browser), one 1600×1000 page, signed in on the observer page as the admin.
import { chromium } from "playwright-core";

export async function signedIn(gateway, email, password) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  await page.goto(`${gateway}/admin/`);
  await page.fill("input[name=email]", email);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  return { browser, page };
}
