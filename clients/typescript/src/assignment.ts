// Visitor assignment, as the README's "Visitor assignment (the algorithm)" defines it: the same
// group for the same visitor as the server and every other implementation. It imports nothing
// (no Node module, no WebCrypto), so it runs as is in browsers and in Node; test/assignment.test.ts
// checks it against contract/assignment-vectors.json.
//
// SHA-256 is written out here rather than taken from WebCrypto: crypto.subtle.digest is
// asynchronous (every assignment would become a promise) and missing on pages not served over
// HTTPS or from localhost, while the input is a few hundred bytes at most, which a synchronous
// digest in JavaScript hashes in microseconds.
//
// Times are bigint microseconds since 1970-01-01T00:00:00Z: the API's times have microseconds, a
// Date only milliseconds, and elapsed microseconds over centuries exceed 2^53.

export const BUCKETS = 10_000;

export type ResetInterval = "full" | "1w" | "1d";

const DAY_MICROSECONDS = 86_400_000_000n;

/** How long one period of each reset interval lasts; `full` never resets. */
export const PERIOD_MICROSECONDS: Readonly<Record<ResetInterval, bigint | null>> = {
  full: null,
  "1w": 7n * DAY_MICROSECONDS,
  "1d": DAY_MICROSECONDS,
};

/** The buckets start, start + 1, ..., end - 1. */
export interface BucketRange {
  readonly start: number;
  readonly end: number;
}

/** The ranges of each group of an experiment, in group order. */
export type GroupRanges = readonly (readonly BucketRange[])[];

/** What decides whether an experiment applies (README step 5). */
export interface Schedule {
  readonly isDraft: boolean;
  readonly startsAt: bigint | null;
  readonly endsAt: bigint | null;
  /** Empty: every room. */
  readonly roomIds: readonly string[];
}

/** An experiment as far as assignment needs it. */
export interface AssignableExperiment extends Schedule {
  readonly id: string;
  readonly groupResetInterval: ResetInterval;
  readonly ranges: GroupRanges;
}

export interface Assignment {
  /** The position of the visitor's group in the experiment's groups. */
  readonly groupIndex: number;
  readonly bucket: number;
  readonly period: number;
  /** The next period boundary or the end, whichever comes first; null: for ever. */
  readonly validUntil: bigint | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The visitor's bucket (0-9,999) in this period of the experiment: the first 8 bytes of SHA-256
 * over the UTF-8 of `${experimentId}:${period}:${visitorId}` (the id lowercased, the visitor id
 * exactly as given: no normalization), big-endian, modulo 10,000.
 */
export function bucket(experimentId: string, period: number, visitorId: string): number {
  if (!UUID.test(experimentId)) {
    throw new RangeError(`not a hyphenated UUID: ${JSON.stringify(experimentId)}`);
  }
  if (!Number.isSafeInteger(period) || period < 0) {
    throw new RangeError(`not a period (a whole number from 0): ${period}`);
  }
  const digest = sha256(utf8(`${experimentId.toLowerCase()}:${period}:${visitorId}`));
  const hi = word(digest, 0);
  const lo = word(digest, 4);
  // (hi * 2^32 + lo) mod 10,000 without 64-bit integers: 2^32 mod 10,000 = 7,296, and
  // 9,999 * 7,296 + 2^32 stays far below 2^53.
  return ((hi % BUCKETS) * 7296 + lo) % BUCKETS;
}

/**
 * Which period `at` falls in: 0 for `full`; for `1d` and `1w`, the whole days or weeks elapsed
 * since `startsAt`. Throws before the start, when the experiment does not apply.
 */
export function periodOf(interval: ResetInterval, startsAt: bigint, at: bigint): number {
  if (at < startsAt) {
    throw new RangeError("no period before the experiment starts");
  }
  const length = PERIOD_MICROSECONDS[interval];
  // Both are non-negative, so bigint division (which truncates) is the floor.
  return length === null ? 0 : Number((at - startsAt) / length);
}

/**
 * Until when an assignment made at `at` holds: the start of the next period or `endsAt`,
 * whichever comes first; null for `full` without an end. Throws unless startsAt <= at < endsAt.
 */
export function validUntil(
  interval: ResetInterval,
  startsAt: bigint,
  endsAt: bigint | null,
  at: bigint,
): bigint | null {
  const period = periodOf(interval, startsAt, at);
  if (endsAt !== null && !(at < endsAt)) {
    throw new RangeError("the experiment has ended");
  }
  const length = PERIOD_MICROSECONDS[interval];
  const nextPeriod = length === null ? null : startsAt + BigInt(period + 1) * length;
  if (nextPeriod === null || endsAt === null) {
    return nextPeriod ?? endsAt;
  }
  return nextPeriod < endsAt ? nextPeriod : endsAt;
}

/** The position of the group whose ranges hold the bucket; throws if none does (a draft). */
export function groupIndex(chosen: number, ranges: GroupRanges): number {
  const index = ranges.findIndex((group) =>
    group.some((range) => range.start <= chosen && chosen < range.end),
  );
  if (index < 0) {
    throw new RangeError(`no group holds bucket ${chosen}`);
  }
  return index;
}

/**
 * Whether the experiment assigns visitors at `at` in the room: published, started, not ended,
 * and in every room or this one. Without a room (null) only an experiment of every room applies.
 */
export function applies(experiment: Schedule, roomId: string | null, at: bigint): boolean {
  const { isDraft, startsAt, endsAt, roomIds } = experiment;
  if (isDraft || startsAt === null || at < startsAt || (endsAt !== null && !(at < endsAt))) {
    return false;
  }
  if (roomIds.length === 0) {
    return true;
  }
  return roomId !== null && roomIds.some((id) => id.toLowerCase() === roomId.toLowerCase());
}

/** The visitor's assignment in the experiment at `at` in the room, or null if it does not apply. */
export function assign(
  experiment: AssignableExperiment,
  visitorId: string,
  roomId: string | null,
  at: bigint,
): Assignment | null {
  const { startsAt } = experiment;
  if (startsAt === null || !applies(experiment, roomId, at)) {
    return null;
  }
  const interval = experiment.groupResetInterval;
  const period = periodOf(interval, startsAt, at);
  const chosen = bucket(experiment.id, period, visitorId);
  return {
    groupIndex: groupIndex(chosen, experiment.ranges),
    bucket: chosen,
    period,
    validUntil: validUntil(interval, startsAt, experiment.endsAt, at),
  };
}

/** Microseconds since the epoch of a google.protobuf.Timestamp (finer digits dropped). */
export function microsFromTimestamp(timestamp: { seconds: bigint; nanos: number }): bigint {
  return timestamp.seconds * 1_000_000n + BigInt(Math.floor(timestamp.nanos / 1000));
}

const RFC_3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * Microseconds since the epoch of an RFC 3339 time as the REST API writes them
 * ("2030-05-08T13:02:35.123Z"); digits finer than microseconds are dropped, as the server does.
 */
export function microsFromRfc3339(text: string): bigint {
  const match = RFC_3339.exec(text);
  if (match === null) {
    throw new RangeError(`not an RFC 3339 time: ${JSON.stringify(text)}`);
  }
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [
    number, number, number, number, number, number,
  ];
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, 0);
  const rolledOver = date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day;
  if (rolledOver || hour > 23 || minute > 59 || second > 59) {
    throw new RangeError(`not a valid date and time: ${JSON.stringify(text)}`);
  }
  const fraction = BigInt(((match[7] ?? "") + "000000").slice(0, 6));
  const sign = match[9] === "-" ? -1n : 1n;
  const offsetMinutes = match[8] ? 0n : BigInt(Number(match[10]) * 60 + Number(match[11]));
  return BigInt(date.getTime()) * 1000n + fraction - sign * offsetMinutes * 60_000_000n;
}

