/*
 * File primitives Node.js lacks, for working inside layers that hold
 * untrusted content. Everything below a layer's root is reached through
 * descriptors: one directory descriptor and one entry name per call (the
 * *at calls), or openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS for a
 * walk of several names. No call follows a symlink, so a directory swapped
 * for a symlink while we work can never lead outside the layer, and no
 * path string is ever resolved twice.
 *
 * Descriptors opened with O_PATH (which need no permission on the file)
 * are used for metadata through /proc/self/fd/N, a magic link that leads
 * to exactly the descriptor's file, symlinks included, and never further.
 *
 * Names are bytes (a Buffer) or strings. All calls are synchronous but
 * copyDataAsync (a big copy-up's data, on libuv's pool): they are only
 * ever made on layer directories, never on a mount served by the calling
 * process. Errors are thrown Node-style (code, errno, syscall).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include "native.h"

/* openat(dirfd, name, flags, mode): O_NOFOLLOW and O_CLOEXEC are always added. */
static napi_value js_open_at(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char name[NAME_BYTES];
  size_t len;
  if (!get_args(env, info, 4, argv) || !get_name(env, argv[1], name, &len, false)) return NULL;
  int fd = openat((int) get_int64(env, argv[0]), name, (int) get_int64(env, argv[2]) | O_NOFOLLOW | O_CLOEXEC, (mode_t) get_int64(env, argv[3]));
  if (fd < 0) return throw_errno(env, errno, "openat", name, len);
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

/*
 * openBeneath(dirfd, relative path, flags, mode): a walk of several names
 * below dirfd that fails, rather than leave it or follow any symlink on
 * the way (EXDEV for `..` above dirfd, ELOOP for a symlink).
 */
static napi_value js_open_beneath(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char rel[PATH_BYTES];
  size_t len;
  if (!get_args(env, info, 4, argv) || !get_bytes(env, argv[1], rel, sizeof rel, &len)) return NULL;
  if (len == 0 || rel[0] == '/') return throw_errno(env, EINVAL, "openat2", rel, len);
  struct open_how how = {
    .flags = (uint64_t) get_int64(env, argv[2]) | O_NOFOLLOW | O_CLOEXEC,
    .mode = (uint64_t) get_int64(env, argv[3]),
    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
  };
  if ((how.flags & (O_CREAT | O_TMPFILE)) == 0) how.mode = 0;
  int fd = (int) syscall(SYS_openat2, (int) get_int64(env, argv[0]), rel, &how, sizeof how);
  if (fd < 0) return throw_errno(env, errno, "openat2", rel, len);
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

/* The magic link of a descriptor: the very file it is open on. */
static void proc_path(char *buf, size_t size, int fd) {
  snprintf(buf, size, "/proc/self/fd/%d", fd);
}

static bool is_path_fd(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && (flags & O_PATH) != 0;
}

/* reopen(fd, flags): a new descriptor of fd's file, for reading or writing what an O_PATH one cannot. */
static napi_value js_reopen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  char p[64];
  proc_path(p, sizeof p, (int) get_int64(env, argv[0]));
  /* O_NOFOLLOW would refuse the magic link itself; it leads to the file and never further. */
  int fd = open(p, ((int) get_int64(env, argv[1]) & ~O_NOFOLLOW) | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open", NULL, 0);
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

/*
 * openFile(dirfd, name, flags): the data of a regular file, and nothing
 * else: opened O_PATH first (which opens nothing), checked to be a regular
 * file, then opened for real through its magic link, so that a name
 * swapped meanwhile for a fifo (which would block), a device node (whose
 * driver would be opened) or a symlink is never opened. "" opens the file
 * of dirfd itself (an O_PATH descriptor).
 */
static napi_value js_open_file(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char name[NAME_BYTES];
  size_t len;
  if (!get_args(env, info, 3, argv) || !get_name(env, argv[1], name, &len, true)) return NULL;
  int dirfd = (int) get_int64(env, argv[0]);
  int path_fd = len == 0 ? dirfd : openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (path_fd < 0) return throw_errno(env, errno, "openat", name, len);
  struct stat st;
  int err = fstat(path_fd, &st) != 0 ? errno : S_ISREG(st.st_mode) ? 0 : S_ISLNK(st.st_mode) ? ELOOP : S_ISDIR(st.st_mode) ? EISDIR : ENXIO;
  int fd = -1;
  if (err == 0) {
    char p[64];
    proc_path(p, sizeof p, path_fd);
    fd = open(p, ((int) get_int64(env, argv[2]) & ~(O_NOFOLLOW | O_CREAT | O_EXCL)) | O_CLOEXEC);
    if (fd < 0) err = errno;
  }
  if (path_fd != dirfd) close(path_fd);
  if (err != 0) return throw_errno(env, err, "open", name, len);
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

enum { ST_DEV, ST_INO, ST_MODE, ST_NLINK, ST_UID, ST_GID, ST_RDEV, ST_SIZE, ST_BLKSIZE, ST_BLOCKS, ST_ATIME, ST_MTIME, ST_CTIME, ST_FIELDS };

static void put_stat(int64_t *out, const struct stat *st) {
  out[ST_DEV] = (int64_t) st->st_dev;
  out[ST_INO] = (int64_t) st->st_ino;
  out[ST_MODE] = st->st_mode;
  out[ST_NLINK] = (int64_t) st->st_nlink;
  out[ST_UID] = st->st_uid;
  out[ST_GID] = st->st_gid;
  out[ST_RDEV] = (int64_t) st->st_rdev;
  out[ST_SIZE] = st->st_size;
  out[ST_BLKSIZE] = st->st_blksize;
  out[ST_BLOCKS] = st->st_blocks;
  out[ST_ATIME] = (int64_t) st->st_atim.tv_sec * 1000000000LL + st->st_atim.tv_nsec;
  out[ST_MTIME] = (int64_t) st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
  out[ST_CTIME] = (int64_t) st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
}

/*
 * statAt(dirfd, name, out: BigInt64Array): fstatat without following;
 * "" is the descriptor itself. Fills out (see the enum) and returns true,
 * or returns false when there is no such entry (lookups miss often: no
 * exception for that).
 */
static napi_value js_stat_at(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char name[NAME_BYTES];
  size_t len;
  if (!get_args(env, info, 3, argv) || !get_name(env, argv[1], name, &len, true)) return NULL;
  napi_typedarray_type type;
  size_t count;
  void *data;
  if (napi_get_typedarray_info(env, argv[2], &type, &count, &data, NULL, NULL) != napi_ok || type != napi_bigint64_array || count < ST_FIELDS) {
    return throw_type(env, "statAt: expected a BigInt64Array to fill");
  }
  struct stat st;
  int flags = AT_SYMLINK_NOFOLLOW | (len == 0 ? AT_EMPTY_PATH : 0);
  napi_value result;
  if (fstatat((int) get_int64(env, argv[0]), name, &st, flags) != 0) {
    if (errno != ENOENT && errno != ENOTDIR) return throw_errno(env, errno, "fstatat", name, len);
    napi_get_boolean(env, false, &result);
    return result;
  }
  put_stat(data, &st);
  napi_get_boolean(env, true, &result);
  return result;
}

/* mkdirAt(dirfd, name, mode) */
static napi_value js_mkdir_at(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char name[NAME_BYTES];
  size_t len;
  if (!get_args(env, info, 3, argv) || !get_name(env, argv[1], name, &len, false)) return NULL;
  if (mkdirat((int) get_int64(env, argv[0]), name, (mode_t) get_int64(env, argv[2])) != 0) return throw_errno(env, errno, "mkdirat", name, len);
  return NULL;
}

/* mknodAt(dirfd, name, mode, major, minor) */
static napi_value js_mknod_at(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  char name[NAME_BYTES];
  size_t len;
  if (!get_args(env, info, 5, argv) || !get_name(env, argv[1], name, &len, false)) return NULL;
  dev_t dev = makedev((unsigned) get_int64(env, argv[3]), (unsigned) get_int64(env, argv[4]));
  if (mknodat((int) get_int64(env, argv[0]), name, (mode_t) get_int64(env, argv[2]), dev) != 0) return throw_errno(env, errno, "mknodat", name, len);
  return NULL;
}

/* symlinkAt(target, dirfd, name): the target is stored as given, never resolved. */
static napi_value js_symlink_at(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char target[PATH_BYTES], name[NAME_BYTES];
  size_t target_len, len;
  if (!get_args(env, info, 3, argv) || !get_bytes(env, argv[0], target, sizeof target, &target_len) || !get_name(env, argv[2], name, &len, false)) return NULL;
  if (symlinkat(target, (int) get_int64(env, argv[1]), name) != 0) return throw_errno(env, errno, "symlinkat", name, len);
  return NULL;
}

/*
 * linkAt(fd, newdirfd, newname): a new name for fd's file. Through the
 * magic link (AT_SYMLINK_FOLLOW reaches the file itself, a symlink
 * included): AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH.
 */
static napi_value js_link_at(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char name[NAME_BYTES];
  size_t len;
  if (!get_args(env, info, 3, argv) || !get_name(env, argv[2], name, &len, false)) return NULL;
  char p[64];
  proc_path(p, sizeof p, (int) get_int64(env, argv[0]));
  if (linkat(AT_FDCWD, p, (int) get_int64(env, argv[1]), name, AT_SYMLINK_FOLLOW) != 0) return throw_errno(env, errno, "linkat", name, len);
  return NULL;
}

/*
 * linkNameAt(dirfd, name, newdirfd, newname): a new name for the entry
 * `name` of dirfd, never followed (a symlink gets the new name itself).
 */
static napi_value js_link_name_at(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char name[NAME_BYTES], new_name[NAME_BYTES];
  size_t len, new_len;
  if (!get_args(env, info, 4, argv) || !get_name(env, argv[1], name, &len, false) || !get_name(env, argv[3], new_name, &new_len, false)) return NULL;
  if (linkat((int) get_int64(env, argv[0]), name, (int) get_int64(env, argv[2]), new_name, 0) != 0) return throw_errno(env, errno, "linkat", new_name, new_len);
  return NULL;
}

/* unlinkAt(dirfd, name, isDir) */
static napi_value js_unlink_at(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char name[NAME_BYTES];
  size_t len;
  if (!get_args(env, info, 3, argv) || !get_name(env, argv[1], name, &len, false)) return NULL;
  if (unlinkat((int) get_int64(env, argv[0]), name, get_bool(env, argv[2]) ? AT_REMOVEDIR : 0) != 0) return throw_errno(env, errno, "unlinkat", name, len);
  return NULL;
}

/* renameAt(olddirfd, oldname, newdirfd, newname, flags): renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT). */
static napi_value js_rename_at(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  char from[NAME_BYTES], to[NAME_BYTES];
  size_t from_len, to_len;
  if (!get_args(env, info, 5, argv) || !get_name(env, argv[1], from, &from_len, false) || !get_name(env, argv[3], to, &to_len, false)) return NULL;
  if (renameat2((int) get_int64(env, argv[0]), from, (int) get_int64(env, argv[2]), to, (unsigned) get_int64(env, argv[4])) != 0) {
    return throw_errno(env, errno, "renameat2", from, from_len);
  }
  return NULL;
}

/* readlinkAt(dirfd, name) -> Buffer; "" reads the symlink the descriptor is open on. */
static napi_value js_readlink_at(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char name[NAME_BYTES], target[PATH_BYTES];
  size_t len;
  if (!get_args(env, info, 2, argv) || !get_name(env, argv[1], name, &len, true)) return NULL;
  ssize_t n = readlinkat((int) get_int64(env, argv[0]), name, target, sizeof target);
  if (n < 0) return throw_errno(env, errno, "readlinkat", name, len);
  return new_buffer(env, target, (size_t) n);
}

/* chownAt(dirfd, name, uid, gid): never following; "" is the descriptor itself. -1 keeps an id. */
static napi_value js_chown_at(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char name[NAME_BYTES];
  size_t len;
  if (!get_args(env, info, 4, argv) || !get_name(env, argv[1], name, &len, true)) return NULL;
  int flags = AT_SYMLINK_NOFOLLOW | (len == 0 ? AT_EMPTY_PATH : 0);
  if (fchownat((int) get_int64(env, argv[0]), name, (uid_t) get_int64(env, argv[2]), (gid_t) get_int64(env, argv[3]), flags) != 0) {
    return throw_errno(env, errno, "fchownat", name, len);
  }
  return NULL;
}

/*
 * chmodFd(fd, mode): of exactly fd's file. fchmodat follows a final
 * symlink, and fchmod refuses O_PATH descriptors; the magic link does
 * neither (a symlink itself answers EOPNOTSUPP, as Linux has no modes for them).
 */
static napi_value js_chmod_fd(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int fd = (int) get_int64(env, argv[0]);
  mode_t mode = (mode_t) get_int64(env, argv[1]);
  char p[64];
  proc_path(p, sizeof p, fd);
  int rc = is_path_fd(fd) ? chmod(p, mode) : fchmod(fd, mode);
  if (rc != 0) return throw_errno(env, errno, "fchmod", NULL, 0);
  return NULL;
}

/* The access and modification times of four arguments: seconds and nanoseconds of each. */
static void times_of(napi_env env, const napi_value *argv, struct timespec ts[2]) {
  ts[0] = (struct timespec) { .tv_sec = (time_t) get_int64(env, argv[0]), .tv_nsec = (long) get_int64(env, argv[1]) };
  ts[1] = (struct timespec) { .tv_sec = (time_t) get_int64(env, argv[2]), .tv_nsec = (long) get_int64(env, argv[3]) };
}

/*
 * utimens(target, atimeSec, atimeNsec, mtimeSec, mtimeNsec): a descriptor's
 * file (number), or a path, not following a final symlink (string). nsec may
 * be UTIME_NOW or UTIME_OMIT.
 */
static napi_value js_utimens(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv)) return NULL;
  struct timespec ts[2];
  times_of(env, argv + 1, ts);
  napi_valuetype type;
  napi_typeof(env, argv[0], &type);
  if (type == napi_number) {
    int fd = (int) get_int64(env, argv[0]);
    char p[64];
    proc_path(p, sizeof p, fd);
    int rc = is_path_fd(fd) ? utimensat(AT_FDCWD, p, ts, 0) : futimens(fd, ts);
    if (rc != 0) return throw_errno(env, errno, "utimensat", NULL, 0);
    return NULL;
  }
  char path[PATH_BYTES];
  size_t len;
  if (!get_bytes(env, argv[0], path, sizeof path, &len)) return NULL;
  if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0) return throw_errno(env, errno, "utimensat", path, len);
  return NULL;
}

/*
 * Entry `name` of a directory, itself (a final symlink not followed), in
 * one system call where the kernel has one for it, and otherwise through
 * an O_PATH descriptor of the entry and its magic link, as chmodFd and
 * getxattr(target) go.
 * getxattrat came with Linux 6.13, fchmodat2 with 6.6; a kernel without one
 * answers ENOSYS once, and is not asked again.
 */
#ifndef __NR_getxattrat
#define __NR_getxattrat 464
#endif
#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif

struct xattr_args_v0 {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

static bool no_getxattrat;
static bool no_fchmodat2;

/* The entry's own O_PATH descriptor and its magic link, for the kernels without the *at calls; -1 and errno if none. */
static int open_entry(int dirfd, const char *name, char *proc, size_t size) {
  int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) proc_path(proc, size, fd);
  return fd;
}

static ssize_t getxattr_at(int dirfd, const char *name, const char *attr, void *value, size_t size) {
  if (!no_getxattrat) {
    struct xattr_args_v0 args = { .value = (uint64_t) (uintptr_t) value, .size = (uint32_t) size };
    long n = syscall(__NR_getxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, attr, &args, sizeof args);
    if (n >= 0 || errno != ENOSYS) return (ssize_t) n;
    no_getxattrat = true;
  }
  char proc[64];
  int fd = open_entry(dirfd, name, proc, sizeof proc);
  if (fd < 0) return -1;
  ssize_t n = getxattr(proc, attr, value, size);
  int err = errno;
  close(fd);
  errno = err;
  return n;
}

/* chmodAt(dirfd, name, mode): of entry `name` itself (a symlink answers EOPNOTSUPP, as Linux has no modes for them). */
static napi_value js_chmod_at(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char name[NAME_BYTES];
  size_t len;
  if (!get_args(env, info, 3, argv) || !get_name(env, argv[1], name, &len, false)) return NULL;
  int dirfd = (int) get_int64(env, argv[0]);
  mode_t mode = (mode_t) get_int64(env, argv[2]);
  if (!no_fchmodat2) {
    if (syscall(__NR_fchmodat2, dirfd, name, mode, AT_SYMLINK_NOFOLLOW) == 0) return NULL;
    if (errno != ENOSYS) return throw_errno(env, errno, "fchmodat2", name, len);
    no_fchmodat2 = true;
  }
  char proc[64];
  int fd = open_entry(dirfd, name, proc, sizeof proc);
  if (fd < 0) return throw_errno(env, errno, "openat", name, len);
  int rc = chmod(proc, mode);
  int err = errno;
  close(fd);
  if (rc != 0) return throw_errno(env, err, "chmod", name, len);
  return NULL;
}

/* utimensAt(dirfd, name, atimeSec, atimeNsec, mtimeSec, mtimeNsec): of entry `name` itself; nsec may be UTIME_NOW or UTIME_OMIT. */
static napi_value js_utimens_at(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  char name[NAME_BYTES];
  size_t len;
  if (!get_args(env, info, 6, argv) || !get_name(env, argv[1], name, &len, false)) return NULL;
  struct timespec ts[2];
  times_of(env, argv + 2, ts);
  if (utimensat((int) get_int64(env, argv[0]), name, ts, AT_SYMLINK_NOFOLLOW) != 0) return throw_errno(env, errno, "utimensat", name, len);
  return NULL;
}

/* mknod(path, mode, major, minor): for trusted paths (tests, fixtures). */
static napi_value js_mknod(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char path[PATH_BYTES];
  size_t len;
  if (!get_args(env, info, 4, argv) || !get_bytes(env, argv[0], path, sizeof path, &len)) return NULL;
  dev_t dev = makedev((unsigned) get_int64(env, argv[2]), (unsigned) get_int64(env, argv[3]));
  if (mknod(path, (mode_t) get_int64(env, argv[1]), dev) != 0) return throw_errno(env, errno, "mknod", path, len);
  return NULL;
}

/*
 * Extended attributes of a target: a descriptor (number: its file; an
 * O_PATH one through its magic link) or a path (string or Buffer: never
 * following a final symlink).
 */
typedef struct {
  int fd;
  char path[PATH_BYTES];
  size_t path_len;
  bool by_path; /* path is used, with the l* calls */
  bool follow;  /* path is a magic link, used with the following calls */
  bool at;      /* path is an entry's name in directory fd (getxattrAt) */
} xattr_target;

static bool get_target(napi_env env, napi_value v, xattr_target *t) {
  napi_valuetype type;
  napi_typeof(env, v, &type);
  t->by_path = t->follow = t->at = false;
  if (type == napi_number) {
    t->fd = (int) get_int64(env, v);
    if (is_path_fd(t->fd)) {
      proc_path(t->path, sizeof t->path, t->fd);
      t->path_len = strlen(t->path);
      t->by_path = t->follow = true;
    }
    return true;
  }
  t->by_path = true;
  return get_bytes(env, v, t->path, sizeof t->path, &t->path_len);
}

static ssize_t t_getxattr(const xattr_target *t, const char *name, void *value, size_t size) {
  if (t->at) return getxattr_at(t->fd, t->path, name, value, size);
  if (!t->by_path) return fgetxattr(t->fd, name, value, size);
  return t->follow ? getxattr(t->path, name, value, size) : lgetxattr(t->path, name, value, size);
}

static ssize_t t_listxattr(const xattr_target *t, char *list, size_t size) {
  if (!t->by_path) return flistxattr(t->fd, list, size);
  return t->follow ? listxattr(t->path, list, size) : llistxattr(t->path, list, size);
}

static const char *shown(const xattr_target *t) {
  return (t->by_path && !t->follow) || t->at ? t->path : NULL;
}

/* Attribute `name` of t's file: a Buffer, or undefined when absent (no exception: lookups ask often). */
static napi_value xattr_value(napi_env env, const xattr_target *t, const char *name) {
  for (;;) {
    ssize_t size = t_getxattr(t, name, NULL, 0);
    if (size < 0 && (errno == ENODATA || errno == ENOTSUP)) return NULL;
    if (size < 0) return throw_errno(env, errno, "getxattr", shown(t), t->path_len);
    char *data = malloc(size > 0 ? (size_t) size : 1);
    if (data == NULL) return throw_errno(env, ENOMEM, "getxattr", NULL, 0);
    ssize_t got = t_getxattr(t, name, data, (size_t) size);
    int err = errno;
    napi_value result = NULL;
    if (got >= 0) result = new_buffer(env, data, (size_t) got);
    free(data);
    if (got >= 0) return result;
    if (err == ENODATA) return NULL;
    if (err != ERANGE) return throw_errno(env, err, "getxattr", shown(t), t->path_len);
  }
}

/* getxattr(target, name) -> Buffer, or undefined when absent. */
static napi_value js_getxattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  xattr_target t;
  char name[NAME_BYTES];
  size_t name_len;
  if (!get_args(env, info, 2, argv) || !get_target(env, argv[0], &t) || !get_bytes(env, argv[1], name, sizeof name, &name_len)) return NULL;
  return xattr_value(env, &t, name);
}

