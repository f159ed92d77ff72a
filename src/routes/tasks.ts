import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import { sendProblem } from '../plugins/errors.js';
import {
  BODY_PROBLEMS,
  COMMON_PROBLEMS,
  problem,
  problemResponses,
  UNAUTHORIZED,
} from '../plugins/problem.js';
import { TASKS, tasksByName } from '../tasks/definitions/index.js';
import { parseTaskId, QUEUE_NAMES } from '../tasks/queues.js';
import type { TaskService } from '../tasks/service.js';

const TaskId = Type.String({
  pattern: `^(${QUEUE_NAMES.join('|')})\\.[A-Za-z0-9_-]{1,100}$`,
  description: 'Id returned by POST /api/tasks: <queue>.<job id>, e.g. default.42',
});
const Options = {
  delayMs: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 365 * 24 * 3600 * 1000,
      description: 'Run no sooner than this (ms)',
    }),
  ),
  // BullMQ refuses priorities above 2^21 - 1 (the fuzz test found 2^21 answering 500).
  priority: Type.Optional(Type.Integer({ minimum: 1, maximum: 2_097_151, description: '1 is the highest' })),
  idempotencyKey: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 200,
      description:
        'The Idempotency-Key header (preferred) as a body field, on the same store: a repeat answers the first id',
    }),
  ),
};
/**
 * One request schema per task, chosen by `name` (a discriminator): the document shows each task's
 * payload, and the generated client types it. Named after the task, so the discriminator's implicit
 * mapping (value = schema name) holds. Registered as shared schemas by app.ts.
 */
export const enqueueSchemas = TASKS.map((task) =>
  Type.Object(
    { name: Type.Literal(task.name), payload: task.payload, ...Options },
    { $id: task.name, additionalProperties: false, title: task.name, description: task.description },
  ),
);
type EnqueueRequest = Static<(typeof enqueueSchemas)[number]>;
const EnqueueBody = Type.Unsafe<EnqueueRequest>({
  type: 'object',
  oneOf: TASKS.map((task) => ({ $ref: `${task.name}#` })),
  discriminator: { propertyName: 'name' },
  description: `A task by name (${TASKS.map((task) => task.name).join(', ')}) and its payload`,
});
const knownNames = TASKS.map((task) => task.name).join(', ');
const Accepted = Type.Object({ id: Type.String({ description: 'Task id, e.g. cpu.17' }) });
const Status = Type.Object({
  id: Type.String(),
  name: Type.String(),
  state: Type.Union([
    // Committed in the outbox with its write (POST /api/items), not yet relayed to the queue.
    Type.Literal('pending'),
    Type.Literal('waiting'),
    Type.Literal('delayed'),
    Type.Literal('active'),
    Type.Literal('completed'),
    Type.Literal('failed'),
    Type.Literal('cancelled'),
  ]),
  progress: Type.Union([Type.Number(), Type.Object({}, { additionalProperties: true })]),
  attempts: Type.Integer(),
  result: Type.Unknown(),
  error: Type.Union([Type.String(), Type.Null()]),
  timestamps: Type.Object({
    createdAt: Type.Union([Type.String(), Type.Null()]),
    startedAt: Type.Union([Type.String(), Type.Null()]),
    finishedAt: Type.Union([Type.String(), Type.Null()]),
  }),
});
const DISABLED = 'Background tasks are disabled on this deployment';
const readErrors = problemResponses({
  ...COMMON_PROBLEMS,
  400: 'The id is not a task id (<queue>.<job id>)',
  404: `No such task (or it expired), or: ${DISABLED}`,
});

/**
 * The task API. With ENABLE_BACKGROUND_TASKS off the routes still exist (and stay in the OpenAPI
 * document) but answer 404 saying that background tasks are disabled.
 */
