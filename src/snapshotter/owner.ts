import * as fs from 'node:fs';
import { alreadyExists } from '../errors';
import { isRunning } from '../liveness';
import { Layout } from './layout';
import { createRoot, inspectRoot } from './root';

/**
 * Who serves a root to containerd (ROOT/served-by.json): written by
 * `snapfs serve`, read by the CLI. A fact about the root, kept with it:
 * whatever opens a root can ask, without loading the gRPC server.
 */
export interface RootOwner {
  readonly pid: number;
  readonly address: string;
}

/** The live server that owns `root`, if any (a record left by a killed one is ignored). */
export function servedBy(root: string): RootOwner | undefined {
  let owner: RootOwner;
  try {
    owner = JSON.parse(fs.readFileSync(new Layout(root).owner, 'utf8')) as RootOwner;
  } catch {
    return undefined;
  }
  return typeof owner.pid === 'number' && owner.pid !== process.pid && isRunning(owner.pid) ? owner : undefined;
}

/** Records this process as the server of `root`; one server per root. */
export function claimRoot(root: string, address: string): void {
  const layout = new Layout(root);
  if (inspectRoot(layout) === 'missing') createRoot(layout);
  const current = servedBy(root);
  if (current !== undefined) throw alreadyExists(`root ${layout.root}: already served by snapfs serve (pid ${current.pid}, ${current.address})`);
  const temp = `${layout.owner}.${process.pid}`;
  fs.writeFileSync(temp, `${JSON.stringify({ pid: process.pid, address } satisfies RootOwner)}\n`, { mode: 0o644 });
  fs.renameSync(temp, layout.owner);
}

export function releaseRoot(root: string): void {
  const layout = new Layout(root);
  try {
    const owner = JSON.parse(fs.readFileSync(layout.owner, 'utf8')) as RootOwner;
    if (owner.pid === process.pid) fs.rmSync(layout.owner, { force: true });
  } catch {
    // gone already
  }
}