/* getxattrAt(dirfd, name, attr) -> Buffer, or undefined when absent: of entry `name` itself. */
static napi_value js_getxattr_at(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  xattr_target t = { .at = true };
  char attr[NAME_BYTES];
  size_t attr_len;
  if (!get_args(env, info, 3, argv) || !get_name(env, argv[1], t.path, &t.path_len, false) || !get_bytes(env, argv[2], attr, sizeof attr, &attr_len)) return NULL;
  t.fd = (int) get_int64(env, argv[0]);
  return xattr_value(env, &t, attr);
}

/* setxattr(target, name, value: Buffer, flags) */
static napi_value js_setxattr(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  xattr_target t;
  char name[NAME_BYTES];
  size_t name_len;
  if (!get_args(env, info, 4, argv) || !get_target(env, argv[0], &t) || !get_bytes(env, argv[1], name, sizeof name, &name_len)) return NULL;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok) return throw_type(env, "setxattr: the value must be a Buffer");
  int flags = (int) get_int64(env, argv[3]);
  int rc = !t.by_path ? fsetxattr(t.fd, name, data, len, flags) : t.follow ? setxattr(t.path, name, data, len, flags) : lsetxattr(t.path, name, data, len, flags);
  if (rc != 0) return throw_errno(env, errno, "setxattr", shown(&t), t.path_len);
  return NULL;
}

