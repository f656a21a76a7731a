/*
 * Unix sockets that carry descriptors, and who is on the other end: what a
 * mount helper needs to hand a mount (its /dev/fuse descriptor and the
 * layers' directory descriptors) to a daemon serving many mounts, as
 * fusermount hands a mount to libfuse. Node.js has neither SCM_RIGHTS nor
 * SO_PEERCRED.
 *
 * Sockets are SOCK_SEQPACKET: each message arrives whole, with its
 * descriptors, or not at all. A daemon's sockets are non-blocking and
 * watched by libuv (watchReadable); a client's block, with a time limit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>
#include "native.h"

/* More descriptors than a message may carry: a mount's device and its layers (lowerdir takes up to 500). */
#define MAX_FDS 512
/* The largest message: a request's text. */
#define MAX_MESSAGE (256 * 1024)

static bool socket_address(napi_env env, napi_value v, struct sockaddr_un *addr, socklen_t *len) {
  char path[PATH_BYTES];
  size_t n;
  if (!get_bytes(env, v, path, sizeof path, &n)) return false;
  if (n == 0 || n >= sizeof addr->sun_path) {
    throw_errno(env, ENAMETOOLONG, "bind", path, n);
    return false;
  }
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, path, n);
  *len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);
  return true;
}

/* unixListen(path, backlog) -> fd: a non-blocking listening socket bound at path (mode from the umask). */
static napi_value js_unix_listen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  struct sockaddr_un addr;
  socklen_t len;
  if (!get_args(env, info, 2, argv) || !socket_address(env, argv[0], &addr, &len)) return NULL;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", NULL, 0);
  if (bind(fd, (struct sockaddr *) &addr, len) != 0 || listen(fd, (int) get_int64(env, argv[1])) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "bind", addr.sun_path, strlen(addr.sun_path));
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

/*
 * unixConnect(path, timeoutMs) -> fd: a blocking socket connected to path,
 * whose connect, sends and receives each wait timeoutMs at most (a
 * listener that is behind makes connect wait); with timeoutMs 0, a
 * non-blocking one, whose connect fails at once (EAGAIN) rather than wait.
 */
static napi_value js_unix_connect(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  struct sockaddr_un addr;
  socklen_t len;
  if (!get_args(env, info, 2, argv) || !socket_address(env, argv[0], &addr, &len)) return NULL;
  int64_t ms = get_int64(env, argv[1]);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | (ms == 0 ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return throw_errno(env, errno, "socket", NULL, 0);
  struct timeval tv = { .tv_sec = (time_t) (ms / 1000), .tv_usec = (suseconds_t) ((ms % 1000) * 1000) };
  if ((ms != 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)) || connect(fd, (struct sockaddr *) &addr, len) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "connect", addr.sun_path, strlen(addr.sun_path));
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

/*
 * unixAdopt(fd) -> path: takes fd, a listening SOCK_SEQPACKET unix socket
 * made by another (systemd's socket activation), as one of ours:
 * non-blocking and close-on-exec, as unixListen makes them; returns the
 * path it is bound at. Anything else is EINVAL.
 */
static napi_value js_unix_adopt(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int fd = (int) get_int64(env, argv[0]), type = 0, listening = 0;
  socklen_t len = sizeof type;
  struct sockaddr_un addr;
  socklen_t alen = sizeof addr;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return throw_errno(env, errno, "getsockopt", NULL, 0);
  len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0) return throw_errno(env, errno, "getsockopt", NULL, 0);
  if (getsockname(fd, (struct sockaddr *) &addr, &alen) != 0) return throw_errno(env, errno, "getsockname", NULL, 0);
  if (type != SOCK_SEQPACKET || !listening || addr.sun_family != AF_UNIX) return throw_errno(env, EINVAL, "unixAdopt", NULL, 0);
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) return throw_errno(env, errno, "fcntl", NULL, 0);
  napi_value result;
  size_t n = alen > offsetof(struct sockaddr_un, sun_path) ? strnlen(addr.sun_path, alen - offsetof(struct sockaddr_un, sun_path)) : 0;
  napi_create_string_utf8(env, addr.sun_path, n, &result);
  return result;
}

