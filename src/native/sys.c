/*
 * The system calls Node.js does not offer and a copy-on-write file system
 * needs: mknod (overlayfs whiteouts are character devices 0/0), utimensat
 * with nanoseconds (fs.utimes takes doubles), and extended attributes
 * (opaque directories, and copy-up that keeps every attribute). All act on
 * the path itself, never following a final symlink, and are synchronous:
 * they are only ever called on layer directories, never on a mount served
 * by the calling process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <node_api.h>

#define PATH_BYTES 4096
#define NAME_BYTES 256

static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  char code[32];
  const char *name = NULL;
  switch (err) {
#define E(x) case x: name = #x; break;
    E(EPERM) E(ENOENT) E(EIO) E(EBADF) E(EACCES) E(EEXIST) E(EXDEV) E(ENOTDIR) E(EISDIR) E(EINVAL)
    E(ENOSPC) E(EROFS) E(EMLINK) E(ERANGE) E(ENAMETOOLONG) E(ENOTEMPTY) E(ELOOP) E(ENODATA) E(ENOTSUP)
    E(E2BIG) E(EDQUOT) E(ENXIO) E(ENOMEM) E(EMFILE) E(ENFILE)
#undef E
  }
  if (name == NULL) {
    snprintf(code, sizeof code, "E%d", err);
    name = code;
  }
  char message[PATH_BYTES + 128];
  snprintf(message, sizeof message, "%s: %s, %s '%s'", name, strerror(err), syscall, path);
  napi_value error, code_value, errno_value, syscall_value, path_value, message_value;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value);
  napi_create_error(env, NULL, message_value, &error);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code_value);
  napi_create_int32(env, -err, &errno_value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value);
  napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &path_value);
  napi_set_named_property(env, error, "code", code_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  napi_set_named_property(env, error, "path", path_value);
  napi_throw(env, error);
  return NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < want) {
    napi_throw_type_error(env, NULL, "too few arguments");
    return 0;
  }
  return 1;
}

static int get_string(napi_env env, napi_value v, char *buf, size_t size) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, buf, size, &len) != napi_ok || len >= size - 1) {
    napi_throw_type_error(env, NULL, "expected a string of reasonable length");
    return 0;
  }
  return 1;
}

static int64_t get_int64(napi_env env, napi_value v) {
  int64_t n = 0;
  napi_get_value_int64(env, v, &n);
  return n;
}

/* mknod(path, mode, major, minor) */
static napi_value js_mknod(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char path[PATH_BYTES];
  if (!get_args(env, info, 4, argv) || !get_string(env, argv[0], path, sizeof path)) return NULL;
  dev_t dev = makedev((unsigned) get_int64(env, argv[2]), (unsigned) get_int64(env, argv[3]));
  if (mknod(path, (mode_t) get_int64(env, argv[1]), dev) != 0) return throw_errno(env, errno, "mknod", path);
  return NULL;
}

/* utimens(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec): nsec may be UTIME_NOW or UTIME_OMIT. */
static napi_value js_utimens(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  char path[PATH_BYTES];
  if (!get_args(env, info, 5, argv) || !get_string(env, argv[0], path, sizeof path)) return NULL;
  struct timespec ts[2] = {
    { .tv_sec = (time_t) get_int64(env, argv[1]), .tv_nsec = (long) get_int64(env, argv[2]) },
    { .tv_sec = (time_t) get_int64(env, argv[3]), .tv_nsec = (long) get_int64(env, argv[4]) },
  };
  if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0) return throw_errno(env, errno, "utimensat", path);
  return NULL;
}

/* getxattr(path, name) -> Buffer, or undefined when absent (no exception: lookups ask often). */
static napi_value js_getxattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char path[PATH_BYTES], name[NAME_BYTES];
  if (!get_args(env, info, 2, argv) || !get_string(env, argv[0], path, sizeof path) ||
      !get_string(env, argv[1], name, sizeof name)) return NULL;
  for (;;) {
    ssize_t size = lgetxattr(path, name, NULL, 0);
    if (size < 0 && errno == ENODATA) return NULL;
    if (size < 0) return throw_errno(env, errno, "lgetxattr", path);
    void *data;
    napi_value buffer;
    napi_create_buffer(env, (size_t) size, &data, &buffer);
    ssize_t got = lgetxattr(path, name, data, (size_t) size);
    if (got >= 0) {
      napi_value slice = buffer;
      if (got < size) {
        napi_value copy;
        void *copy_data;
        napi_create_buffer_copy(env, (size_t) got, data, &copy_data, &copy);
        slice = copy;
      }
      return slice;
    }
    if (errno != ERANGE) return throw_errno(env, errno, "lgetxattr", path);
  }
}

/* setxattr(path, name, value: Buffer, flags) */
static napi_value js_setxattr(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char path[PATH_BYTES], name[NAME_BYTES];
  if (!get_args(env, info, 4, argv) || !get_string(env, argv[0], path, sizeof path) ||
      !get_string(env, argv[1], name, sizeof name)) return NULL;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "value must be a Buffer");
    return NULL;
  }
  if (lsetxattr(path, name, data, len, (int) get_int64(env, argv[3])) != 0) return throw_errno(env, errno, "lsetxattr", path);
  return NULL;
}