/* removexattr(target, name) */
static napi_value js_removexattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  xattr_target t;
  char name[NAME_BYTES];
  size_t name_len;
  if (!get_args(env, info, 2, argv) || !get_target(env, argv[0], &t) || !get_bytes(env, argv[1], name, sizeof name, &name_len)) return NULL;
  int rc = !t.by_path ? fremovexattr(t.fd, name) : t.follow ? removexattr(t.path, name) : lremovexattr(t.path, name);
  if (rc != 0) return throw_errno(env, errno, "removexattr", shown(&t), t.path_len);
  return NULL;
}

/* listxattr(target) -> Buffer[] (names are bytes); a file system without attributes has none. */
static napi_value js_listxattr(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  xattr_target t;
  if (!get_args(env, info, 1, argv) || !get_target(env, argv[0], &t)) return NULL;
  for (;;) {
    napi_value list;
    napi_create_array(env, &list);
    ssize_t size = t_listxattr(&t, NULL, 0);
    if (size < 0 && errno == ENOTSUP) return list;
    if (size < 0) return throw_errno(env, errno, "listxattr", shown(&t), t.path_len);
    if (size == 0) return list;
    char *names = malloc((size_t) size);
    if (names == NULL) return throw_errno(env, ENOMEM, "listxattr", NULL, 0);
    ssize_t got = t_listxattr(&t, names, (size_t) size);
    if (got < 0) {
      int err = errno;
      free(names);
      if (err == ERANGE) continue;
      return throw_errno(env, err, "listxattr", shown(&t), t.path_len);
    }
    uint32_t i = 0;
    for (ssize_t at = 0; at < got; at += (ssize_t) strlen(names + at) + 1) {
      napi_set_element(env, list, i++, new_buffer(env, names + at, strlen(names + at)));
    }
    free(names);
    return list;
  }
}

