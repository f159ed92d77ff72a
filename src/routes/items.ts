import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { type Static, Type } from 'typebox';
import { type Actor, decodeCursor, encodeCursor, ItemRepository, type WriteOutcome } from '../db/items.js';
import { inTransaction } from '../db/transaction.js';
import { sendProblem } from '../plugins/errors.js';
import {
  BODY_PROBLEMS,
  COMMON_PROBLEMS,
  problem,
  problemResponses,
  UNAUTHORIZED,
} from '../plugins/problem.js';
import { withDefault } from '../plugins/with-default.js';
import { itemCreated } from '../tasks/definitions/items.js';
import { recordTask } from '../tasks/outbox.js';

const Name = Type.String({ minLength: 1, maxLength: 200, description: '1-200 characters' });
const Description = Type.Union([Type.String({ maxLength: 10_000 }), Type.Null()]);
export const Item = Type.Object(
  {
    id: Type.Integer({ minimum: 1 }),
    ownerId: Type.Union([Type.String(), Type.Null()], {
      description: 'The user who created it: only this user or an admin may change or delete it',
    }),
    name: Type.String(),
    description: Type.Union([Type.String(), Type.Null()]),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
  },
  { $id: 'Item', description: 'An item' },
);
/** What POST /api/items answers: the item, and the task that committed with it (the outbox). */
export const CreatedItem = Type.Object(
  {
    ...Item.properties,
    taskId: Type.Union([Type.String(), Type.Null()], {
      description:
        'Its items.created task (GET /api/tasks/{taskId}: pending until relayed to the queue); null when background tasks are off',
    }),
  },
  { $id: 'CreatedItem', description: 'The created item and its task' },
);
/** The stored Item schema, by reference, with what this response means. */
const itemResponse = (description: string) =>
  Type.Unsafe<Static<typeof Item>>({ $ref: 'Item#', description });
const ItemParams = Type.Object({ id: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }) });
const CreateItem = Type.Object(
  { name: Name, description: Type.Optional(Description) },
  { additionalProperties: false },
);
const PatchItem = Type.Object(
  { name: Type.Optional(Name), description: Type.Optional(Description) },
  { additionalProperties: false, minProperties: 1 },
);
const ListQuery = Type.Object({
  limit: withDefault(Type.Integer({ minimum: 1, maximum: 100, description: 'Page size (1-100)' }), 20),
  cursor: Type.Optional(Type.String({ maxLength: 200, description: 'nextCursor of the previous page' })),
});
const ItemPage = Type.Object(
  {
    items: Type.Array(Type.Unsafe<Static<typeof Item>>({ $ref: 'Item#' })),
    nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'null on the last page' }),
  },
  { description: 'One page of items, oldest first' },
);

const NO_ITEM = 'No item with this id';
// 403, not 404: items are public to read, so hiding one from a non-owner would hide nothing.
const NOT_YOURS = 'The item belongs to another user; only its owner or an admin may change it';
const readErrors = problemResponses({ ...COMMON_PROBLEMS, 404: NO_ITEM });
const writeErrors = problemResponses({
  ...COMMON_PROBLEMS,
  ...BODY_PROBLEMS,
  401: UNAUTHORIZED,
  403: NOT_YOURS,
  404: NO_ITEM,
});

/** The signed-in user (`authenticate` ran first: a route without it has no actor). */
function actorOf(principal: Actor | undefined): Actor {
  if (!principal) throw new Error('item write without authenticate');
  return principal;
}

const cacheKey = (id: number) => `item:${id}`;

