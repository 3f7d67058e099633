// src/assignment.ts against contract/assignment-vectors.json (every case), and its SHA-256 and
// UTF-8 against Node's own. Needs no server: tests/e2e/test_typescript_assignment.py compiles
// and runs it in `make test`, with EXPERIMENTS_ASSIGNMENT_VECTORS naming the file; `npm test`
// runs it too (from dist/test/, where the default path below finds the file).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  applies,
  assign,
  bucket,
  groupIndex,
  microsFromRfc3339,
  microsFromTimestamp,
  periodOf,
  sha256,
  utf8,
  validUntil,
  type GroupRanges,
  type ResetInterval,
} from "../src/assignment.js";

interface AssignmentCase {
  experiment_id: string;
  visitor_id: string;
  period: number;
  bucket: number;
  ranges: [number, number][][];
  group: number;
  note: string;
  // Only in the cases about periods:
  interval?: ResetInterval;
  starts_at?: string;
  ends_at?: string | null;
  at?: string;
  valid_until?: string | null;
}

interface AppliesCase {
  is_draft: boolean;
  starts_at: string | null;
  ends_at: string | null;
  room_ids: string[];
  room_id: string | null;
  at: string;
  applies: boolean;
}

const vectorsPath =
  process.env.EXPERIMENTS_ASSIGNMENT_VECTORS ??
  fileURLToPath(new URL("../../../../contract/assignment-vectors.json", import.meta.url));
const vectors = JSON.parse(readFileSync(vectorsPath, "utf8")) as {
  assignments: AssignmentCase[];
  applies: AppliesCase[];
};

function ranges(groups: [number, number][][]): GroupRanges {
  return groups.map((group) => group.map(([start, end]) => ({ start, end })));
}

function micros(text: string | null | undefined): bigint | null {
  return text == null ? null : microsFromRfc3339(text);
}

describe("the assignment vectors", () => {
  test("buckets and groups", () => {
    assert.ok(vectors.assignments.length >= 3000, vectorsPath);
    for (const c of vectors.assignments) {
      const chosen = bucket(c.experiment_id, c.period, c.visitor_id);
      const got = { bucket: chosen, group: groupIndex(chosen, ranges(c.ranges)) };
      assert.deepEqual(got, { bucket: c.bucket, group: c.group }, JSON.stringify(c));
    }
  });

  test("periods and how long an assignment holds", () => {
    const timed = vectors.assignments.filter((c) => c.at !== undefined);
    assert.ok(timed.length >= 300);
    for (const c of timed) {
      const experiment = {
        id: c.experiment_id,
        isDraft: false,
        startsAt: micros(c.starts_at),
        endsAt: micros(c.ends_at),
        roomIds: [],
        groupResetInterval: c.interval!,
        ranges: ranges(c.ranges),
      };
      const at = micros(c.at)!;
      assert.equal(periodOf(c.interval!, experiment.startsAt!, at), c.period, JSON.stringify(c));
      assert.equal(
        validUntil(c.interval!, experiment.startsAt!, experiment.endsAt, at),
        micros(c.valid_until),
      );
      assert.deepEqual(assign(experiment, c.visitor_id, null, at), {
        groupIndex: c.group,
        bucket: c.bucket,
        period: c.period,
        validUntil: micros(c.valid_until),
      });
    }
  });

  test("when an experiment applies", () => {
    for (const c of vectors.applies) {
      const experiment = {
        isDraft: c.is_draft,
        startsAt: micros(c.starts_at),
        endsAt: micros(c.ends_at),
        roomIds: c.room_ids,
      };
      assert.equal(applies(experiment, c.room_id, micros(c.at)!), c.applies, JSON.stringify(c));
    }
  });
});