/*
 * readdirFd(dirfd) -> Buffer of the directory's entries but `.` and `..`,
 * each as: inode (8 bytes, little-endian), d_type (1), name length (1),
 * name. Read with getdents64 on a descriptor of its own (dirfd may be
 * O_PATH), so names come as the bytes they are.
 */
static napi_value js_readdir_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int fd = openat((int) get_int64(env, argv[0]), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "openat", ".", 1);
  size_t cap = 16384, used = 0;
  char *out = malloc(cap);
  char buf[32768];
  int err = out == NULL ? ENOMEM : 0;
  while (err == 0) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;
    for (long at = 0; at < n;) {
      struct dirent64 *d = (struct dirent64 *) (buf + at);
      at += d->d_reclen;
      size_t len = strlen(d->d_name);
      if ((len == 1 && d->d_name[0] == '.') || (len == 2 && d->d_name[0] == '.' && d->d_name[1] == '.')) continue;
      if (used + 10 + len > cap) {
        char *bigger = realloc(out, cap * 2);
        if (bigger == NULL) {
          err = ENOMEM;
          break;
        }
        out = bigger;
        cap *= 2;
      }
      uint64_t ino = d->d_ino;
      memcpy(out + used, &ino, 8);
      out[used + 8] = (char) d->d_type;
      out[used + 9] = (char) len;
      memcpy(out + used + 10, d->d_name, len);
      used += 10 + len;
    }
  }
  close(fd);
  if (err != 0) {
    free(out);
    return throw_errno(env, err, "getdents64", NULL, 0);
  }
  napi_value result = new_buffer(env, out, used);
  free(out);
  return result;
}

