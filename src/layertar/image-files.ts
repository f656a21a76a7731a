import * as fs from 'node:fs';
import * as path from 'node:path';
import { invalidArgument } from '../errors';
import { pathComponents } from './paths';
import { systemFailureAt } from './failures';

/** An image's JSON documents (index, manifests, configs) are read whole: none is near this big. */
const DOCUMENT_MAX = 4 << 20;
/** Symlinks followed for one path at most, as Linux's own limit. */
const MAX_LINKS = 40;

/**
 * The files of an image, read as data. A path the image's documents name
 * is followed inside the image only, its symlinks too (older `docker save`
 * links a repeated layer to its first copy), and opened only if it is a
 * regular file: never a device, a fifo, or anything outside the image.
 */
export class ImageFiles {
  private constructor(
    private readonly dir: string,
    /** What the image is called in messages: the path it was given by. */
    readonly source: string,
    /** The target of the symlink at `rel` (a path in the image), if there is one. */
    private readonly linkAt: (rel: string) => string | undefined,
  ) {}

  /** An image directory as it is on disk. */
  static directory(dir: string): ImageFiles {
    return new ImageFiles(dir, dir, (rel) => {
      const full = path.join(dir, rel);
      return fs.lstatSync(full, { throwIfNoEntry: false })?.isSymbolicLink() === true ? fs.readlinkSync(full) : undefined;
    });
  }

  /** An archive unpacked into `dir`, its symlinks (by path in the archive) recorded instead of made. */
  static unpacked(dir: string, links: ReadonlyMap<string, string>, source: string): ImageFiles {
    return new ImageFiles(dir, source, (rel) => links.get(rel));
  }

  /** Whether anything is at path `p` of the image (a file name of its own, as `index.json`). */
  has(p: string): boolean {
    return fs.lstatSync(this.resolve(p, p), { throwIfNoEntry: false }) !== undefined;
  }

  /** A descriptor of regular file `p` of the image; `what` names it in messages (`layer "l0/layer.tar"`). */
  open(p: string, what: string): number {
    let fd: number;
    try {
      // No waiting on a fifo, no following a symlink put there meanwhile: fstat decides.
      fd = fs.openSync(this.resolve(p, what), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw this.refusal(`${what} is not in the image`);
      if (code === 'ELOOP') throw this.refusal(`${what} is not a regular file`);
      throw systemFailureAt(err, `image ${this.source}`) ?? err;
    }
    if (!fs.fstatSync(fd).isFile()) {
      fs.closeSync(fd);
      throw this.refusal(`${what} is not a regular file`);
    }
    return fd;
  }

  /** JSON document `p`; refused unread if bigger than DOCUMENT_MAX. */
  readJson<T>(p: string, what: string): T {
    const fd = this.open(p, what);
    let text: Buffer;
    try {
      if (fs.fstatSync(fd).size > DOCUMENT_MAX) throw this.tooBig(what);
      // Read up to one byte past the limit: the file may have grown since.
      const buf = Buffer.alloc(DOCUMENT_MAX + 1);
      let length = 0;
      for (let n = -1; n !== 0 && length < buf.length; length += n) n = fs.readSync(fd, buf, length, buf.length - length, null);
      if (length > DOCUMENT_MAX) throw this.tooBig(what);
      text = buf.subarray(0, length);
    } finally {
      fs.closeSync(fd);
    }
    try {
      return JSON.parse(text.toString('utf8')) as T;
    } catch (err) {
      throw this.refusal(`${what}: ${(err as Error).message}`);
    }
  }

  /** Where path `p` of the image is, its symlinks followed; refused if that leaves the image. */
  private resolve(p: string, what: string): string {
    const pending = pathComponents(p);
    const resolved: string[] = [];
    let links = 0;
    for (let part = pending.shift(); part !== undefined; part = pending.shift()) {
      if (part === '..') {
        if (resolved.pop() === undefined) throw this.refusal(`${what} leaves the image`);
        continue;
      }
      resolved.push(part);
      const link = this.linkAt(resolved.join('/'));
      if (link === undefined) continue;
      if (++links > MAX_LINKS) throw this.refusal(`too many levels of symbolic links at ${what}`);
      if (link.startsWith('/')) throw this.refusal(`${what} links outside the image`);
      resolved.pop();
      pending.unshift(...pathComponents(link));
    }
    return path.join(this.dir, ...resolved);
  }

  private tooBig(what: string): Error {
    return this.refusal(`${what} is more than ${DOCUMENT_MAX >> 20} MiB, too big for an image document`);
  }

  private refusal(why: string): Error {
    return invalidArgument(`image ${this.source}: ${why}`);
  }
}
