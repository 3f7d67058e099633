// watchChanges (src/client.ts) against the live server, through a TCP relay that the test cuts:
// the watch resumes from its last cursor and ends up with exactly the changes the server lists
// after its first position, each once, in order. Driven by tests/e2e/test_typescript_client.py
// (`npm test`), with the environment roundtrip.test.ts gets; the other live tests write in the
// same organization meanwhile, which the comparison with ListExperimentChanges includes.
import assert from "node:assert/strict";
import { test } from "node:test";
import net from "node:net";
import { ConnectError } from "@connectrpc/connect";
import { grpcClient, watchChanges } from "../src/client.js";
import { env } from "./live.js";

const key = env("EXPERIMENTS_KEY");
const org = env("EXPERIMENTS_ORG");
const server = new URL(env("EXPERIMENTS_GRPC_URL"));
const TIMEOUT_MS = 30_000;

/** A TCP relay to the server on a port of its own. `cut()` drops every connection through it
 * and refuses new ones (closing them at once) until `restore()`. */
class Relay {
  private readonly sockets = new Set<net.Socket>();
  private refusing = false;
  private readonly listener = net.createServer((client) => {
    if (this.refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(server.port), server.hostname);
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
      socket.on("error", () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.listener.listen(0, "127.0.0.1", resolve));
    const address = this.listener.address() as net.AddressInfo;
    return `http://127.0.0.1:${address.port}`;
  }

  cut(): void {
    this.refusing = true;
    for (const socket of this.sockets) socket.destroy();
  }

  restore(): void {
    this.refusing = false;
  }

  close(): void {
    this.cut();
    this.listener.close();
  }
}

/** Polls `condition` until it holds, failing after TIMEOUT_MS or once `failed` has an error. */
async function until(
  condition: () => boolean,
  what: string,
  failed: () => unknown = () => undefined,
): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!condition()) {
    if (failed() !== undefined) throw failed();
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test("a gRPC watch resumes from its last cursor after a disconnect: nothing missed, nothing doubled", async () => {
  const relay = new Relay();
  const writer = grpcClient(server.origin, key);
  const watcher = grpcClient(await relay.listen(), key);
  const abort = new AbortController();
  const changes: { cursor: string; experimentId: string; revision: number }[] = [];
  const resumes: (ConnectError | null)[] = [];
  let start = "";
  let failure: unknown = undefined;
  const following = (async () => {
    for await (const message of watchChanges(watcher, org, {
      signal: abort.signal,
      delayMs: () => 50,
      onResume: (error) => resumes.push(error),
    })) {
      const event = message.event;
      if (event.case === "heartbeat" && start === "") start = event.value.cursor;
      if (event.case === "change") {
        const { cursor, experimentId, revision } = event.value;
        changes.push({ cursor, experimentId, revision });
      }
    }
  })().catch((error: unknown) => {
    failure = error;
  });
  const ours: string[] = [];
  const write = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const created = await writer.createExperiment({
        organizationId: org,
        experiment: { isDraft: true, name: `watched ${ours.length}` },
      });
      ours.push(created.id);
    }
  };
  const seen = (id: string) => changes.some((change) => change.experimentId === id);
  const watching = (condition: () => boolean, what: string) =>
    until(condition, what, () => failure);
  try {
    await watching(() => start !== "", "the first heartbeat");
    await write(3);
    await watching(() => ours.every(seen), "the changes before the disconnect");

    // The connection drops, and stays down while more changes commit.
    relay.cut();
    await watching(() => resumes.length >= 2, "the watch to notice and try again");
    await write(3);
    relay.restore();
    await watching(() => ours.every(seen), "the changes made while it was disconnected");
    await write(2);
    await watching(() => ours.every(seen), "the changes after it resumed");
  } finally {
    relay.close();
    abort.abort();
    await following;
  }
  assert.equal(failure, undefined);

  // What the server lists after the first position, up to the last change seen.
  const listed: string[] = [];
  let after = start;
  const last = changes.at(-1)?.cursor;
  while (!listed.includes(last ?? "")) {
    const page = await writer.listExperimentChanges({ organizationId: org, after, pageSize: 100 });
    assert.ok(page.results.length > 0, "the feed ended before the last change seen");
    listed.push(...page.results.map((change) => change.cursor));
    after = page.nextCursor;
  }
  listed.splice(listed.indexOf(last ?? "") + 1);
  assert.deepEqual(
    changes.map((change) => change.cursor),
    listed,
  );
  for (const id of ours) {
    assert.deepEqual(
      changes.filter((change) => change.experimentId === id).map((change) => change.revision),
      [1],
      id,
    );
  }
  assert.ok(resumes.length >= 1, "the relay's cut never reached the watch");
});
