/**
 * Every command's name and alias, as program.ts declares them: what tells
 * `snapfs diff KEY -o FILE` (a command) from `snapfs SOURCE MOUNTPOINT -o
 * OPTIONS` (mount(8) running us as the fuse.snapfs helper) before commander
 * and the commands are loaded. test/cli.test.ts checks that the two agree.
 */
export const COMMAND_NAMES: ReadonlySet<string> = new Set([
  'prepare', 'view', 'mounts', 'commit', 'rm', 'remove', 'info', 'stat', 'label',
  'ls', 'list', 'tree', 'usage', 'du',
  'events', 'cleanup',
  'mount', 'browse', 'mounted', 'daemon',
  'serve',
  'cat', 'changes',
  'diff', 'import', 'import-image',
]);
