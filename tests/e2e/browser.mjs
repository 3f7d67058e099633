// Run by tests/e2e/front_end.py: opens a page in headless Chromium (Debian's, never a
// downloaded build) and, from that page's origin, calls the gateway with fetch(). Reads its
// settings as JSON on stdin and prints what the page saw as JSON on stdout.
import { chromium } from "playwright-core";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const settings = JSON.parse(Buffer.concat(chunks).toString());

const context = await chromium.launchPersistentContext(settings.profile, {
  executablePath: settings.chromium,
  headless: true,
  chromiumSandbox: false,
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
try {
  const page = await context.newPage();
  await page.goto(settings.page);
  const seen = await page.evaluate(async ({ gateway, organization, token }) => {
    const collection = `${gateway}/api/v5/orgs/${organization}/experiments`;
    const auth = { Authorization: `Token ${token}` };
    // What a fetch() got, or the TypeError the browser raised when CORS refused it.
    async function call(url, init) {
      try {
        const response = await fetch(url, init);
        const text = await response.text();
        return {
          status: response.status,
          location: response.headers.get("location"),
          body: text ? JSON.parse(text) : null,
        };
      } catch (error) {
        return { error: String(error) };
      }
    }
    const list = await call(`${collection}?page_size=5`, { headers: auth });
    const create = await call(collection, {
      method: "POST",
      headers: { ...auth, "Content-Type": "application/json" },
      body: JSON.stringify({ is_draft: true, name: "Made in a browser" }),
    });
    const id = create.body && create.body.id;
    const remove = id
      ? await call(`${collection}/${id}`, { method: "DELETE", headers: auth })
      : null;
    return { origin: window.location.origin, list, create, remove };
  }, settings);
  process.stdout.write(JSON.stringify(seen));
} finally {
  await context.close();
}