export const taskRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const service = (request: FastifyRequest, reply: FastifyReply): TaskService | undefined => {
    if (app.tasks) return app.tasks;
    void sendProblem(
      reply,
      request,
      problem(404, `${DISABLED} (set ENABLE_BACKGROUND_TASKS=true or LEVEL=4)`),
    );
    return undefined;
  };
  const badId = (request: FastifyRequest, reply: FastifyReply, id: string) =>
    sendProblem(
      reply,
      request,
      problem(400, `"${id}" is not a task id (expected <queue>.<job id>, e.g. default.42)`, {
        errors: [{ field: 'id', message: 'is malformed', in: 'params' }],
      }),
    );

  // Name the known tasks before the schema does (its discriminator only says "unknown").
  const unknownTask = async (request: FastifyRequest, reply: FastifyReply) => {
    const name = (request.body as { name?: unknown } | undefined)?.name;
    if (typeof name !== 'string' || tasksByName.has(name)) return;
    return sendProblem(
      reply,
      request,
      problem(400, `Unknown task "${name}"; known tasks: ${knownNames}`, {
        errors: [{ field: 'name', message: `must be one of: ${knownNames}`, in: 'body' }],
      }),
    );
  };

  app.post(
    '/api/tasks',
    {
      onRequest: app.authenticate,
      preValidation: unknownTask,
      // The body's idempotencyKey is this route's Idempotency-Key when no header is sent (plugins/idempotency.ts).
      config: { idempotencyKeyField: 'idempotencyKey' },
      schema: {
        tags: ['tasks'],
        operationId: 'enqueueTask',
        summary: 'Enqueue a background task',
        description:
          "Queues the named task with its payload (validated against that task's schema) and answers " +
          'at once with its id; poll the Location (GET /api/tasks/{id}) for progress and result.',
        body: EnqueueBody,
        response: {
          202: { ...Accepted, description: 'Queued; the Location header is the status URL' },
          ...problemResponses({
            ...COMMON_PROBLEMS,
            ...BODY_PROBLEMS,
            401: UNAUTHORIZED,
            404: DISABLED,
          }),
        },
      },
    },
    async (request, reply) => {
      const tasks = service(request, reply);
      if (!tasks) return reply;
      const { name, payload, delayMs, priority } = request.body;
      // The held key (header or body) also names the job, per user: a run after a takeover queues it once.
      const held = request.idempotency;
      const idempotencyKey = held && `${held.scope}:${held.key}`;
      const id = await tasks.enqueue(name, payload, { delayMs, priority, idempotencyKey });
      return reply.code(202).header('location', `/api/tasks/${id}`).send({ id });
    },
  );

  app.get(
    '/api/tasks/:id',
    {
      schema: {
        tags: ['tasks'],
        operationId: 'getTask',
        security: [],
        summary: 'Status, progress, result or error of a task',
        description: 'The state of a task enqueued through POST /api/tasks, until its retention expires.',
        params: Type.Object({ id: TaskId }),
        response: { 200: { ...Status, description: 'The task' }, ...readErrors },
      },
    },
    async (request, reply) => {
      const tasks = service(request, reply);
      if (!tasks) return reply;
      if (!parseTaskId(request.params.id)) return badId(request, reply, request.params.id);
      const status = await tasks.getStatus(request.params.id);
      return (
        status ??
        sendProblem(reply, request, problem(404, `Task ${request.params.id} does not exist (or has expired)`))
      );
    },
  );

  app.delete(
    '/api/tasks/:id',
    {
      onRequest: app.authenticate,
      schema: {
        tags: ['tasks'],
        operationId: 'cancelTask',
        summary: 'Cancel a task',
        description:
          'A waiting or delayed task is removed; a running one is aborted (its handler sees the signal).',
        params: Type.Object({ id: TaskId }),
        response: {
          202: { ...Accepted, description: 'Cancellation accepted' },
          ...readErrors,
          ...problemResponses({ 401: UNAUTHORIZED, 409: 'The task has already finished' }),
        },
      },
    },
    async (request, reply) => {
      const tasks = service(request, reply);
      if (!tasks) return reply;
      const { id } = request.params;
      if (!parseTaskId(id)) return badId(request, reply, id);
      const outcome = await tasks.cancel(id);
      if (outcome === 'not_found')
        return sendProblem(reply, request, problem(404, `Task ${id} does not exist (or has expired)`));
      if (outcome === 'finished')
        return sendProblem(reply, request, problem(409, `Task ${id} has already finished`));
      return reply.code(202).send({ id });
    },
  );
};
