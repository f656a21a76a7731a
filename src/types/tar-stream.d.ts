import type { ReadableOptions } from 'node:stream';

// scripts/patches/tar-stream-3.1.7.patch gives pack the filename encoding that extract has.
declare module 'tar-stream' {
  interface PackOptions extends ReadableOptions {
    /** The encoding names and link names are written in (ustar fields and PAX path and linkpath). */
    filenameEncoding?: BufferEncoding;
  }
  function pack(opts?: PackOptions): Pack;
}
