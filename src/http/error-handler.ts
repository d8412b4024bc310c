import { Type } from '@fastify/type-provider-typebox';
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifySchemaValidationError,
} from 'fastify';
import { isNarhubError, NarhubError, type ErrorCode } from '../errors.js';

/** The one place error codes become HTTP statuses. Adding a code without a status fails to compile. */
const STATUS = {
  BAD_REQUEST: 400,
  BODY_TOO_LARGE: 413,
  RANGE_NOT_SATISFIABLE: 416,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  STORE_PATH_INVALID: 400,
  HASH_INVALID: 400,
  NARINFO_PARSE_ERROR: 400,
  NARINFO_INVALID: 400,
  NAR_INVALID: 400,
  NAR_HASH_MISMATCH: 400,
  NAR_SIZE_MISMATCH: 400,
  FILE_HASH_MISMATCH: 400,
  FILE_SIZE_MISMATCH: 400,
  COMPRESSION_UNSUPPORTED: 415,
  COMPRESSION_MISMATCH: 400,
  KEY_INVALID: 400,
  SIGNATURE_INVALID: 400,
  SIGNATURE_REFUSED: 400,
  CACHE_NOT_FOUND: 404,
  CACHE_EXISTS: 409,
  CACHE_NAME_INVALID: 400,
  NAR_NOT_UPLOADED: 400,
  REFERENCE_MISSING: 400,
  PATH_CONTENT_CONFLICT: 409,
  CONTENT_ADDRESS_MISMATCH: 400,
  TOKEN_NOT_FOUND: 404,
  PIN_EXISTS: 409,
  KEY_REWRITE_PENDING: 409,
  UPSTREAM_NOT_FOUND: 404,
  UPSTREAM_DECLARED: 409,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  RATE_LIMITED: 429,
  CONFIG_INVALID: 500,
  STORAGE_ERROR: 503,
  UNAVAILABLE: 503,
  UPSTREAM_FAILED: 502,
  INTERNAL: 500,
} as const satisfies Record<ErrorCode, number>;

/** What every refusal under `/api/` answers (the Nix protocol's routes answer `CODE: reason` as text). */
export const ErrorBody = Type.Object({
  code: Type.String({ description: 'A stable error code, e.g. NAR_INVALID.' }),
  message: Type.String({ description: 'One line saying why.' }),
});

const shed = new WeakSet<Error>();

/** The refusal of a request shed for load: 503 like any UNAVAILABLE, but logged as a warning. */
export function loadShedError(message: string): NarhubError {
  const err = new NarhubError('UNAVAILABLE', message);
  shed.add(err);
  return err;
}

/** Fastify's own client errors that reach us, mapped to our codes. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_VALIDATION: 'BAD_REQUEST',
};

/**
 * A schema's refusal as one line naming the first offending value: `body.storePaths[1]: Expected
 * string` (the `schemaErrorFormatter` of `http/app.ts`).
 */
export function validationError(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const first = errors[0];
  const where = (first?.instancePath ?? '')
    .split('/')
    .filter((s) => s !== '')
    .map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s.replaceAll('~1', '/').replaceAll('~0', '~')}`))
    .join('');
  return new NarhubError('BAD_REQUEST', `${dataVar}${where}: ${first?.message ?? 'invalid'}`);
}

function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  const oneLine = message.split('\n')[0]!.slice(0, 500);
  if (status === 401) reply.header('www-authenticate', 'Basic realm="narhub"');
  reply.code(status).header('cache-control', 'no-store').header('x-narhub-error', code);
  // narhub's own JSON API answers in JSON; the Nix protocol routes in plain text.
  if (reply.request.url.startsWith('/api/'))
    return reply.type('application/json; charset=utf-8').send(JSON.stringify({ code, message: oneLine }));
  return reply.type('text/plain; charset=utf-8').send(`${code}: ${oneLine}\n`);
}

/**
 * 4xx answers carry a stable code and a one-line reason; 5xx answers carry nothing internal
 * (no paths, SQL or storage messages), and are logged in full instead.
 */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) => {
    if (isNarhubError(err)) {
      const status = STATUS[err.code];
      // A refusal for now (a full line of xz decodes) says when to come back.
      const retryAfter = err.details?.retryAfter;
      if (typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter));
      if (status >= 500) {
        // Shedding load is the server working as meant, not failing.
        if (shed.has(err) || retryAfter !== undefined) request.log.warn({ reason: err.message }, 'request shed');
        else request.log.error({ err }, 'request failed');
        // A refusal that says when to come back was worded for the client; other 5xx say nothing inside.
        const reason =
          retryAfter !== undefined
            ? err.message
            : status === 503
              ? 'temporarily unavailable'
              : status === 502
                ? 'an upstream failed'
                : 'internal error';
        return sendError(reply, status, err.code, reason);
      }
      // A miss is routine (Nix asks for every path it might substitute), so only at debug.
      const level = err.code === 'NOT_FOUND' ? 'debug' : 'info';
      request.log[level]({ code: err.code, reason: err.message }, 'request rejected');
      return sendError(reply, status, err.code, err.message);
    }
    const fastifyCode = (err as FastifyError).code;
    const mapped = fastifyCode ? FASTIFY_CODES[fastifyCode] : undefined;
    const statusCode = (err as FastifyError).statusCode;
    if (mapped || (statusCode && statusCode >= 400 && statusCode < 500)) {
      const code = mapped ?? 'BAD_REQUEST';
      return sendError(reply, statusCode ?? STATUS[code], code, err.message);
    }
    request.log.error({ err }, 'request failed');
    return sendError(reply, 500, 'INTERNAL', 'internal error');
  });

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 404, 'NOT_FOUND', `no such resource ${request.url.split('?')[0]!.slice(0, 200)}`),
  );
}
