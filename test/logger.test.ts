import { Writable } from 'node:stream';
import Fastify, { LogController } from 'fastify';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { LazyChildLogger, lazyRequestLogger, loggerOptions } from '../src/logger.js';

/** A pino logger with the app's options (redaction and all) writing JSON lines into `lines`. */
function capturingLogger(level = 'info') {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const options = loggerOptions({ LOG_LEVEL: level, NODE_ENV: 'production' } as Parameters<
    typeof loggerOptions
  >[0]);
  return { logger: pino(options, sink), lines };
}

describe('the lazy request logger', () => {
  it('makes the child only when a line is written, with its bindings and the redaction of its parent', () => {
    const { logger, lines } = capturingLogger();
    let children = 0;
    const counting = Object.assign(Object.create(logger), {
      child: (...args: Parameters<typeof logger.child>) => {
        children += 1;
        return logger.child(...args);
      },
    });
    const lazy = new LazyChildLogger(counting, { reqId: 'r-1' }, {});
    expect(lazy.level).toBe('info');
    expect(children).toBe(0);
    lazy.info({ user: { password: 'hunter2' }, password: 'x' }, 'signed in as %s', 'ann');
    lazy.warn('second');
    expect(children).toBe(1);
    expect(lines).toMatchObject([
      { reqId: 'r-1', msg: 'signed in as ann', password: '[redacted]', user: { password: '[redacted]' } },
      { reqId: 'r-1', msg: 'second', level: 40 },
    ]);
    expect(JSON.stringify(lines)).not.toContain('hunter2');
  });

  it('keeps levels: the route option, a level set later, debug lines dropped at info', () => {
    const { logger, lines } = capturingLogger();
    const quiet = new LazyChildLogger(logger, { reqId: 'r-2' }, { level: 'warn' });
    expect(quiet.level).toBe('warn');
    quiet.info('dropped');
    quiet.error('kept');
    const loud = new LazyChildLogger(logger, { reqId: 'r-3' }, {});
    loud.debug('dropped too');
    loud.level = 'debug';
    loud.debug('now kept');
    loud.child({ step: 'inner' }).info('from a grandchild');
    expect(lines.map((line) => [line.reqId, line.msg, line.step])).toEqual([
      ['r-2', 'kept', undefined],
      ['r-3', 'now kept', undefined],
      ['r-3', 'from a grandchild', 'inner'],
    ]);
  });

  it("is Fastify's request.log: lines carry the id of their request", async () => {
    const { logger, lines } = capturingLogger();
    const app = Fastify({
      loggerInstance: logger,
      childLoggerFactory: lazyRequestLogger,
      logController: new LogController({ disableRequestLogging: true }),
    });
    app.get('/quiet', async () => ({ ok: true }));
    app.get('/loud', async (request) => {
      request.log.info({ password: 'p' }, 'handled');
      return { id: request.id };
    });
    await app.inject('/quiet');
    const loud = await app.inject('/loud');
    expect(lines).toEqual([{ ...lines[0], reqId: loud.json().id, msg: 'handled', password: '[redacted]' }]);
    await app.close();
  });
});