/*
 * Makes dst a copy of the first `size` bytes of src, keeping its holes:
 * only the extents SEEK_DATA finds are copied (copy_file_range, in the
 * kernel), and dst is sized with ftruncate. Returns 0, or the errno and,
 * in *failed, the call that failed. Touches nothing of JavaScript's, so
 * it runs on libuv's pool as well as on the JavaScript thread.
 */
static int copy_data(int src, int dst, off_t size, const char **failed) {
  off_t data = 0;
  while (data < size) {
    data = lseek(src, data, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      *failed = "lseek";
      return errno;
    }
    off_t hole = lseek(src, data, SEEK_HOLE);
    if (hole < 0) {
      *failed = "lseek";
      return errno;
    }
    off_t in = data, out = data;
    while (in < hole) {
      ssize_t n = copy_file_range(src, &in, dst, &out, (size_t) (hole - in), 0);
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS)) {
        /* Layers on different file systems (or ones without it): copy by hand. */
        char buf[65536];
        while (in < hole) {
          size_t want = (size_t) (hole - in) < sizeof buf ? (size_t) (hole - in) : sizeof buf;
          ssize_t got = pread(src, buf, want, in);
          if (got < 0) {
            *failed = "pread";
            return errno;
          }
          if (got == 0) break;
          for (ssize_t done = 0; done < got;) {
            ssize_t put = pwrite(dst, buf + done, (size_t) (got - done), out + done);
            if (put < 0) {
              *failed = "pwrite";
              return errno;
            }
            done += put;
          }
          in += got;
          out += got;
        }
        break;
      }
      if (n < 0) {
        *failed = "copy_file_range";
        return errno;
      }
      if (n == 0) break;
    }
    data = hole;
  }
  if (ftruncate(dst, size) != 0) {
    *failed = "ftruncate";
    return errno;
  }
  return 0;
}

