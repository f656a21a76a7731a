import type { Command } from 'commander';
import * as fs from 'node:fs';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '../errors';
import { collect, parseLabels } from './args';
import { withSnapshotter } from './context';
import { usageProgress } from './progress';

/** diff, import, import-image: layers in and out as OCI tars (the tar code is loaded by the command that runs). */
export function registerLayerCommands(program: Command): void {
  program
    .command('diff <key>')
    .description("write a snapshot's own layer as an OCI image layer tar (stdout unless -o)")
    .option('-o, --output <file>', 'write to FILE')
    .option('--gzip', 'compress with gzip')
    .action(async (key: string, opts: { output?: string; gzip?: boolean }, cmd: Command) => {
      if (opts.output === undefined && process.stdout.isTTY === true) throw invalidArgument('diff: not writing a tar to a terminal; give -o FILE or redirect stdout');
      const { ownLayer } = await import('../overlay/stack');
      const { writeLayerTar } = await import('../layertar/diff');
      await withSnapshotter(cmd, async (s) => {
        const { own } = ownLayer(s.layers(key));
        if (own === undefined) throw failedPrecondition(`snapshot ${JSON.stringify(key)}: a view has no layer of its own`);
        // Opened before anything is written, so that a failure removes only a file made here.
        const out = opts.output === undefined ? process.stdout : fs.createWriteStream('', { fd: openNew(opts.output) });
        const progress = usageProgress(`packing ${key}`, 'entries');
        try {
          await writeLayerTar(own, out, { gzip: opts.gzip === true, onProgress: progress.update });
        } catch (err) {
          if (opts.output !== undefined) fs.rmSync(opts.output, { force: true });
          throw err;
        } finally {
          progress.done();
        }
      });
    });

  program
    .command('import <tar> <name>')
    .description('apply an OCI or Docker layer tar (plain or gzip; - for stdin) as a new committed snapshot NAME')
    .option('--parent <key>', 'committed snapshot to apply it on')
    .option('--label <k=v>', 'set a label on the new snapshot (repeatable)', collect, [])
    .action(async (file: string, name: string, opts: { parent?: string; label: string[] }, cmd: Command) => {
      const labels = parseLabels(opts.label, false);
      const { READ_CHUNK } = await import('../layertar/apply');
      const { importLayer } = await import('../layertar/import');
      await withSnapshotter(
        cmd,
        async (s) => {
          if (file !== '-' && !fs.existsSync(file)) throw notFound(`${file}: no such file`);
          const input = file === '-' ? process.stdin : fs.createReadStream(file, { highWaterMark: READ_CHUNK });
          const progress = usageProgress(`importing ${name}`, 'entries');
          try {
            await importLayer(s, input, name, { labels, source: file === '-' ? 'stdin' : file, onProgress: progress.update, ...(opts.parent === undefined ? {} : { parent: opts.parent }) });
          } finally {
            progress.done();
          }
        },
        { writes: true },
      );
    });

  program
    .command('import-image <path>')
    .description('unpack an OCI image layout or docker save archive as a chain of committed snapshots named by chain ID; prints the top one')
    .option('--name <ref>', 'the image to take where there are several')
    .action(async (source: string, opts: { name?: string }, cmd: Command) => {
      const { importImage } = await import('../layertar/image');
      await withSnapshotter(
        cmd,
        async (s) => {
          const progress = usageProgress('importing', 'entries');
          let top: string;
          try {
            top = await importImage(s, source, {
              ...(opts.name === undefined ? {} : { name: opts.name }),
              onProgress: progress.update,
              onLayer: (i, n, chain, skipped) => {
                if (process.stderr.isTTY === true) process.stderr.write(`layer ${i + 1}/${n} ${chain}${skipped ? ': present' : ''}\n`);
              },
            });
          } finally {
            progress.done();
          }
          process.stdout.write(`${top}\n`);
        },
        { writes: true },
      );
    });
}

/** A file made for writing, refused if it exists. */
function openNew(file: string): number {
  try {
    return fs.openSync(file, 'wx', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw alreadyExists(`${file}: already exists`);
    throw err;
  }
}