/* unixAccept(fd) -> fd | -1: a connection waiting on listening socket fd (non-blocking), or -1 if none is. */
static napi_value js_unix_accept(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int fd = accept4((int) get_int64(env, argv[0]), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0 && errno != EAGAIN && errno != ECONNABORTED) return throw_errno(env, errno, "accept4", NULL, 0);
  napi_value result;
  napi_create_int32(env, fd < 0 ? -1 : fd, &result);
  return result;
}

/* unixPeer(fd) -> [pid, uid, gid]: who connected, as the kernel saw them at connect(2). */
static napi_value js_unix_peer(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt((int) get_int64(env, argv[0]), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_errno(env, errno, "getsockopt", NULL, 0);
  napi_value result, v;
  napi_create_array_with_length(env, 3, &result);
  napi_create_int64(env, cred.pid, &v);
  napi_set_element(env, result, 0, v);
  napi_create_int64(env, cred.uid, &v);
  napi_set_element(env, result, 1, v);
  napi_create_int64(env, cred.gid, &v);
  napi_set_element(env, result, 2, v);
  return result;
}

/* unixSend(fd, data, fds): one message, with descriptors fds passed along (they stay open here too). */
static napi_value js_unix_send(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) return throw_type(env, "unixSend: data must be a Buffer");
  uint32_t count;
  if (napi_get_array_length(env, argv[2], &count) != napi_ok || count > MAX_FDS) return throw_type(env, "unixSend: fds must be an array of at most 512 descriptors");
  struct iovec iov = { .iov_base = data, .iov_len = len };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
  char *control = NULL;
  if (count > 0) {
    control = calloc(1, CMSG_SPACE(count * sizeof(int)));
    if (control == NULL) return throw_errno(env, ENOMEM, "calloc", NULL, 0);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(count * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(count * sizeof(int));
    int *fds = (int *) CMSG_DATA(c);
    for (uint32_t i = 0; i < count; i++) {
      napi_value v;
      napi_get_element(env, argv[2], i, &v);
      fds[i] = (int) get_int64(env, v);
    }
  }
  ssize_t n;
  do n = sendmsg((int) get_int64(env, argv[0]), &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  int err = errno;
  free(control);
  if (n < 0) return throw_errno(env, err, "sendmsg", NULL, 0);
  return NULL;
}

/*
 * unixReceive(fd) -> { data, fds } | null | undefined: the next message and
 * the descriptors it carried (close-on-exec), null at the end (the other
 * side closed), undefined when none is waiting on a non-blocking socket. A
 * message cut short, or descriptors past what fits, is refused (EMSGSIZE)
 * and what did arrive is closed.
 */
static napi_value js_unix_receive(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  char *data = malloc(MAX_MESSAGE);
  char *control = malloc(CMSG_SPACE(MAX_FDS * sizeof(int)));
  if (data == NULL || control == NULL) {
    free(data);
    free(control);
    return throw_errno(env, ENOMEM, "malloc", NULL, 0);
  }
  struct iovec iov = { .iov_base = data, .iov_len = MAX_MESSAGE };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = CMSG_SPACE(MAX_FDS * sizeof(int)) };
  ssize_t n;
  do n = recvmsg((int) get_int64(env, argv[0]), &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  napi_value result = NULL;
  if (n < 0) {
    int err = errno;
    if (err == EAGAIN) napi_get_undefined(env, &result);
    else throw_errno(env, err, "recvmsg", NULL, 0);
    free(data);
    free(control);
    return result;
  }
  napi_value fds;
  napi_create_array(env, &fds);
  uint32_t count = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int *received = (int *) CMSG_DATA(c);
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      napi_value v;
      napi_create_int32(env, received[i], &v);
      napi_set_element(env, fds, count++, v);
    }
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    for (uint32_t i = 0; i < count; i++) {
      napi_value v;
      napi_get_element(env, fds, i, &v);
      close((int) get_int64(env, v));
    }
    free(data);
    free(control);
    return throw_errno(env, EMSGSIZE, "recvmsg", NULL, 0);
  }
  if (n == 0 && count == 0) {
    napi_get_null(env, &result);
  } else {
    napi_create_object(env, &result);
    napi_set_named_property(env, result, "data", new_buffer(env, data, (size_t) n));
    napi_set_named_property(env, result, "fds", fds);
  }
  free(data);
  free(control);
  return result;
}

