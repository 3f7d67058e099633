// A client of experiments.v5.ExperimentService: gRPC through connect-node, and REST through the
// gateway using the generated messages' JSON schemas. Everything here comes from src/gen/
// (generated from the protos) and the pinned @bufbuild / @connectrpc libraries.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
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
import { ExperimentService } from "./gen/experiments/v5/experiments_pb.js";
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
