// Run by tests/e2e/front_end.py: opens a page in headless Chromium (Debian's, never a
// downloaded build) and, from that page's origin, calls the gateway with fetch(). Reads its
// settings as JSON on stdin and prints what the page saw as JSON on stdout. The scenario
// (settings.scenario) is "crud" (list, create, delete) or "watch" (follow the REST watch with a
// streaming fetch while the page creates an experiment).
import { chromium } from "playwright-core";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const settings = JSON.parse(Buffer.concat(chunks).toString());

async function crud({ gateway, organization, token }) {
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
}

// In the page: a watch followed the way the README shows (fetch with the Authorization header,
// which EventSource cannot send; the body read as a stream and split on newlines). After the
// first line (a heartbeat, sent as the watch starts) the page creates an experiment, and reads on
// until its change arrives: that only happens if nothing on the way buffers the stream.
async function watch({ gateway, organization, token }) {
  const auth = { Authorization: `Token ${token}` };
  const base = `${gateway}/api/v5/orgs/${organization}`;
  const aborter = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    aborter.abort();
  }, 20000);
  const lines = [];
  let response = null;
  let created = null;
  try {
    response = await fetch(`${base}/changes/watch`, { headers: auth, signal: aborter.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let end;
      while ((end = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
        if (line.trim() === "") continue;
        const message = JSON.parse(line);
        lines.push(message);
        if (created === null) {
          const made = await fetch(`${base}/experiments`, {
            method: "POST",
            headers: { ...auth, "Content-Type": "application/json" },
            body: JSON.stringify({ is_draft: true, name: "Watched in a browser" }),
          });
          created = await made.json();
        } else if (message.change && message.change.experiment_id === created.id) {
          aborter.abort();
        }
      }
    }
  } catch (error) {
    if (!aborter.signal.aborted || lines.length === 0) lines.push({ error: String(error) });
  } finally {
    clearTimeout(timer);
  }
  return {
    origin: window.location.origin,
    status: response && response.status,
    contentType: response && response.headers.get("content-type"),
    created,
    lines,
    timedOut,
  };
}

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
  const scenario = settings.scenario === "watch" ? watch : crud;
  const seen = await page.evaluate(scenario, settings);
  process.stdout.write(JSON.stringify(seen));
} finally {
  await context.close();
}