/** UTF-8 of well-formed text; throws on an unpaired surrogate, which has no UTF-8 form (an
 * encoder that wrote U+FFFD instead would hash another id than the server). */
export function utf8(text: string): Uint8Array {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    let code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdfff) {
      const low = text.charCodeAt(i + 1); // NaN past the end
      if (code > 0xdbff || !(low >= 0xdc00 && low <= 0xdfff)) {
        throw new RangeError(`unpaired surrogate at index ${i}: not Unicode text`);
      }
      code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
      i++;
    }
    if (code < 0x80) {
      bytes.push(code);
    } else if (code < 0x800) {
      bytes.push(0xc0 | (code >> 6), 0x80 | (code & 0x3f));
    } else if (code < 0x10000) {
      bytes.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f));
    } else {
      bytes.push(
        0xf0 | (code >> 18),
        0x80 | ((code >> 12) & 0x3f),
        0x80 | ((code >> 6) & 0x3f),
        0x80 | (code & 0x3f),
      );
    }
  }
  return Uint8Array.from(bytes);
}

// SHA-256 (FIPS 180-4): the first 32 bits of the fractional parts of the cube roots of the first
// 64 primes, and of the square roots of the first 8 for the initial hash.
const K = Uint32Array.of(
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
);
const INITIAL_HASH = Uint32Array.of(
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
);

/** The SHA-256 digest (32 bytes) of a message. */
export function sha256(message: Uint8Array): Uint8Array {
  // The message, 0x80, zeros, and its length in bits as 64-bit big-endian: whole 64-byte blocks.
  const padded = new Uint8Array(Math.ceil((message.length + 9) / 64) * 64);
  padded.set(message);
  padded[message.length] = 0x80;
  const view = new DataView(padded.buffer);
  const bits = message.length * 8;
  view.setUint32(padded.length - 8, Math.floor(bits / 2 ** 32));
  view.setUint32(padded.length - 4, bits >>> 0);

  const hash = INITIAL_HASH.slice();
  const w = new Uint32Array(64);
  for (let block = 0; block < padded.length; block += 64) {
    for (let t = 0; t < 16; t++) {
      w[t] = view.getUint32(block + 4 * t);
    }
    for (let t = 16; t < 64; t++) {
      const x = w[t - 15]!;
      const y = w[t - 2]!;
      const s0 = rotr(x, 7) ^ rotr(x, 18) ^ (x >>> 3);
      const s1 = rotr(y, 17) ^ rotr(y, 19) ^ (y >>> 10);
      w[t] = w[t - 16]! + s0 + w[t - 7]! + s1; // Uint32Array stores it modulo 2^32
    }
    let [a, b, c, d, e, f, g, h] = hash as unknown as [
      number, number, number, number, number, number, number, number,
    ];
    for (let t = 0; t < 64; t++) {
      const choice = (e & f) ^ (~e & g);
      const t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + choice + K[t]! + w[t]!;
      const t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    [a, b, c, d, e, f, g, h].forEach((value, i) => {
      hash[i] = hash[i]! + value;
    });
  }
  const digest = new Uint8Array(32);
  const out = new DataView(digest.buffer);
  hash.forEach((value, i) => out.setUint32(4 * i, value));
  return digest;
}

function rotr(x: number, n: number): number {
  return (x >>> n) | (x << (32 - n));
}

function word(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset + offset, 4).getUint32(0);
}
