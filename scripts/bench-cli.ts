/**
 * CLI start-up benchmark (not a test): how long a short command takes from
 * exec to exit, against `node -e 0` (Node.js starting and doing nothing),
 * on a temporary root holding one snapshot. The commands take turns, one
 * run of each per round, so that the slow spells of a shared machine fall
 * on each alike. Prints each one's median and its ratio to `node -e 0`.
 *
 *   scripts/bench-cli [--runs N] [--cli FILE]
 *
 * `--cli` times another build's dist/src/cli/main.js (an older checkout,
 * say) on the same machine in the same way.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { arg, median, millis } from './bench-util';

const cli = path.resolve(arg('cli', path.join(__dirname, '..', 'src', 'cli', 'main.js')));
const runs = Number(arg('runs', '20'));

function main(): void {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'snapfs-bench-cli-'));
  try {
    const root = path.join(base, 'root');
    const snapfs = (...args: string[]): string[] => [cli, '--root', root, ...args];
    execFileSync(process.execPath, snapfs('prepare', 'bench'), { stdio: 'ignore' });
    const commands: [string, string[]][] = [
      ['node -e 0', ['-e', '0']],
      ['snapfs info K', snapfs('info', 'bench')],
      ['snapfs --help', snapfs('--help')],
      ['snapfs ls', snapfs('ls')],
    ];
    const run = (args: string[]): number => millis(() => execFileSync(process.execPath, args, { stdio: 'ignore' }));
    // Once each first, untimed: the first run reads the files from disk.
    for (const [, args] of commands) run(args);
    const times = new Map<string, number[]>(commands.map(([name]) => [name, []]));
    for (let r = 0; r < runs; r++) for (const [name, args] of commands) times.get(name)!.push(run(args));

    const reference = median(times.get('node -e 0')!);
    console.log(`\nsnapfs CLI start-up, median of ${runs} interleaved runs (${cli})\n`);
    console.log(`${'command'.padEnd(16)}${'ms'.padStart(8)}  ratio to node -e 0`);
    for (const [name, ms] of times) console.log(`${name.padEnd(16)}${median(ms).toFixed(1).padStart(8)}  ${(median(ms) / reference).toFixed(2)}×`);
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
}

main();
