// A client of experiments.v5.ExperimentService: gRPC through connect-node, and REST through the
// gateway using the generated messages' JSON schemas. Everything here comes from src/gen/
// (generated from the protos) and the pinned @bufbuild / @connectrpc libraries.
import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type Interceptor,
} from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  createRegistry,
  fromJson,
  toJson,
  type DescMessage,
  type JsonValue,
  type MessageShape,
} from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import {
  ExperimentService,
  type WatchExperimentChangesResponse,
} from "./gen/experiments/v5/experiments_pb.js";
import { BadRequestSchema, type BadRequest } from "./gen/google/rpc/error_details_pb.js";
import { StatusSchema, type Status } from "./gen/google/rpc/status_pb.js";

/** Sends `authorization: Token <key>` with every call, as the service requires. */
function tokenAuth(key: string): Interceptor {
  return (next) => async (request) => {
    request.header.set("authorization", `Token ${key}`);
    return next(request);
  };
}

/** A typed gRPC client: `baseUrl` is the server's address, e.g. http://127.0.0.1:50051. */
export function grpcClient(baseUrl: string, key: string): Client<typeof ExperimentService> {
  // The gRPC protocol always runs over HTTP/2 (prior knowledge for http:// URLs).
  const transport = createGrpcTransport({
    baseUrl,
    interceptors: [tokenAuth(key)],
  });
  return createClient(ExperimentService, transport);
}

/** How watchChanges resumes, and what it reports. */
export interface WatchOptions {
  /** The position to start after (a cursor received before); empty or unset: now. */
  after?: string;
  /** Ends the watch: the generator returns (no error) once it is aborted. */
  signal?: AbortSignal;
  /** The delay before the nth resume in a row (n from 1): 100 ms doubling up to 5 s by default,
   * with jitter; back to the first delay once a message arrives. */
  delayMs?: (attempt: number) => number;
  /** Called before each resume with the error (or null: the stream ended) that ended the last
   * stream, and the cursor it resumes after. */
  onResume?: (error: ConnectError | null, after: string) => void;
}

/** The codes a watch is resumed after: the connection dropped or was reset (connect-node
 * reports a cut HTTP/2 connection as CANCELED, "http/2 stream closed with error code CANCEL",
 * unless the watch's own signal was aborted; or as UNAVAILABLE, ABORTED, INTERNAL or UNKNOWN),
 * the server is stopping (UNAVAILABLE) or holds as many streams as it allows
 * (RESOURCE_EXHAUSTED). Any other code (INVALID_ARGUMENT; OUT_OF_RANGE: list the experiments
 * again; UNAUTHENTICATED, PERMISSION_DENIED) ends the watch: resuming would only repeat it. */
const RESUMABLE = new Set<Code>([
  Code.Canceled,
  Code.Unavailable,
  Code.Aborted,
  Code.Internal,
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
]);

function defaultDelayMs(attempt: number): number {
  const ceiling = Math.min(5000, 100 * 2 ** (attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Follows an organization's changes over gRPC (WatchExperimentChanges), resuming after a
 * disconnect: every message is yielded (the heartbeats too, so a consumer can save its
 * position), and when the stream ends, as a watch only does when its connection or server goes
 * away, the watch is opened again with `after` set to the last cursor received. The service
 * then delivers every change committed after it exactly once: none missed, none repeated
 * (README, "History, the change feed and watches"). Each (re)opened stream starts with a
 * heartbeat. Errors that resuming cannot cure are thrown.
 */
export async function* watchChanges(
  client: Client<typeof ExperimentService>,
  organizationId: string,
  options: WatchOptions = {},
): AsyncGenerator<WatchExperimentChangesResponse> {
  const { signal, delayMs = defaultDelayMs, onResume } = options;
  let after = options.after ?? "";
  let attempt = 0;
  while (!signal?.aborted) {
    let ended: ConnectError | null = null;
    try {
      const stream = client.watchExperimentChanges({ organizationId, after }, { signal });
      for await (const message of stream) {
        attempt = 0;
        const event = message.event;
        if (event.case === "change" || event.case === "heartbeat") after = event.value.cursor;
        yield message;
      }
    } catch (error) {
      if (signal?.aborted) return;
      ended = ConnectError.from(error);
      if (!RESUMABLE.has(ended.code)) throw ended;
    }
    attempt += 1;
    onResume?.(ended, after);
    await sleep(delayMs(attempt), signal);
  }
}

/** A REST error: the gateway's JSON google.rpc.Status, with its BadRequest details decoded. */
export class RestError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly status: Status,
    readonly badRequests: BadRequest[],
  ) {
    super(`HTTP ${httpStatus}: ${status.message}`);
  }
}

const errorRegistry = createRegistry(BadRequestSchema);

/** REST through the Envoy gateway; bodies are the generated messages' canonical JSON. */
export class RestClient {
  constructor(
    private readonly baseUrl: string,
    private readonly key: string,
  ) {}

  async call<Desc extends DescMessage>(
    method: string,
    path: string,
    responseSchema: Desc | null,
    body?: JsonValue,
  ): Promise<MessageShape<Desc> | null> {
    const headers: Record<string, string> = { authorization: `Token ${this.key}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(this.baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) {
      const status = fromJson(StatusSchema, JSON.parse(text) as JsonValue, {
        registry: errorRegistry,
      });
      const badRequests = status.details.flatMap((detail) => {
        const unpacked = anyUnpack(detail, BadRequestSchema);
        return unpacked === undefined ? [] : [unpacked];
      });
      throw new RestError(response.status, status, badRequests);
    }
    if (responseSchema === null) return null;
    // Output-only attributes the client does not know yet are ignored, not fatal.
    return fromJson(responseSchema, JSON.parse(text) as JsonValue, { ignoreUnknownFields: true });
  }
}

export { toJson };
