import ts from 'typescript';

export interface TypeError {
  /** 0-based line in the checked source. */
  line: number;
  message: string;
}

/**
 * Type-check a generated TypeScript source as if it were `file` (a path inside the repository, so
 * its imports resolve from node_modules), without writing it. Used to hold configuration objects
 * (Kubernetes manifests, Grafana dashboards) to their projects' type declarations: strict object
 * literals reject unknown fields and wrong enum values.
 */
export function typeErrors(file: string, source: string): TypeError[] {
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    target: ts.ScriptTarget.ES2022,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  host.readFile = (name) => (name === file ? source : readFile(name));
  host.getSourceFile = (name, language, onError, create) =>
    name === file
      ? ts.createSourceFile(name, source, language)
      : getSourceFile(name, language, onError, create);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => ({
    line:
      diagnostic.file && diagnostic.start !== undefined
        ? diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start).line
        : -1,
    message: ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'),
  }));
}
