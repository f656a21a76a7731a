/**
 * Types for the part of fuse-native 2.2.6 that snapfs uses, as patched by
 * scripts/patches/fuse-native-2.2.6 (02-mount-device.patch): mounting, with
 * the connection's descriptor handed to snapfs's own session (src/fuse/).
 */
declare module 'fuse-native' {
  class Fuse {
    /**
     * Mounts `mnt` through libfuse (mount(2) as root, the setuid fusermount
     * otherwise) with mount(8)-style options, and returns the /dev/fuse
     * descriptor of the new mount. Throws "fuse failed" (libfuse says why on stderr).
     */
    static mountDevice(mnt: string, options: readonly string[]): number;
  }
  export default Fuse;
}
