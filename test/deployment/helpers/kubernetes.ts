import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ROOT } from '../../helpers/process.js';
import { typeErrors } from './typecheck.js';

export const KUBECTL = ['/usr/bin/kubectl', '/usr/local/bin/kubectl'].find((path) => existsSync(path));

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  [key: string]: unknown;
}

export function parseManifests(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((document) => document.toJS() as K8sObject | null)
    .filter((object): object is K8sObject => object !== null);
}

/** `kubectl kustomize <dir>` (kustomize built into kubectl), parsed. */
export function kustomize(dir: string): K8sObject[] {
  const result = spawnSync(KUBECTL as string, ['kustomize', join(ROOT, dir)], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${result.stderr}`);
  return parseManifests(result.stdout);
}

/** Module of the kubernetes-models (or @kubernetes-models/keda) class for an apiVersion and kind. */
export function modelModule(object: Pick<K8sObject, 'apiVersion' | 'kind'>): string {
  if (object.apiVersion.startsWith('keda.sh/'))
    return `@kubernetes-models/keda/${object.apiVersion}/${object.kind}`;
  return `kubernetes-models/${object.apiVersion}/${object.kind}`;
}

/** Validate with the model's JSON schema (required fields, types, enums); throws naming what is wrong. */
export async function validateWithModel(object: K8sObject): Promise<void> {
  const module = (await import(modelModule(object))) as Record<
    string,
    new (
      data: unknown,
    ) => { validate(): void }
  >;
  const Model = module[object.kind];
  if (!Model) throw new Error(`no model for ${object.apiVersion} ${object.kind}`);
  new Model(object).validate();
}

/**
 * The JSON schemas of the models accept fields they do not know (Kubernetes' OpenAPI does), so a typo
 * such as `periodSecond` would pass. TypeScript's excess-property check against the models' type
 * declarations catches those: each object becomes a typed object literal in a virtual file.
 */
export function unknownFieldErrors(objects: K8sObject[]): string[] {
  const file = join(ROOT, 'test/deployment/__manifests_typecheck__.ts');
  const lines = objects.map((object, index) => {
    const module = modelModule(object);
    return `import type { I${object.kind} as T${index} } from '${module}';\nexport const o${index}: T${index} = ${JSON.stringify(object)};`;
  });
  return typeErrors(file, lines.join('\n')).map(({ line, message }) => {
    if (line < 0) return message;
    const object = objects[Math.floor(line / 2)];
    return `${object?.kind}/${object?.metadata.name}: ${message}`;
  });
}

export type Labels = Record<string, string>;

interface LabelSelector {
  matchLabels?: Labels;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

/** Whether a Kubernetes label selector matches a set of labels. */
export function selects(selector: LabelSelector | undefined, labels: Labels): boolean {
  if (!selector) return false;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {}))
    if (labels[key] !== value) return false;
  for (const expression of selector.matchExpressions ?? []) {
    const value = labels[expression.key];
    const values = expression.values ?? [];
    const ok = {
      In: value !== undefined && values.includes(value),
      NotIn: value === undefined || !values.includes(value),
      Exists: value !== undefined,
      DoesNotExist: value === undefined,
    }[expression.operator];
    if (!ok) return false;
  }
  return true;
}
