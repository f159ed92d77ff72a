import { readFileSync } from 'node:fs';

export interface Instruction {
  keyword: string;
  /** Everything after the keyword, continuation lines joined with a space. */
  args: string;
  /** `--name=value` flags at the start of args (COPY --from=build, RUN --mount=...). */
  flags: Record<string, string>;
  /** args without the leading flags. */
  rest: string;
}

export interface Stage {
  name: string;
  /** Image or earlier stage this stage starts FROM. */
  from: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  args: Record<string, string>;
  stages: Stage[];
}

function splitFlags(args: string): { flags: Record<string, string>; rest: string } {
  const flags: Record<string, string> = {};
  let rest = args.trim();
  for (
    let match = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(rest);
    match;
    match = /^--([a-z-]+)(?:=(\S+))?\s+/.exec(rest)
  ) {
    flags[match[1] as string] = match[2] ?? 'true';
    rest = rest.slice(match[0].length);
  }
  return { flags, rest };
}

/** A small Dockerfile reader: comments, line continuations, global ARGs and FROM ... AS name stages. */
export function parseDockerfile(path: string): Dockerfile {
  const logical: string[] = [];
  let current = '';
  for (const raw of readFileSync(path, 'utf8').split('\n')) {
    const line = raw.trimEnd();
    if (current === '' && /^\s*#/.test(line)) continue; // comment or parser directive
    if (current !== '' && /^\s*#/.test(line)) continue; // comments inside a continued instruction
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1).trim()} `;
      continue;
    }
    current += line.trim();
    if (current.trim() !== '') logical.push(current.trim());
    current = '';
  }
  const result: Dockerfile = { args: {}, stages: [] };
  for (const text of logical) {
    const space = text.search(/\s/);
    const keyword = (space < 0 ? text : text.slice(0, space)).toUpperCase();
    const args = space < 0 ? '' : text.slice(space + 1).trim();
    const stage = result.stages.at(-1);
    if (keyword === 'ARG' && !stage) {
      const [name, value = ''] = args.split('=');
      result.args[name as string] = value;
      continue;
    }
    if (keyword === 'FROM') {
      const { rest } = splitFlags(args);
      const match = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (!match) throw new Error(`cannot read FROM ${args}`);
      const from = (match[1] as string).replace(/\$\{(\w+)\}/g, (_, name: string) => result.args[name] ?? '');
      result.stages.push({ name: match[2] ?? String(result.stages.length), from, instructions: [] });
      continue;
    }
    if (!stage) throw new Error(`${keyword} before the first FROM`);
    stage.instructions.push({ keyword, args, ...splitFlags(args) });
  }
  return result;
}

export function stageNamed(dockerfile: Dockerfile, name: string): Stage {
  const stage = dockerfile.stages.find((candidate) => candidate.name === name);
  if (!stage) throw new Error(`no stage named ${name}`);
  return stage;
}

/** Instructions of a stage and of the stages it builds FROM, base first (what the final image inherits). */
export function inherited(dockerfile: Dockerfile, stage: Stage): Instruction[] {
  const parent = dockerfile.stages.find((candidate) => candidate.name === stage.from);
  return [...(parent ? inherited(dockerfile, parent) : []), ...stage.instructions];
}

/** The base image a stage finally rests on. */
export function baseImage(dockerfile: Dockerfile, stage: Stage): string {
  const parent = dockerfile.stages.find((candidate) => candidate.name === stage.from);
  return parent ? baseImage(dockerfile, parent) : stage.from;
}

/** JSON exec form (["node", "dist/main.js"]) or undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  const parsed: unknown = JSON.parse(args);
  return Array.isArray(parsed) && parsed.every((item) => typeof item === 'string') ? parsed : undefined;
}

/** ENV instructions (KEY=value pairs, several per line) in order. */
export function envOf(instructions: Instruction[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const instruction of instructions.filter((candidate) => candidate.keyword === 'ENV')) {
    for (const match of instruction.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) {
      env[match[1] as string] = (match[2] as string).replace(/^"|"$/g, '');
    }
  }
  return env;
}
