/**
 * Every command's name and alias, by the file of src/cli that declares
 * them: what tells `snapfs diff KEY -o FILE` (a command) from `snapfs
 * SOURCE MOUNTPOINT -o OPTIONS` (mount(8) running us as the fuse.snapfs
 * helper) before commander and the commands are loaded, and which file a
 * command needs (program.ts declares that file's commands alone).
 * test/unit/cli.test.ts checks that these agree with what is declared.
 */
export const COMMAND_GROUPS = {
  snapshot: ['prepare', 'view', 'mounts', 'commit', 'rm', 'remove', 'info', 'stat', 'label'],
  listing: ['ls', 'list', 'tree', 'usage', 'du'],
  root: ['events', 'cleanup'],
  mount: ['mount', 'browse', 'mounted', 'daemon'],
  serve: ['serve'],
  inspect: ['cat', 'changes'],
  layer: ['diff', 'import', 'import-image'],
} as const;

export type CommandGroup = keyof typeof COMMAND_GROUPS;

export const COMMAND_NAMES: ReadonlySet<string> = new Set(Object.values(COMMAND_GROUPS).flat());

/** The group of command `name`, if it is one. */
export function groupOf(name: string): CommandGroup | undefined {
  return (Object.keys(COMMAND_GROUPS) as CommandGroup[]).find((g) => (COMMAND_GROUPS[g] as readonly string[]).includes(name));
}
