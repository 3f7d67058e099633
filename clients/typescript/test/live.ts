// What the live tests (*.live.test.ts, roundtrip.test.ts) share: the server's address and the
// demo world's key and ids, which tests/e2e/test_typescript_client.py passes in the environment.
import assert from "node:assert/strict";

export function env(name: string): string {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run this through make test-typescript`);
  return value;
}
