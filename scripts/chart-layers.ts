/**
 * Draws the layer benchmark's results as an SVG bar chart: reads what
 * `scripts/bench-layers --json FILE` wrote, writes the chart.
 *
 *   scripts/chart-layers REPORT.json CHART.svg
 */
import * as fs from 'node:fs';
import { parseReport } from './bench-layers-report';
import { chartSvg } from './chart-layers-svg';

function main(args: readonly string[]): number {
  if (args.length !== 2) {
    console.error('usage: scripts/chart-layers REPORT.json CHART.svg');
    return 2;
  }
  const [input, output] = args as [string, string];
  try {
    const report = parseReport(fs.readFileSync(input, 'utf8'), input);
    if (report.workloads.length === 0) throw new Error(`${input}: no workloads to draw`);
    fs.writeFileSync(output, chartSvg(report));
  } catch (err) {
    console.error(`chart-layers: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  return 0;
}

process.exitCode = main(process.argv.slice(2));
