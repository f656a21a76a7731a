import { InvalidArgumentError, type Command } from 'commander';
import { formatNs } from '../clock';
import type { SnapshotEvent } from '../snapshotter/snapshotter';
import { wantsJson, withSnapshotter } from './context';
import { printJson, printLines } from './output';

const FOLLOW_POLL_MS = 100;

/** events and cleanup: the root's history and its housekeeping. */
export function registerRootCommands(program: Command): void {
  program
    .command('events')
    .description('print the event journal; --follow waits for new events')
    .option('-f, --follow', 'keep printing events as they happen')
    .option('--since <seq>', 'only events after this sequence number', parseSeq, 0)
    .option('--json', 'print one JSON object per line')
    .action(async (opts: { follow?: boolean; since: number }, cmd: Command) => {
      await withSnapshotter(cmd, async (s) => {
        const json = wantsJson(cmd);
        let after = opts.since;
        for (;;) {
          const batch = s.events(after);
          for (const e of batch) process.stdout.write(`${json ? JSON.stringify(eventJson(e)) : eventLine(e)}\n`);
          if (batch.length > 0) after = batch[batch.length - 1]!.seq;
          else if (opts.follow !== true) return;
          else await new Promise((resolve) => setTimeout(resolve, FOLLOW_POLL_MS));
        }
      });
    });

  program
    .command('cleanup')
    .description('remove what killed processes left: snapshots of killed imports, directories no snapshot owns')
    .option('--json', 'print JSON')
    .action(async (_opts: unknown, cmd: Command) => {
      await withSnapshotter(
        cmd,
        (s) => {
          const removed = s.cleanup();
          if (wantsJson(cmd)) printJson(removed);
          else printLines(removed.map((name) => `removed ${name}`));
        },
        { writes: true },
      );
    });
}

function parseSeq(value: string): number {
  if (!/^[0-9]+$/.test(value)) throw new InvalidArgumentError('not a sequence number');
  return Number(value);
}

function eventJson(e: SnapshotEvent): Record<string, unknown> {
  return { ...e, time: formatNs(e.time) };
}

/** ctr's form: time, topic, then the event's fields as JSON. */
function eventLine(e: SnapshotEvent): string {
  const payload: Record<string, string> = { key: e.key };
  if (e.parent !== undefined) payload.parent = e.parent;
  if (e.name !== undefined) payload.name = e.name;
  return `${formatNs(e.time)} ${e.topic} ${JSON.stringify(payload)}`;
}