/* listxattr(path) -> string[] */
static napi_value js_listxattr(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[PATH_BYTES];
  if (!get_args(env, info, 1, argv) || !get_string(env, argv[0], path, sizeof path)) return NULL;
  for (;;) {
    ssize_t size = llistxattr(path, NULL, 0);
    if (size < 0) return throw_errno(env, errno, "llistxattr", path);
    napi_value list;
    napi_create_array(env, &list);
    if (size == 0) return list;
    char *names = malloc((size_t) size);
    if (names == NULL) return throw_errno(env, ENOMEM, "malloc", path);
    ssize_t got = llistxattr(path, names, (size_t) size);
    if (got < 0) {
      int err = errno;
      free(names);
      if (err == ERANGE) continue;
      return throw_errno(env, err, "llistxattr", path);
    }
    uint32_t i = 0;
    for (ssize_t at = 0; at < got; at += (ssize_t) strlen(names + at) + 1) {
      napi_value name;
      napi_create_string_utf8(env, names + at, NAPI_AUTO_LENGTH, &name);
      napi_set_element(env, list, i++, name);
    }
    free(names);
    return list;
  }
}

/* removexattr(path, name) */
static napi_value js_removexattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char path[PATH_BYTES], name[NAME_BYTES];
  if (!get_args(env, info, 2, argv) || !get_string(env, argv[0], path, sizeof path) ||
      !get_string(env, argv[1], name, sizeof name)) return NULL;
  if (lremovexattr(path, name) != 0) return throw_errno(env, errno, "lremovexattr", path);
  return NULL;
}

/*
 * copyData(srcFd, dstFd, size): copies the data of a file, keeping its holes:
 * only the extents SEEK_DATA finds are copied (copy_file_range, in the
 * kernel), and the destination is sized with ftruncate.
 */
static napi_value js_copy_data(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  int src = (int) get_int64(env, argv[0]), dst = (int) get_int64(env, argv[1]);
  off_t size = (off_t) get_int64(env, argv[2]);
  off_t data = 0;
  while (data < size) {
    data = lseek(src, data, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      return throw_errno(env, errno, "lseek", "(copy source)");
    }
    off_t hole = lseek(src, data, SEEK_HOLE);
    if (hole < 0) return throw_errno(env, errno, "lseek", "(copy source)");
    off_t in = data, out = data;
    while (in < hole) {
      ssize_t n = copy_file_range(src, &in, dst, &out, (size_t) (hole - in), 0);
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS)) {
        /* Layers on different file systems (or ones without it): copy by hand. */
        char buf[65536];
        while (in < hole) {
          size_t want = (size_t) (hole - in) < sizeof buf ? (size_t) (hole - in) : sizeof buf;
          ssize_t got = pread(src, buf, want, in);
          if (got < 0) return throw_errno(env, errno, "pread", "(copy source)");
          if (got == 0) break;
          for (ssize_t done = 0; done < got;) {
            ssize_t put = pwrite(dst, buf + done, (size_t) (got - done), out + done);
            if (put < 0) return throw_errno(env, errno, "pwrite", "(copy destination)");
            done += put;
          }
          in += got;
          out += got;
        }
        break;
      }
      if (n < 0) return throw_errno(env, errno, "copy_file_range", "(copy)");
      if (n == 0) break;
    }
    data = hole;
  }
  if (ftruncate(dst, size) != 0) return throw_errno(env, errno, "ftruncate", "(copy destination)");
  return NULL;
}

/*
 * A new file with its content, owner (when chown is set), mode and
 * modification time, in one call: unpacking a layer makes tens of thousands
 * of small files, and each call from JavaScript costs more than the system
 * call it makes. Refuses to replace anything (O_EXCL) or follow a symlink.
 */
static napi_value js_create_file(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  char path[PATH_BYTES];
  if (!get_args(env, info, 8, argv) || !get_string(env, argv[0], path, sizeof path)) return NULL;
  void *data;
  size_t size;
  if (napi_get_buffer_info(env, argv[1], &data, &size) != napi_ok) {
    napi_throw_type_error(env, NULL, "createFile: expected a Buffer");
    return NULL;
  }
  mode_t mode = (mode_t) get_int64(env, argv[2]);
  bool chown_it;
  napi_get_value_bool(env, argv[3], &chown_it);
  uid_t uid = (uid_t) get_int64(env, argv[4]);
  gid_t gid = (gid_t) get_int64(env, argv[5]);
  struct timespec times[2] = {
    { .tv_sec = 0, .tv_nsec = UTIME_OMIT },
    { .tv_sec = (time_t) get_int64(env, argv[6]), .tv_nsec = (long) get_int64(env, argv[7]) },
  };
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0777);
  if (fd < 0) return throw_errno(env, errno, "open", path);
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
  if (failed != NULL) return throw_errno(env, err, failed, path);
  return NULL;
}

/* Wall-clock time in nanoseconds: Node has it only in milliseconds. */
static napi_value js_realtime_ns(napi_env env, napi_callback_info info) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  napi_value result;
  napi_create_bigint_int64(env, (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "mknod", NULL, js_mknod, NULL, NULL, NULL, napi_default, NULL },
    { "utimens", NULL, js_utimens, NULL, NULL, NULL, napi_default, NULL },
    { "getxattr", NULL, js_getxattr, NULL, NULL, NULL, napi_default, NULL },
    { "setxattr", NULL, js_setxattr, NULL, NULL, NULL, napi_default, NULL },
    { "listxattr", NULL, js_listxattr, NULL, NULL, NULL, napi_default, NULL },
    { "removexattr", NULL, js_removexattr, NULL, NULL, NULL, napi_default, NULL },
    { "copyData", NULL, js_copy_data, NULL, NULL, NULL, napi_default, NULL },
    { "realtimeNs", NULL, js_realtime_ns, NULL, NULL, NULL, napi_default, NULL },
    { "createFile", NULL, js_create_file, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value omit;
  napi_create_int64(env, UTIME_OMIT, &omit);
  napi_set_named_property(env, exports, "UTIME_OMIT", omit);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
