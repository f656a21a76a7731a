import type { Backing } from '../fuse/session';
import { fstat } from '../native/sys';

/**
 * Files smaller than this are read through the page cache, not passed
 * through: the one or two reads of such a file cost fewer requests than
 * passthrough does, since a passed-through read makes the kernel ask for
 * the file's attributes again at its next stat, and registering a backing
 * file costs two more system calls per open.
 */
export const PASSTHROUGH_MIN_BYTES = 1 << 20;

/** How one open file is read and written. */
type Mode = 'cached' | 'passthrough';

interface NodeIo {
  /** Opens through the page cache. */
  cached: number;
  /** The backing file the kernel reads for this node's passed-through opens, and which copy of the file it is. */
  passthrough: { readonly id: number; readonly copy: number; opens: number } | undefined;
}

/**
 * How each open file of a mount is read and written, as the kernel allows
 * it per node: through the page cache (reads and writes served by the
 * session), or passed through to a backing file (the kernel reads it
 * itself; FUSE passthrough, root only). The kernel takes one backing file
 * per node at a time, and fails with EIO an open of a node passed through
 * that is not passed through to the same file, or one passed through while
 * the node is open through the page cache. So a read-only open is passed through while its
 * node has no cached opens (and the file is big enough to gain by it); an open that cannot be passed through to the
 * node's backing file (a writer's, whose copy-up made another file of it,
 * or a reader's after that copy-up) is made on a new node (LayerFS, with
 * Tree.split); the rest is cached. Writes are never passed through: a
 * commit's freeze must be able to refuse them.
 */
export class IoModes {
  private backing: Backing | undefined;
  private enabled = false;
  private readonly nodes = new Map<number, NodeIo>();
  private readonly handles = new Map<number, { readonly ino: number; readonly mode: Mode }>();

  /** minBytes: the smallest file passed through (PASSTHROUGH_MIN_BYTES). */
  constructor(private readonly minBytes = PASSTHROUGH_MIN_BYTES) {}

  /** The kernel agreed to passthrough. */
  enable(backing: Backing): void {
    this.backing = backing;
    this.enabled = true;
  }

  /**
   * Node `ino` was opened through `fd`, its file's copy in layer `copy`:
   * what to tell the kernel about it.
   */
  opened(ino: number, fd: number, copy: number, readOnly: boolean): { backingId?: number } {
    // Without passthrough every open is cached: nothing to keep track of.
    if (!this.enabled) return {};
    let node = this.nodes.get(ino);
    if (node === undefined) {
      node = { cached: 0, passthrough: undefined };
      this.nodes.set(ino, node);
    }
    if (readOnly && node.cached === 0) {
      // A node passed through already is joined, whatever its size: the kernel takes one mode per node.
      if (node.passthrough === undefined && fstat(fd).size >= this.minBytes) {
        const id = this.register(fd);
        if (id !== undefined) node.passthrough = { id, copy, opens: 0 };
      }
      if (node.passthrough?.copy === copy) {
        node.passthrough.opens++;
        this.handles.set(fd, { ino, mode: 'passthrough' });
        return { backingId: node.passthrough.id };
      }
    }
    node.cached++;
    this.handles.set(fd, { ino, mode: 'cached' });
    return {};
  }

  /**
   * Whether node `ino` is passed through to a file other than its copy in
   * layer `copy` (undefined: a writer's, never passed through): the kernel
   * would refuse another open of it, so that open needs a new node.
   */
  boundElsewhere(ino: number, copy: number | undefined): boolean {
    const bound = this.nodes.get(ino)?.passthrough;
    return bound !== undefined && bound.copy !== copy;
  }

  /** The open file of `fd` was released. */
  released(fd: number): void {
    const handle = this.handles.get(fd);
    if (handle === undefined) return;
    this.handles.delete(fd);
    const node = this.nodes.get(handle.ino)!;
    if (handle.mode === 'cached') node.cached--;
    if (handle.mode === 'passthrough' && --node.passthrough!.opens === 0) {
      this.backing?.close(node.passthrough!.id);
      node.passthrough = undefined;
    }
    if (node.cached === 0 && node.passthrough === undefined) this.nodes.delete(handle.ino);
  }

  /** The backing id of fd's file; undefined where the kernel refuses it (a file stacked too deep), and from then on where this process may not (EPERM). */
  private register(fd: number): number | undefined {
    if (this.backing === undefined) return undefined;
    try {
      return this.backing.open(fd);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EPERM') this.backing = undefined;
      return undefined;
    }
  }
}