typedef struct watch {
  napi_env env;
  uv_poll_t poll;
  napi_ref callback;
  napi_async_context context;
  bool stopped;
  /* Freed once libuv has let go of the poll handle and JavaScript of the watch. */
  bool handle_closed;
  bool finalized;
} watch_t;

static void on_readable(uv_poll_t *poll, int status, int events) {
  watch_t *w = poll->data;
  napi_env env = w->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value fn, resource, result;
  napi_get_reference_value(env, w->callback, &fn);
  napi_create_object(env, &resource);
  /* As any libuv callback into JavaScript: Promises settled in it run before the next event. */
  if (napi_make_callback(env, w->context, resource, fn, 0, NULL, &result) != napi_ok) {
    napi_value err;
    if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

static void on_watch_closed(uv_handle_t *handle) {
  watch_t *w = handle->data;
  w->handle_closed = true;
  if (w->finalized) free(w);
}

static void finalize_watch(napi_env env, void *data, void *hint) {
  watch_t *w = data;
  w->finalized = true;
  if (w->handle_closed) free(w);
}

/* watchReadable(fd, callback) -> watch: calls callback() each time fd is readable, until unwatch(watch). */
static napi_value js_watch_readable(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  watch_t *w = calloc(1, sizeof *w);
  if (w == NULL) return throw_errno(env, ENOMEM, "calloc", NULL, 0);
  w->env = env;
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  int err = uv_poll_init(loop, &w->poll, (int) get_int64(env, argv[0]));
  if (err < 0) {
    free(w);
    return throw_errno(env, -err, "uv_poll_init", NULL, 0);
  }
  napi_create_reference(env, argv[1], 1, &w->callback);
  napi_value name;
  napi_create_string_utf8(env, "snapfs.unix", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &w->context);
  w->poll.data = w;
  uv_poll_start(&w->poll, UV_READABLE, on_readable);
  napi_value result;
  napi_create_external(env, w, finalize_watch, NULL, &result);
  return result;
}

/* unwatch(watch): no more calls; the descriptor is the caller's to close (after this). */
static napi_value js_unwatch(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  watch_t *w;
  if (napi_get_value_external(env, argv[0], (void **) &w) != napi_ok) return throw_type(env, "unwatch: not a watch");
  if (w->stopped) return NULL;
  w->stopped = true;
  uv_poll_stop(&w->poll);
  napi_delete_reference(env, w->callback);
  napi_async_destroy(env, w->context);
  uv_close((uv_handle_t *) &w->poll, on_watch_closed);
  return NULL;
}

void init_unix(napi_env env, napi_value exports) {
  export_function(env, exports, "unixListen", js_unix_listen);
  export_function(env, exports, "unixConnect", js_unix_connect);
  export_function(env, exports, "unixAccept", js_unix_accept);
  export_function(env, exports, "unixAdopt", js_unix_adopt);
  export_function(env, exports, "unixPeer", js_unix_peer);
  export_function(env, exports, "unixSend", js_unix_send);
  export_function(env, exports, "unixReceive", js_unix_receive);
  export_function(env, exports, "watchReadable", js_watch_readable);
  export_function(env, exports, "unwatch", js_unwatch);
}
