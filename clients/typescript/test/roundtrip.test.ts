// The TypeScript client against the real service: every RPC over gRPC (connect-node), then the
// same operations over REST through Envoy with the generated JSON schemas. Driven by
// tests/e2e/test_typescript_client.py, which starts the server and Envoy over a migrated
// SQLite database with a fresh demo world and passes their addresses in the environment.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, fromJson, toJson } from "@bufbuild/protobuf";
import { timestampFromDate, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ExperimentSchema,
  ListExperimentsResponseSchema,
  type Experiment,
} from "../src/gen/experiments/v5/experiments_pb.js";
import { BadRequestSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { grpcClient, RestClient, RestError } from "../src/client.js";
import { env } from "./live.js";

const key = env("EXPERIMENTS_KEY");
const org = env("EXPERIMENTS_ORG");
const goalId = env("EXPERIMENTS_GOAL");
const roomIds = env("EXPERIMENTS_ROOMS").split(",");
const grpc = grpcClient(env("EXPERIMENTS_GRPC_URL"), key);
const rest = new RestClient(env("EXPERIMENTS_REST_URL"), key);

/** A valid published experiment starting in the future. */
function published(name: string): Experiment {
  return create(ExperimentSchema, {
    isDraft: false,
    name,
    goalId,
    roomIds,
    groupResetInterval: "1w",
    startsAt: timestampFromDate(new Date("2099-05-08T13:02:35.123Z")),
    groups: [
      {
        name: "A",
        percentage: 90,
        groupType: fromJson(ValueSchema, "control"),
        treatment: { name: "Rule-A", actions: [], conditions: [], priority: 3 },
      },
      { name: "B", percentage: 10, groupType: fromJson(ValueSchema, null) },
    ],
  });
}

describe("gRPC (connect-node, gRPC protocol over HTTP/2)", () => {
  test("create, get, list with paging, update, delete", async () => {
    const created = await grpc.createExperiment({
      organizationId: org,
      experiment: published("TS gRPC 1"),
    });
    assert.match(created.id, /^[0-9a-f-]{36}$/);
    assert.equal(created.name, "TS gRPC 1");
    assert.equal(created.groups.length, 2);
    assert.deepEqual(created.groups[0]?.treatment, {
      name: "Rule-A",
      actions: [],
      conditions: [],
      priority: 3,
    });
    assert.equal(created.groups[1]?.groupType?.kind.case, "nullValue");

    const fetched = await grpc.getExperiment({ organizationId: org, experimentId: created.id });
    assert.equal(fetched.id, created.id);
    assert.equal(fetched.goal?.id, goalId);

    const more = [];
    for (const name of ["TS gRPC 2", "TS gRPC 3"]) {
      more.push(await grpc.createExperiment({ organizationId: org, experiment: published(name) }));
    }
    const seen: string[] = [];
    let cursor = "";
    let pages = 0;
    do {
      const page = await grpc.listExperiments({ organizationId: org, pageSize: 2, cursor });
      assert.ok(page.results.length <= 2);
      seen.push(...page.results.map((e) => e.id));
      cursor = page.nextCursor;
      pages += 1;
    } while (cursor !== "");
    assert.ok(pages >= 2, "three experiments at two per page take at least two pages");
    assert.equal(new Set(seen).size, seen.length, "no experiment is listed twice");
    for (const experiment of [created, ...more]) assert.ok(seen.includes(experiment.id));

    const changed = create(ExperimentSchema, { ...fetched, name: "TS gRPC renamed" });
    const updated = await grpc.updateExperiment({
      organizationId: org,
      experimentId: created.id,
      experiment: changed,
    });
    assert.equal(updated.name, "TS gRPC renamed");
    assert.equal(updated.groupResetInterval, "1w");

    await grpc.deleteExperiment({ organizationId: org, experimentId: created.id });
    await assert.rejects(
      grpc.getExperiment({ organizationId: org, experimentId: created.id }),
      (error: unknown) => ConnectError.from(error).code === Code.NotFound,
    );
  });

  test("an invalid create is refused with BadRequest field violations", async () => {
    const invalid = published("TS gRPC invalid");
    invalid.groups[1]!.percentage = 101;
    invalid.groupResetInterval = "2w";
    try {
      await grpc.createExperiment({ organizationId: org, experiment: invalid });
      assert.fail("the invalid experiment was created");
    } catch (error) {
      const connectError = ConnectError.from(error);
      assert.equal(connectError.code, Code.InvalidArgument);
      const fields = connectError
        .findDetails(BadRequestSchema)
        .flatMap((badRequest) => badRequest.fieldViolations.map((v) => v.field));
      assert.ok(fields.includes("groups[1].percentage"), `violations: ${fields.join(", ")}`);
      assert.ok(fields.includes("group_reset_interval"), `violations: ${fields.join(", ")}`);
    }
  });
});

describe("REST through Envoy (generated JSON schemas)", () => {
  const collection = `/api/v5/orgs/${org}/experiments`;

  test("create, get, list with paging, update, delete", async () => {
    const body = toJson(ExperimentSchema, published("TS REST 1"));
    // The generated JSON uses the contract's snake_case names, as the documented API does.
    assert.ok(typeof body === "object" && body !== null && "is_draft" in body);
    const created = await rest.call("POST", collection, ExperimentSchema, body);
    assert.ok(created);
    assert.equal(created.name, "TS REST 1");
    assert.deepEqual(created.groups[0]?.treatment?.["priority"], 3);

    const fetched = await rest.call("GET", `${collection}/${created.id}`, ExperimentSchema);
    assert.equal(fetched?.id, created.id);

    await rest.call("POST", collection, ExperimentSchema, toJson(ExperimentSchema, published("TS REST 2")));
    const first = await rest.call("GET", `${collection}?page_size=1`, ListExperimentsResponseSchema);
    assert.equal(first?.results.length, 1);
    assert.notEqual(first?.nextCursor, "");
    assert.match(first?.next ?? "", /cursor=/);
    const second = await rest.call(
      "GET",
      `${collection}?page_size=1&cursor=${encodeURIComponent(first?.nextCursor ?? "")}`,
      ListExperimentsResponseSchema,
    );
    assert.equal(second?.results.length, 1);
    assert.notEqual(second?.results[0]?.id, first?.results[0]?.id);

    const changed = toJson(ExperimentSchema, create(ExperimentSchema, { ...created, name: "TS REST renamed" }));
    const updated = await rest.call("PUT", `${collection}/${created.id}`, ExperimentSchema, changed);
    assert.equal(updated?.name, "TS REST renamed");

    assert.equal(await rest.call("DELETE", `${collection}/${created.id}`, null), null);
    await assert.rejects(
      rest.call("GET", `${collection}/${created.id}`, ExperimentSchema),
      (error: unknown) => error instanceof RestError && error.httpStatus === 404,
    );
  });

  test("an invalid create is HTTP 400 with BadRequest field violations", async () => {
    const invalid = published("TS REST invalid");
    invalid.groups[0]!.percentage = 101;
    await assert.rejects(
      rest.call("POST", collection, ExperimentSchema, toJson(ExperimentSchema, invalid)),
      (error: unknown) => {
        assert.ok(error instanceof RestError);
        assert.equal(error.httpStatus, 400);
        assert.equal(error.status.code, Code.InvalidArgument);
        const fields = error.badRequests.flatMap((b) => b.fieldViolations.map((v) => v.field));
        assert.ok(fields.includes("groups[0].percentage"), `violations: ${fields.join(", ")}`);
        return true;
      },
    );
  });
});