/* copyData(srcFd, dstFd, size): copy_data on the calling thread. */
static napi_value js_copy_data(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  const char *failed = NULL;
  int err = copy_data((int) get_int64(env, argv[0]), (int) get_int64(env, argv[1]), (off_t) get_int64(env, argv[2]), &failed);
  if (err != 0) return throw_errno(env, err, failed, NULL, 0);
  return NULL;
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int src, dst;
  off_t size;
  int err;
  const char *failed;
} copy_job;

static void copy_execute(napi_env env, void *data) {
  copy_job *job = data;
  job->err = copy_data(job->src, job->dst, job->size, &job->failed);
}

static void copy_complete(napi_env env, napi_status status, void *data) {
  copy_job *job = data;
  /* Nothing cancels a copy; a status other than napi_ok says it never ran. */
  if (status != napi_ok) {
    job->err = ECANCELED;
    job->failed = "copy";
  }
  if (job->err == 0) {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, job->deferred, undefined);
  } else {
    napi_reject_deferred(env, job->deferred, errno_error(env, job->err, job->failed, NULL, 0));
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

/*
 * copyDataAsync(srcFd, dstFd, size) -> Promise: copy_data on libuv's pool,
 * so that a big file's copy leaves the JavaScript thread (and every mount
 * it serves) free. Both descriptors must stay open until it settles.
 */
static napi_value js_copy_data_async(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  copy_job *job = calloc(1, sizeof *job);
  if (job == NULL) return throw_errno(env, ENOMEM, "calloc", NULL, 0);
  job->src = (int) get_int64(env, argv[0]);
  job->dst = (int) get_int64(env, argv[1]);
  job->size = (off_t) get_int64(env, argv[2]);
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "snapfs.copyData", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, copy_execute, copy_complete, job, &job->work) != napi_ok || napi_queue_async_work(env, job->work) != napi_ok) {
    /* The promise is dropped unsettled and unseen: the caller gets the exception instead. */
    if (job->work != NULL) napi_delete_async_work(env, job->work);
    free(job);
    return throw_errno(env, ENOMEM, "napi_queue_async_work", NULL, 0);
  }
  return promise;
}

