import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { sendProblem } from '../plugins/errors.js';
import { problem, problemRef } from '../plugins/problem.js';
import { TASKS, tasksByName } from '../tasks/definitions/index.js';
import { parseTaskId } from '../tasks/queues.js';
import { payloadErrors } from '../tasks/registry.js';
import type { TaskService } from '../tasks/service.js';

const TaskName = Type.String({
  maxLength: 100,
  description: `One of: ${TASKS.map((task) => task.name).join(', ')}`,
});
const TaskId = Type.String({
  maxLength: 120,
  description: 'Id returned by POST /api/tasks/{name}, e.g. default.42',
});
const EnqueueBody = Type.Object(
  {
    payload: Type.Record(Type.String(), Type.Unknown(), {
      description: "The task's payload (see each task's schema)",
    }),
    delayMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 365 * 24 * 3600 * 1000 })),
    priority: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 2_097_152, description: '1 is the highest' }),
    ),
    idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false },
);
const Accepted = Type.Object({ id: Type.String() });
const Status = Type.Object({
  id: Type.String(),
  name: Type.String(),
  state: Type.Union([
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
const errors = { 400: problemRef, 404: problemRef, 409: problemRef, 413: problemRef, 503: problemRef };

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
      problem(
        404,
        'Background tasks are disabled on this deployment (set ENABLE_BACKGROUND_TASKS=true or LEVEL=4)',
      ),
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

  app.post(
    '/api/tasks/:name',
    {
      schema: {
        tags: ['tasks'],
        summary: 'Enqueue a background task; poll the Location for its status',
        params: Type.Object({ name: TaskName }),
        body: EnqueueBody,
        response: { 202: Accepted, ...errors },
      },
    },
    async (request, reply) => {
      const tasks = service(request, reply);
      if (!tasks) return reply;
      const definition = tasksByName.get(request.params.name);
      if (!definition)
        return sendProblem(reply, request, problem(404, `Unknown task "${request.params.name}"`));
      const fieldErrors = payloadErrors(definition, request.body.payload);
      if (fieldErrors.length > 0) {
        const summary = fieldErrors.map((error) => `${error.field} ${error.message}`).join('; ');
        return sendProblem(
          reply,
          request,
          problem(400, `Invalid payload for ${definition.name}: ${summary}`, { errors: fieldErrors }),
        );
      }
      const { payload, delayMs, priority, idempotencyKey } = request.body;
      const id = await tasks.enqueue(definition.name, payload, { delayMs, priority, idempotencyKey });
      return reply.code(202).header('location', `/api/tasks/${id}`).send({ id });
    },
  );

  app.get(
    '/api/tasks/:id',
    {
      schema: {
        tags: ['tasks'],
        summary: 'Status, progress, result or error of a task',
        params: Type.Object({ id: TaskId }),
        response: { 200: Status, ...errors },
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
      schema: {
        tags: ['tasks'],
        summary: 'Cancel a task: removed if waiting or delayed, aborted if running',
        params: Type.Object({ id: TaskId }),
        response: { 202: Accepted, ...errors },
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
