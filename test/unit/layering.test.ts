import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import * as ts from 'typescript';

const SRC = path.resolve(__dirname, '..', '..', '..', 'src');

/**
 * The layers of src/, lowest first. A unit is a folder of src/, or a file
 * at its top; each may import from its own layer's units and from the
 * layers below, never from a layer above (and no two units of one layer
 * may import each other: see the test of cycles).
 *
 * Against the sketch in DESIGN.md: filters sit below the metastore (its
 * indexed walk evaluates them), native above errors (it reports through
 * them), and browse below mount: browse is a file system as LayerFS is,
 * and src/mount serves both (mount/serve-browse.ts).
 */
const LAYERS: readonly (readonly string[])[] = [
  ['errors.ts', 'faults.ts', 'liveness.ts', 'namespaces.ts', 'signals.ts', 'unix-socket.ts', 'types'],
  ['names.ts', 'native'],
  ['clock.ts'],
  ['filters'],
  ['metastore'],
  ['overlay'],
  ['fuse'],
  ['layerfs'],
  ['snapshotter'],
  ['inspect'],
  ['browse'],
  ['layertar'],
  ['mount'],
  ['grpc'],
  ['cli'],
];
const RANK = new Map(LAYERS.flatMap((units, rank) => units.map((u) => [u, rank] as const)));

/** The unit a path under src/ belongs to. */
function unitOf(relative: string): string {
  const [first = '', ...rest] = relative.split(path.sep);
  return rest.length > 0 ? first : first.endsWith('.ts') ? first : `${first}.ts`;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

interface Edge {
  readonly file: string;
  readonly from: string;
  readonly to: string;
}

/**
 * Every import between two units, as TypeScript's own scanner finds them:
 * `import … from`, `export … from`, type-only imports, and the lazy ones
 * (`import('…')`, `require('…')`), which are dependencies as much as the others.
 */
function importEdges(): Edge[] {
  return sourceFiles(SRC).flatMap((file) => {
    const { importedFiles } = ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true);
    const from = unitOf(path.relative(SRC, file));
    return importedFiles
      .filter((ref) => ref.fileName.startsWith('.'))
      .map((ref) => ({ file: path.relative(SRC, file), from, to: unitOf(path.relative(SRC, path.resolve(path.dirname(file), ref.fileName))) }))
      .filter((edge) => edge.to !== from);
  });
}

/** A cycle among units, if there is one, as the units along it. */
function findCycle(edges: readonly Edge[]): string[] | undefined {
  const next = new Map<string, Set<string>>();
  for (const { from, to } of edges) next.set(from, (next.get(from) ?? new Set()).add(to));
  const done = new Set<string>();
  const visit = (unit: string, trail: string[]): string[] | undefined => {
    const seen = trail.indexOf(unit);
    if (seen >= 0) return [...trail.slice(seen), unit];
    if (done.has(unit)) return undefined;
    for (const to of next.get(unit) ?? []) {
      const cycle = visit(to, [...trail, unit]);
      if (cycle !== undefined) return cycle;
    }
    done.add(unit);
    return undefined;
  };
  for (const unit of next.keys()) {
    const cycle = visit(unit, []);
    if (cycle !== undefined) return cycle;
  }
  return undefined;
}

describe('layering of src/: dependencies point one way', () => {
  const edges = importEdges();

  it('every folder and top-level file of src/ has its place in the layers', () => {
    const units = new Set(sourceFiles(SRC).map((f) => unitOf(path.relative(SRC, f))));
    assert.deepEqual([...units].filter((u) => !RANK.has(u)).sort(), []);
  });

  it('no unit imports from a layer above its own, lazily or not', () => {
    const upward = edges.filter((e) => RANK.get(e.to)! > RANK.get(e.from)!).map((e) => `${e.file} imports ${e.to}`);
    assert.deepEqual(upward, []);
  });

  it('no cycles between units, lazy imports included', () => {
    assert.equal(findCycle(edges)?.join(' → '), undefined);
  });

  it('the snapshotter imports nothing of mounts, FUSE, gRPC, browse or the CLI', () => {
    const forbidden = new Set(['mount', 'fuse', 'grpc', 'browse', 'cli']);
    assert.deepEqual(edges.filter((e) => e.from === 'snapshotter' && forbidden.has(e.to)).map((e) => `${e.file} imports ${e.to}`), []);
  });
});
