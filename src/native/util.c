/* Argument helpers and errors shared by the native files (see native.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "native.h"

static const char *errno_name(int err) {
  switch (err) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(EBADF) E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT)
    E(EBUSY) E(EEXIST) E(EXDEV) E(ENODEV) E(ENOTDIR) E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ETXTBSY)
    E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS) E(EMLINK) E(ERANGE) E(ENAMETOOLONG) E(ENOSYS) E(ENOTEMPTY)
    E(ELOOP) E(ENODATA) E(EOPNOTSUPP) E(EDQUOT) E(ENOTCONN) E(EOVERFLOW) E(ESTALE)
    E(ECONNREFUSED) E(ECONNRESET) E(EPIPE) E(EADDRINUSE) E(EMSGSIZE) E(ETIMEDOUT) E(ECANCELED)
#undef E
  }
  return NULL;
}

/* `what` as printable text: bytes outside printable ASCII as \xHH, as `ls -b` shows them. */
static void escape(char *out, size_t size, const char *what, size_t len) {
  size_t at = 0;
  for (size_t i = 0; i < len && at + 5 < size; i++) {
    unsigned char c = (unsigned char) what[i];
    if (c >= 0x20 && c < 0x7f && c != '\\') out[at++] = (char) c;
    else at += (size_t) snprintf(out + at, size - at, "\\x%02x", c);
  }
  out[at] = '\0';
}

napi_value errno_error(napi_env env, int err, const char *syscall, const char *what, size_t what_len) {
  char code_buf[32];
  const char *code = errno_name(err);
  if (code == NULL) {
    snprintf(code_buf, sizeof code_buf, "E%d", err);
    code = code_buf;
  }
  char shown[PATH_BYTES];
  char message[PATH_BYTES + 128];
  if (what != NULL) {
    escape(shown, sizeof shown, what, what_len);
    snprintf(message, sizeof message, "%s: %s, %s '%s'", code, strerror(err), syscall, shown);
  } else {
    snprintf(message, sizeof message, "%s: %s, %s", code, strerror(err), syscall);
  }
  napi_value error, code_value, errno_value, syscall_value, message_value;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value);
  napi_create_error(env, NULL, message_value, &error);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value);
  napi_create_int32(env, -err, &errno_value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value);
  napi_set_named_property(env, error, "code", code_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  return error;
}

napi_value throw_errno(napi_env env, int err, const char *syscall, const char *what, size_t what_len) {
  napi_throw(env, errno_error(env, err, syscall, what, what_len));
  return NULL;
}

napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < want) {
    throw_type(env, "too few arguments");
    return false;
  }
  return true;
}

int64_t get_int64(napi_env env, napi_value v) {
  int64_t n = 0;
  napi_get_value_int64(env, v, &n);
  return n;
}

bool get_bool(napi_env env, napi_value v) {
  bool b = false;
  napi_get_value_bool(env, v, &b);
  return b;
}

bool get_bytes(napi_env env, napi_value v, char *buf, size_t size, size_t *len) {
  bool is_buffer = false;
  napi_is_buffer(env, v, &is_buffer);
  if (is_buffer) {
    void *data;
    size_t n;
    napi_get_buffer_info(env, v, &data, &n);
    if (n >= size) {
      throw_errno(env, ENAMETOOLONG, "name", data, n);
      return false;
    }
    if (memchr(data, 0, n) != NULL) {
      throw_type(env, "a name holds no NUL byte");
      return false;
    }
    memcpy(buf, data, n);
    buf[n] = '\0';
    *len = n;
    return true;
  }
  size_t n;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) {
    throw_type(env, "expected a string or a Buffer");
    return false;
  }
  if (n >= size) {
    throw_errno(env, ENAMETOOLONG, "name", NULL, 0);
    return false;
  }
  napi_get_value_string_utf8(env, v, buf, size, &n);
  if (strlen(buf) != n) {
    throw_type(env, "a name holds no NUL byte");
    return false;
  }
  *len = n;
  return true;
}

bool get_name(napi_env env, napi_value v, char *buf, size_t *len, bool allow_empty) {
  if (!get_bytes(env, v, buf, NAME_BYTES, len)) return false;
  bool dots = strcmp(buf, ".") == 0 || strcmp(buf, "..") == 0;
  if ((*len == 0 && !allow_empty) || dots || memchr(buf, '/', *len) != NULL) {
    throw_errno(env, EINVAL, "name", buf, *len);
    return false;
  }
  return true;
}

napi_value new_buffer(napi_env env, const void *data, size_t len) {
  napi_value buffer;
  void *copy;
  napi_create_buffer_copy(env, len, data, &copy, &buffer);
  return buffer;
}

void export_function(napi_env env, napi_value exports, const char *name, napi_callback fn) {
  napi_value f;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f);
  napi_set_named_property(env, exports, name, f);
}

static napi_value init(napi_env env, napi_value exports) {
  init_files(env, exports);
  init_fuse(env, exports);
  init_unix(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
