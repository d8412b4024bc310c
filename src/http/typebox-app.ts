import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

/**
 * A Fastify instance whose routes take their types from TypeBox schemas. Annotating an inline
 * plugin's parameter with it (`app.register(async (read: TypeboxApp) => …)`) keeps the type
 * provider inside encapsulated contexts, which Fastify's types would otherwise drop.
 */
export type TypeboxApp = Parameters<FastifyPluginAsyncTypebox>[0];
