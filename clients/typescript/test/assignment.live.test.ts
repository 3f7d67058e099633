// Visitor assignment as a browser front end does it: fetch the organization's experiments over
// REST, assign locally with src/assignment.ts, and agree with the live server's AssignVisitor,
// over gRPC and over REST. Driven by tests/e2e/test_typescript_client.py (`npm test`), with the
// environment roundtrip.test.ts gets; its experiments (starting in 2099) never apply at the
// times asked here, so the two files may run side by side.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create, fromJson } from "@bufbuild/protobuf";
import { timestampFromDate, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  AssignVisitorResponseSchema,
  ExperimentSchema,
  ListExperimentsResponseSchema,
  type Experiment,
} from "../src/gen/experiments/v5/experiments_pb.js";
import { grpcClient, RestClient } from "../src/client.js";
import {
  assign,
  microsFromRfc3339,
  microsFromTimestamp,
  type AssignableExperiment,
  type ResetInterval,
} from "../src/assignment.js";
import { env } from "./live.js";

const key = env("EXPERIMENTS_KEY");
const org = env("EXPERIMENTS_ORG");
const goalId = env("EXPERIMENTS_GOAL");
const roomIds = env("EXPERIMENTS_ROOMS").split(",");
const grpc = grpcClient(env("EXPERIMENTS_GRPC_URL"), key);
const rest = new RestClient(env("EXPERIMENTS_REST_URL"), key);

// The times asked, around the experiments' starts, ends and period boundaries.
const TIMES = [
  "2020-01-01T03:17:00Z",
  "2021-06-01T12:00:00.250000Z",
  "2021-06-02T12:00:00.249999Z",
  "2021-06-02T12:00:00.250000Z",
  "2029-12-31T23:59:59.999999Z",
  "2030-01-01T00:00:00Z",
  "2045-03-14T15:09:26.535897Z",
  "2079-12-31T23:59:59.999999Z",
];
const VISITORS = ["visitor-1", "Zoë", "Zoe\u0308", "🙂 emoji", "ünïcödé:with:colons", "日本語"];

function experiment(
  name: string,
  interval: ResetInterval,
  startsAt: string,
  endsAt: string | null,
  rooms: string[],
  percentages: number[],
): Experiment {
  return create(ExperimentSchema, {
    isDraft: false,
    name,
    goalId,
    roomIds: rooms,
    groupResetInterval: interval,
    startsAt: timestampFromDate(new Date(startsAt)),
    endsAt: endsAt === null ? undefined : timestampFromDate(new Date(endsAt)),
    groups: percentages.map((percentage, index) => ({
      name: `G${index}`,
      percentage,
      groupType: fromJson(ValueSchema, index === 0 ? "control" : null),
    })),
  });
}

/** What a front end reads of a fetched experiment to assign locally. */
function assignable(fetched: Experiment): AssignableExperiment {
  return {
    id: fetched.id,
    isDraft: fetched.isDraft ?? true,
    startsAt: fetched.startsAt ? microsFromTimestamp(fetched.startsAt) : null,
    endsAt: fetched.endsAt ? microsFromTimestamp(fetched.endsAt) : null,
    roomIds: fetched.roomIds,
    groupResetInterval: (fetched.groupResetInterval ?? "full") as ResetInterval,
    ranges: fetched.groups.map((group) => group.buckets.map(({ start, end }) => ({ start, end }))),
  };
}

interface Answer {
  experimentId: string;
  groupId: string;
  bucket: number;
  period: number;
  validUntil: bigint | null;
}

function sorted(answers: Answer[]): Answer[] {
  return answers.sort((a, b) => a.experimentId.localeCompare(b.experimentId));
}

test("assignments computed from fetched experiments agree with the server's", async () => {
  const [room] = roomIds as [string];
  const made = [
    experiment("Live full", "full", "2020-01-01T03:17:00Z", null, [], [50, 30, 20]),
    experiment("Live daily", "1d", "2021-06-01T12:00:00.25Z", "2080-01-01T00:00:00Z", [room], [25, 75]),
    experiment("Live weekly", "1w", "2020-01-01T03:17:00Z", null, [], [25, 25, 25, 25]),
    experiment("Live ends", "1d", "2021-06-01T12:00:00.25Z", "2030-01-01T00:00:00Z", [], [10, 90]),
  ];
  const created = [];
  for (const one of made) {
    created.push(await grpc.createExperiment({ organizationId: org, experiment: one }));
  }
  // Re-weighted after its creation: its ranges are no longer consecutive.
  const reweighted = create(ExperimentSchema, { ...created[0]! });
  reweighted.groups.forEach((group, index) => (group.percentage = [40, 30, 30][index]));
  await grpc.updateExperiment({ organizationId: org, experimentId: reweighted.id, experiment: reweighted });

  // The front end's fetch: every experiment of the organization, as REST lists them.
  const fetched: Experiment[] = [];
  let cursor = "";
  do {
    const query = new URLSearchParams({ page_size: "100", cursor });
    const page = await rest.call(
      "GET",
      `/api/v5/orgs/${org}/experiments?${query}`,
      ListExperimentsResponseSchema,
    );
    fetched.push(...(page?.results ?? []));
    cursor = page?.nextCursor ?? "";
  } while (cursor !== "");
  const experiments = fetched.map(assignable);
  const byId = new Map(fetched.map((one) => [one.id, one]));
  assert.ok(
    experiments.some((one) => one.ranges.some((group) => group.length > 1)),
    "fragmented ranges are tried",
  );

  let calls = 0;
  let assigned = 0;
  for (const at of TIMES) {
    for (const visitorId of VISITORS) {
      for (const roomId of [null, room]) {
        const moment = microsFromRfc3339(at);
        const local: Answer[] = [];
        for (const one of experiments) {
          const found = assign(one, visitorId, roomId, moment);
          if (found === null) continue;
          local.push({
            experimentId: one.id,
            groupId: byId.get(one.id)!.groups[found.groupIndex]!.id,
            bucket: found.bucket,
            period: found.period,
            validUntil: found.validUntil,
          });
        }

        const overGrpc = await grpc.assignVisitor({
          organizationId: org,
          visitorId,
          roomId: roomId ?? "",
          at: { seconds: moment / 1_000_000n, nanos: Number(moment % 1_000_000n) * 1000 },
        });
        const query = new URLSearchParams({ visitor_id: visitorId, at });
        if (roomId !== null) query.set("room_id", roomId);
        const overRest = await rest.call(
          "GET",
          `/api/v5/orgs/${org}/assignments?${query}`,
          AssignVisitorResponseSchema,
        );
        for (const [transport, answer] of [["gRPC", overGrpc], ["REST", overRest]] as const) {
          const server: Answer[] = (answer?.assignments ?? []).map((one) => ({
            experimentId: one.experimentId,
            groupId: one.groupId,
            bucket: one.bucket,
            period: one.period,
            validUntil: one.validUntil ? microsFromTimestamp(one.validUntil) : null,
          }));
          assert.deepEqual(sorted(server), sorted([...local]), `${transport}: ${visitorId} ${roomId} ${at}`);
        }
        calls += 1;
        assigned += local.length;
      }
    }
  }
  assert.equal(calls, TIMES.length * VISITORS.length * 2);
  assert.ok(assigned > calls, `only ${assigned} assignments in ${calls} calls`);
});