/*
 * createFileAt(dirfd, name, data, mode, chown, uid, gid, mtimeSec, mtimeNsec):
 * a new file with its content, owner (when chown is set), mode and
 * modification time, in one call: unpacking a layer makes tens of thousands
 * of small files, and each call from JavaScript costs more than the system
 * call it makes. Refuses to replace anything (O_EXCL) or follow a symlink.
 */
static napi_value js_create_file_at(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  char name[NAME_BYTES];
  size_t len;
  if (!get_args(env, info, 9, argv) || !get_name(env, argv[1], name, &len, false)) return NULL;
  void *data;
  size_t size;
  if (napi_get_buffer_info(env, argv[2], &data, &size) != napi_ok) return throw_type(env, "createFileAt: expected a Buffer");
  mode_t mode = (mode_t) get_int64(env, argv[3]);
  bool chown_it = get_bool(env, argv[4]);
  uid_t uid = (uid_t) get_int64(env, argv[5]);
  gid_t gid = (gid_t) get_int64(env, argv[6]);
  struct timespec times[2] = {
    { .tv_sec = 0, .tv_nsec = UTIME_OMIT },
    { .tv_sec = (time_t) get_int64(env, argv[7]), .tv_nsec = (long) get_int64(env, argv[8]) },
  };
  int fd = openat((int) get_int64(env, argv[0]), name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0777);
  if (fd < 0) return throw_errno(env, errno, "openat", name, len);
  const char *p = data;
  size_t left = size;
  const char *failed = NULL;
  while (left > 0 && failed == NULL) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) failed = "write";
    else {
      p += n;
      left -= (size_t) n;
    }
  }
  /* Owner before mode: chown clears set-id bits. */
  if (failed == NULL && chown_it && fchown(fd, uid, gid) != 0) failed = "fchown";
  if (failed == NULL && fchmod(fd, mode) != 0) failed = "fchmod";
  if (failed == NULL && futimens(fd, times) != 0) failed = "futimens";
  int err = errno;
  if (close(fd) != 0 && failed == NULL) {
    failed = "close";
    err = errno;
  }
  if (failed != NULL) return throw_errno(env, err, failed, name, len);
  return NULL;
}

