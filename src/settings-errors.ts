/** Turning schema violations into one clear line per variable, with secrets masked. */

export interface SettingProblem {
  name: string;
  value: string | undefined;
  problem: string;
  expected: string;
}

interface PropertySchema {
  type?: string;
  anyOf?: Array<{ const?: unknown }>;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  description?: string;
}

const SECRET_NAMES = /(PASSWORD|SECRET|TOKEN|_URL)$/;
const HIDDEN_NAMES = /(PASSWORD|SECRET|TOKEN|HEADERS)$/;

/** Replace the password of a URL with ***; anything unparseable is masked whole. */
export function redactUrl(value: string): string {
  try {
    const url = new URL(value);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '***';
  }
}

export function displayValue(name: string, value: string | undefined): string {
  if (value === undefined) return 'unset';
  if (HIDDEN_NAMES.test(name)) return '(hidden)';
  const shown = SECRET_NAMES.test(name) ? redactUrl(value) : value;
  return JSON.stringify(shown);
}

export function describeExpected(schema: PropertySchema): string {
  if (schema.anyOf) return `one of ${schema.anyOf.map((option) => String(option.const)).join(', ')}`;
  const kind =
    schema.type === 'integer'
      ? 'an integer'
      : schema.type === 'number'
        ? 'a number'
        : schema.type === 'boolean'
          ? 'true or false'
          : 'a string';
  const bounds: string[] = [];
  if (schema.minimum !== undefined) bounds.push(`>= ${schema.minimum}`);
  if (schema.exclusiveMinimum !== undefined) bounds.push(`> ${schema.exclusiveMinimum}`);
  if (schema.maximum !== undefined) bounds.push(`<= ${schema.maximum}`);
  const range = bounds.length > 0 ? ` ${bounds.join(' and ')}` : '';
  const purpose = schema.description ? ` (${schema.description})` : '';
  return `${kind}${range}${purpose}`;
}

export function formatSettingsErrors(problems: SettingProblem[]): string {
  return problems
    .map(
      (p) =>
        `Invalid setting ${p.name}: ${p.value === undefined ? '' : `${displayValue(p.name, p.value)} `}${p.problem}; expected ${p.expected}`,
    )
    .join('\n');
}