describe("the parts", () => {
  test("SHA-256 agrees with node:crypto on every length across the padding boundaries", () => {
    for (let length = 0; length <= 300; length++) {
      const message = Uint8Array.from({ length }, (_, i) => (i * 131 + length * 7) & 0xff);
      const expected = createHash("sha256").update(message).digest();
      assert.deepEqual(Buffer.from(sha256(message)), expected, `length ${length}`);
    }
    // FIPS 180-4's example.
    assert.equal(
      Buffer.from(sha256(utf8("abc"))).toString("hex"),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });

  test("UTF-8 agrees with Node's for every visitor id of the vectors", () => {
    for (const c of vectors.assignments) {
      assert.deepEqual(Buffer.from(utf8(c.visitor_id)), Buffer.from(c.visitor_id, "utf8"));
    }
  });

  test("an unpaired surrogate is refused, not replaced", () => {
    for (const text of ["\ud83d", "a\ude42", "\ude42\ud83d", "end \ud83d"]) {
      assert.throws(() => bucket("0b9e7f3c-5a4d-4c2b-9f1e-2d3c4b5a6978", 0, text), RangeError);
    }
  });

  test("the README's example, and an experiment id in upper case", () => {
    assert.equal(bucket("0b9e7f3c-5a4d-4c2b-9f1e-2d3c4b5a6978", 0, "visitor-1"), 6683);
    assert.equal(bucket("0B9E7F3C-5A4D-4C2B-9F1E-2D3C4B5A6978", 1, "visitor-1"), 3177);
  });

  test("malformed experiment ids and periods are refused", () => {
    for (const id of ["0b9e7f3c5a4d4c2b9f1e2d3c4b5a6978", "{0b9e7f3c-5a4d-4c2b-9f1e-2d3c4b5a6978}"]) {
      assert.throws(() => bucket(id, 0, "v"), RangeError);
    }
    for (const period of [-1, 1.5, Number.NaN, 2 ** 53]) {
      assert.throws(() => bucket("0b9e7f3c-5a4d-4c2b-9f1e-2d3c4b5a6978", period, "v"), RangeError);
    }
  });

  test("times: RFC 3339 with any digits and offsets, and protobuf Timestamps", () => {
    const start = 1_780_315_200_250_000n; // 2026-06-01T12:00:00.25Z
    assert.equal(microsFromRfc3339("2026-06-01T12:00:00.25Z"), start);
    assert.equal(microsFromRfc3339("2026-06-01T12:00:00.250000Z"), start);
    assert.equal(microsFromRfc3339("2026-06-01T12:00:00.250000999Z"), start);
    assert.equal(microsFromRfc3339("2026-06-01T14:00:00.25+02:00"), start);
    assert.equal(microsFromRfc3339("2026-06-01T06:30:00.25-05:30"), start);
    assert.equal(microsFromRfc3339("1970-01-01T00:00:00Z"), 0n);
    assert.equal(microsFromRfc3339("9998-12-31T23:59:59.999999Z"), 253_370_764_799_999_999n);
    assert.equal(microsFromTimestamp({ seconds: 1_780_315_200n, nanos: 250_000_999 }), start);
    for (const bad of ["2026-02-30T00:00:00Z", "2026-06-01T24:00:00Z", "2026-06-01 12:00:00"]) {
      assert.throws(() => microsFromRfc3339(bad), RangeError, bad);
    }
  });

  test("no period before the start, no validity after the end", () => {
    assert.throws(() => periodOf("1d", 10n, 9n), RangeError);
    assert.throws(() => validUntil("1d", 0n, 10n, 10n), RangeError);
    assert.equal(periodOf("full", 0n, 10n ** 17n), 0);
  });

  test("assign answers null where the experiment does not apply", () => {
    const experiment = {
      id: "0b9e7f3c-5a4d-4c2b-9f1e-2d3c4b5a6978",
      isDraft: false,
      startsAt: 100n,
      endsAt: null,
      roomIds: ["1a000000-0000-4000-8000-00000000000a"],
      groupResetInterval: "full" as const,
      ranges: [[{ start: 0, end: 10_000 }]],
    };
    assert.equal(assign(experiment, "v", "1A000000-0000-4000-8000-00000000000A", 99n), null);
    assert.equal(assign(experiment, "v", null, 100n), null);
    assert.equal(assign({ ...experiment, isDraft: true }, "v", null, 100n), null);
    assert.equal(
      assign(experiment, "visitor-1", "1A000000-0000-4000-8000-00000000000A", 100n)?.bucket,
      6683,
    );
  });
});