/*
 * tryLock(fd): an exclusive flock on fd's file without waiting; true when
 * taken, false when another open file description holds it. The kernel
 * lets go of it when the process ends, however it ends: a lock is how a
 * live process says a thing is still its own.
 */
static napi_value js_try_lock(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  napi_value result;
  if (flock((int) get_int64(env, argv[0]), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return throw_errno(env, errno, "flock", NULL, 0);
    napi_get_boolean(env, false, &result);
    return result;
  }
  napi_get_boolean(env, true, &result);
  return result;
}

/* Wall-clock time in nanoseconds: Node has it only in milliseconds. */
static napi_value js_realtime_ns(napi_env env, napi_callback_info info) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  napi_value result;
  napi_create_bigint_int64(env, (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec, &result);
  return result;
}

void init_files(napi_env env, napi_value exports) {
  export_function(env, exports, "openAt", js_open_at);
  export_function(env, exports, "openBeneath", js_open_beneath);
  export_function(env, exports, "reopen", js_reopen);
  export_function(env, exports, "openFile", js_open_file);
  export_function(env, exports, "statAt", js_stat_at);
  export_function(env, exports, "mkdirAt", js_mkdir_at);
  export_function(env, exports, "mknodAt", js_mknod_at);
  export_function(env, exports, "symlinkAt", js_symlink_at);
  export_function(env, exports, "linkAt", js_link_at);
  export_function(env, exports, "linkNameAt", js_link_name_at);
  export_function(env, exports, "unlinkAt", js_unlink_at);
  export_function(env, exports, "renameAt", js_rename_at);
  export_function(env, exports, "readlinkAt", js_readlink_at);
  export_function(env, exports, "chownAt", js_chown_at);
  export_function(env, exports, "chmodFd", js_chmod_fd);
  export_function(env, exports, "utimens", js_utimens);
  export_function(env, exports, "mknod", js_mknod);
  export_function(env, exports, "getxattr", js_getxattr);
  export_function(env, exports, "getxattrAt", js_getxattr_at);
  export_function(env, exports, "chmodAt", js_chmod_at);
  export_function(env, exports, "utimensAt", js_utimens_at);
  export_function(env, exports, "setxattr", js_setxattr);
  export_function(env, exports, "removexattr", js_removexattr);
  export_function(env, exports, "listxattr", js_listxattr);
  export_function(env, exports, "readdirFd", js_readdir_fd);
  export_function(env, exports, "copyData", js_copy_data);
  export_function(env, exports, "copyDataAsync", js_copy_data_async);
  export_function(env, exports, "createFileAt", js_create_file_at);
  export_function(env, exports, "tryLock", js_try_lock);
  export_function(env, exports, "realtimeNs", js_realtime_ns);
  napi_value v;
  napi_create_int64(env, UTIME_OMIT, &v);
  napi_set_named_property(env, exports, "UTIME_OMIT", v);
  napi_create_int64(env, UTIME_NOW, &v);
  napi_set_named_property(env, exports, "UTIME_NOW", v);
}
