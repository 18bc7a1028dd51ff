/**
 * `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of the server API, generated from the
 * route table (api/routes.ts) and the zod schemas that validate the requests (api/schemas.ts)
 * with z.toJSONSchema (JSON Schema 2020-12, the dialect of OpenAPI 3.1). Nothing here restates
 * a schema by hand.
 */
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '../protocol/errors.ts';
import { ROUTES, type RouteSpec } from './routes.ts';
import { answers, pathParams, requests } from './schemas.ts';

/** HTTP status of each error code (docs/api.md, Access). */
export const STATUS_OF: Record<ErrorCode, number> = {
  bad_request: 400, unauthorized: 401, forbidden: 403, not_found: 404, conflict: 409,
  too_large: 413, rate_limited: 429, internal: 500, unavailable: 503,
};

type Json = Record<string, unknown>;

const ref = (id: string): Json => ({ $ref: `#/components/schemas/${id}` });

/** A component schema without the keywords that only make sense in a standalone document. */
function clean(schema: Json): Json {
  const { $schema: _s, $id: _i, ...rest } = schema;
  return rest;
}

function inline(schema: z.ZodType, io: 'input' | 'output'): Json {
  return clean(z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Json);
}

function idOf(registry: typeof requests, schema: z.ZodType): string {
  const id = registry.get(schema)?.id;
  if (!id) throw new Error('api/openapi: a route uses a schema that is not registered in api/schemas.ts');
  return id;
}

function errorResponse(code: ErrorCode): Json {
  return { description: code, content: { 'application/json': { schema: ref('Error') } } };
}

function operation(r: RouteSpec): Json {
  const parameters: Json[] = [];
  for (const m of r.path.matchAll(/\{(\w+)\}/g)) {
    const name = m[1] as keyof typeof pathParams;
    parameters.push({ name, in: 'path', required: true, description: 'URL-encoded (dm:alice:bob is dm%3Aalice%3Abob).', schema: inline(pathParams[name], 'input') });
  }
  if (r.query) {
    for (const [name, schema] of Object.entries(r.query.shape)) {
      const js = inline(schema as z.ZodType, 'input');
      const { description, ...rest } = js;
      parameters.push({ name, in: 'query', required: false, ...(description ? { description } : {}), schema: rest });
    }
  }
  const responses: Json = {
    200: { description: 'OK', content: { 'application/json': { schema: ref(idOf(answers, r.answer)) } } },
  };
  const codes = new Set<ErrorCode>([...r.errors, 'unauthorized', 'internal', 'unavailable']);
  for (const code of ERROR_CODES) if (codes.has(code)) responses[String(STATUS_OF[code])] = errorResponse(code);
  return {
    operationId: r.id,
    summary: r.summary,
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: ref(idOf(requests, r.body)) } } } } : {}),
    responses,
  };
}

/** Builds the document (once per node; it never changes while the node runs). */
export function openApiDocument(version: string): Json {
  const paths: Record<string, Json> = {};
  for (const r of ROUTES as readonly RouteSpec[]) (paths[r.path] ??= {})[r.method.toLowerCase()] = operation(r);
  paths['/api/v1/openapi.json'] = {
    get: {
      operationId: 'getOpenApi', summary: 'This document.',
      responses: { 200: { description: 'OpenAPI 3.1 document', content: { 'application/json': { schema: { type: 'object' } } } }, 401: errorResponse('unauthorized') },
    },
  };
  const schemas: Json = {};
  for (const [registry, io] of [[requests, 'input'], [answers, 'output']] as const) {
    const out = z.toJSONSchema(registry, { io, unrepresentable: 'any', uri: (id) => `#/components/schemas/${id}` }) as { schemas: Record<string, Json> };
    for (const [id, js] of Object.entries(out.schemas)) schemas[id] = clean(js);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'actor-im server API',
      version,
      description: 'How an application backend works with the chat cluster (docs/api.md). Errors are the HTTP status plus {"error":{"code","message"}}.',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths,
    components: { schemas, securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'One of IM_API_KEYS.' } } },
  };
}