export const itemRoutes: FastifyPluginAsyncTypebox<{ cacheTtl: number }> = async (app, { cacheTtl }) => {
  const items = new ItemRepository(app.db);
  const notFound = (id: number) => problem(404, `Item ${id} does not exist`);
  const refused = (outcome: WriteOutcome<unknown>, id: number) =>
    outcome.kind === 'forbidden'
      ? problem(403, `Item ${id} belongs to another user; only its owner or an admin may change it`)
      : notFound(id);

  app.post(
    '/api/items',
    {
      onRequest: app.authenticate,
      schema: {
        tags: ['items'],
        operationId: 'createItem',
        summary: 'Create an item',
        description:
          'Stores a new item owned by the signed-in user; the Location header is its URL. With background ' +
          'tasks on, its items.created task commits in the same transaction (outbox) and taskId names it.',
        body: CreateItem,
        response: {
          201: Type.Unsafe<Static<typeof CreatedItem>>({
            $ref: 'CreatedItem#',
            description: 'The created item',
          }),
          ...problemResponses({ ...COMMON_PROBLEMS, ...BODY_PROBLEMS, 401: UNAUTHORIZED }),
        },
      },
    },
    async (request, reply) => {
      const owner = actorOf(request.principal).userId;
      const { name, description = null } = request.body;
      // Background tasks on: the item and its task commit together or not at all (the outbox).
      const created = app.tasks
        ? await inTransaction(app.db, async (client) => {
            const item = await items.create(owner, name, description, client);
            return { ...item, taskId: await recordTask(client, itemCreated, { itemId: item.id, name }) };
          })
        : { ...(await items.create(owner, name, description)), taskId: null };
      return reply.code(201).header('location', `/api/items/${created.id}`).send(created);
    },
  );

  app.get(
    '/api/items',
    {
      schema: {
        tags: ['items'],
        operationId: 'listItems',
        security: [],
        summary: 'List items',
        description: 'Cursor pagination: pass nextCursor back as cursor until it is null.',
        querystring: ListQuery,
        response: { 200: ItemPage, ...problemResponses(COMMON_PROBLEMS) },
      },
    },
    async (request, reply) => {
      const { limit, cursor } = request.query;
      const afterId = cursor === undefined ? 0 : decodeCursor(cursor);
      if (afterId === undefined) {
        return sendProblem(
          reply,
          request,
          problem(400, 'cursor is not one this service issued', {
            errors: [{ field: 'cursor', message: 'is invalid', in: 'querystring' }],
          }),
        );
      }
      const page = await items.list(limit, afterId);
      const last = page.items.at(-1);
      return { items: page.items, nextCursor: page.hasMore && last ? encodeCursor(last.id) : null };
    },
  );

  app.get(
    '/api/items/:id',
    {
      schema: {
        tags: ['items'],
        operationId: 'getItem',
        security: [],
        summary: 'Get an item',
        description: 'Served from the shared cache when warm (Redis, when one is configured).',
        params: ItemParams,
        response: { 200: itemResponse('The item'), ...readErrors },
      },
    },
    async (request, reply) => {
      // Shared cache (Redis when configured, else none): every process sees the same entry and its invalidation.
      const item = await app.cache.getOrLoad(cacheKey(request.params.id), cacheTtl, () =>
        items.get(request.params.id),
      );
      return item ?? sendProblem(reply, request, notFound(request.params.id));
    },
  );

  app.patch(
    '/api/items/:id',
    {
      onRequest: app.authenticate,
      schema: {
        tags: ['items'],
        operationId: 'updateItem',
        summary: 'Update an item',
        description:
          'Changes the fields sent (at least one); description null clears it. Only the owner or an admin.',
        params: ItemParams,
        body: PatchItem,
        response: { 200: itemResponse('The updated item'), ...writeErrors },
      },
    },
    async (request, reply) => {
      const outcome = await items.update(request.params.id, request.body, actorOf(request.principal));
      if (outcome.kind !== 'done') return sendProblem(reply, request, refused(outcome, request.params.id));
      await app.cache.invalidate(cacheKey(request.params.id));
      return outcome.value;
    },
  );

  app.delete(
    '/api/items/:id',
    {
      onRequest: app.authenticate,
      schema: {
        tags: ['items'],
        operationId: 'deleteItem',
        summary: 'Delete an item',
        description: 'Removes the item and its cache entry. Only the owner or an admin.',
        params: ItemParams,
        response: {
          204: Type.Null({ description: 'Deleted' }),
          ...readErrors,
          ...problemResponses({ 401: UNAUTHORIZED, 403: NOT_YOURS }),
        },
      },
    },
    async (request, reply) => {
      const outcome = await items.delete(request.params.id, actorOf(request.principal));
      if (outcome.kind !== 'done') return sendProblem(reply, request, refused(outcome, request.params.id));
      await app.cache.invalidate(cacheKey(request.params.id));
      return reply.code(204).send(null);
    },
  );
};
