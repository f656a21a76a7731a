/*
 * A FUSE session on a /dev/fuse descriptor, speaking the kernel's protocol
 * (<linux/fuse.h>) itself: the kernel's requests are read on the
 * JavaScript thread as libuv finds the descriptor readable, and answered
 * with writev. The protocol's logic (INIT, every operation by node id, the
 * layout of each answer) is the TypeScript side's (src/fuse/); this file
 * is only the part that must be native:
 *
 * - the read loop, with every request read into one Buffer that
 *   JavaScript parses (it copies what it keeps: the next request reuses it);
 * - READ, WRITE, FALLOCATE and LSEEK, served here on the handle, which is
 *   always the file's own descriptor: data never crosses into JavaScript.
 *   A write or fallocate may be refused from some moment on (commit freezes
 *   a mount); a write drops set-ID bits when the kernel asks
 *   (FUSE_HANDLE_KILLPRIV_V2); under a space limit, a write or allocation
 *   that would take the upper layer past it is ENOSPC;
 * - backing files registered on the device for FUSE passthrough (ioctl);
 * - answers, written as they come, so that an answer
 *   may be given long after its request (work done off the thread).
 *
 * Every session in the process shares the two buffers: requests are
 * served one at a time on one thread, and each is parsed before the next
 * is read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include "fuse-stats.h"
#include "native.h"

/* Requests are read whole: the largest is a write of max_write bytes. */
#define MAX_WRITE (1024 * 1024)
#define REQUEST_BYTES (MAX_WRITE + 4096)
/* Requests handled before other events get their turn. */
#define BATCH 64

typedef struct session {
  napi_env env;
  int fd;
  uv_poll_t poll;
  napi_ref dispatch; /* function (length): a request for JavaScript is in the buffer */
  napi_ref ended;    /* function (errno): the session is over (0: unmounted) */
  napi_async_context context;
  bool writes_refused;
  bool closed;
  /* Every request's operation, outcome and time to its answer. */
  fuse_stats_t stats;
  /*
   * The upper layer's space, shared with JavaScript (a Float64Array kept
   * by space_ref, on this same thread): [0] the limit in bytes, [1] what
   * it uses (allocated blocks). NULL: no limit.
   */
  double *space;
  napi_ref space_ref;
  /* Freed once libuv has let go of the poll handle and JavaScript of the session. */
  bool handle_closed;
  bool finalized;
  /* After answering, the device is polled this long before sleeping (see serve). */
  long spin_ns;
  /* Its thread's buffers (see buffers_t): sessions of one thread are served one at a time. */
  char *request_buf;
  char *read_buf;
} session_t;

/*
 * The buffers of one JavaScript thread (the main one, or a worker's: each
 * loads the addon in an environment of its own), kept as the
 * environment's instance data: requests are read into the Buffer
 * JavaScript parses them from, and READ answers are read into read_buf.
 */
typedef struct buffers {
  char *request_buf;
  napi_ref request_ref; /* keeps it alive */
  char *read_buf;
} buffers_t;

static void finalize_buffers(napi_env env, void *data, void *hint) {
  buffers_t *b = data;
  free(b->read_buf);
  free(b);
}

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static int send_reply(session_t *s, uint64_t unique, int error, const void *body, size_t len) {
  struct fuse_out_header out = { .len = (uint32_t) (sizeof out + len), .error = error, .unique = unique };
  struct iovec iov[2] = { { &out, sizeof out }, { (void *) body, len } };
  ssize_t n = writev(s->fd, iov, len > 0 ? 2 : 1);
  stats_answered(&s->stats, unique, error, now_ns());
  /* ENOENT: the request was interrupted and is gone; nothing to do. */
  return n < 0 && errno != ENOENT ? -errno : 0;
}

/*
 * Whoever lacks CAP_FSETID loses the set-user-ID bit by writing, and the
 * set-group-ID bit of a file that is group-executable or not of their
 * group, as on any Linux file system.
 */
static int kill_suidgid(int fd, gid_t caller_gid) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -errno;
  mode_t kill = st.st_mode & S_ISUID;
  if ((st.st_mode & S_ISGID) && ((st.st_mode & S_IXGRP) || st.st_gid != caller_gid)) kill |= S_ISGID;
  if (kill != 0 && fchmod(fd, st.st_mode & 07777 & ~kill) != 0) return -errno;
  return 0;
}

/*
 * Under a space limit: whether the file on `fd` may take `bytes(before)`
 * more bytes (`before` gets its attributes), as a negative errno if not.
 * What it then takes is counted by space_account(), by its blocks: holes
 * cost nothing, and punching one gives space back.
 */
static int space_check(session_t *s, int fd, double (*bytes)(const struct stat *, const void *), const void *arg, struct stat *before) {
  if (fstat(fd, before) != 0) return -errno;
  double more = bytes(before, arg);
  return more > 0 && s->space[1] + more > s->space[0] ? -ENOSPC : 0;
}

/*
 * A write takes what it adds past the end of the file, and, in a file with
 * holes, as much as it writes (it may fill them): the worst case, checked
 * before; what it took is counted after.
 */
static double write_growth(const struct stat *st, const void *arg) {
  const struct fuse_write_in *w = arg;
  if ((double) st->st_blocks * 512 < (double) st->st_size) return (double) w->size;
  double end = (double) w->offset + (double) w->size;
  return end > (double) st->st_size ? end - (double) st->st_size : 0;
}

/* An allocation may take its whole range (it is not known what of it is allocated already); punching a hole takes nothing. */
static double fallocate_growth(const struct stat *st, const void *arg) {
  const struct fuse_fallocate_in *f = arg;
  return (f->mode & FALLOC_FL_PUNCH_HOLE) != 0 ? 0 : (double) f->length;
}

static void space_account(session_t *s, int fd, const struct stat *before) {
  struct stat after;
  if (fstat(fd, &after) != 0) return;
  double used = s->space[1] + (double) (after.st_blocks - before->st_blocks) * 512;
  s->space[1] = used > 0 ? used : 0;
}

static void serve_read(session_t *s, const struct fuse_in_header *in, const struct fuse_read_in *arg) {
  size_t size = arg->size < MAX_WRITE ? arg->size : MAX_WRITE;
  ssize_t n = pread((int) arg->fh, s->read_buf, size, (off_t) arg->offset);
  if (n < 0) send_reply(s, in->unique, -errno, NULL, 0);
  else send_reply(s, in->unique, 0, s->read_buf, (size_t) n);
}

/*
 * Whether a change of the file on `fd` may be made: 0, or the negative
 * errno to answer (a frozen mount, or one past its space). `before` gets
 * the file's attributes under a space limit, for space_account.
 */
static int change_allowed(session_t *s, int fd, double (*bytes)(const struct stat *, const void *), const void *arg, struct stat *before) {
  if (s->writes_refused) return -EROFS;
  return s->space == NULL ? 0 : space_check(s, fd, bytes, arg, before);
}

static void serve_write(session_t *s, const struct fuse_in_header *in, const struct fuse_write_in *arg, const char *data) {
  struct stat before;
  int refused = change_allowed(s, (int) arg->fh, write_growth, arg, &before);
  if (refused != 0) {
    send_reply(s, in->unique, refused, NULL, 0);
    return;
  }
  ssize_t n = pwrite((int) arg->fh, data, arg->size, (off_t) arg->offset);
  int write_errno = errno;
  if (s->space != NULL) space_account(s, (int) arg->fh, &before);
  if (n < 0) {
    send_reply(s, in->unique, -write_errno, NULL, 0);
    return;
  }
  if (arg->write_flags & FUSE_WRITE_KILL_SUIDGID) {
    int err = kill_suidgid((int) arg->fh, in->gid);
    if (err != 0) {
      send_reply(s, in->unique, err, NULL, 0);
      return;
    }
  }
  struct fuse_write_out out = { .size = (uint32_t) n };
  send_reply(s, in->unique, 0, &out, sizeof out);
}

/* Every mode the kernel passes on (allocate, keep size, punch, zero, collapse, insert, unshare): the layer's file system decides. */
static void serve_fallocate(session_t *s, const struct fuse_in_header *in, const struct fuse_fallocate_in *arg) {
  struct stat before;
  int refused = change_allowed(s, (int) arg->fh, fallocate_growth, arg, &before);
  if (refused != 0) {
    send_reply(s, in->unique, refused, NULL, 0);
    return;
  }
  int rc = fallocate((int) arg->fh, (int) arg->mode, (off_t) arg->offset, (off_t) arg->length);
  int fallocate_errno = errno;
  if (s->space != NULL) space_account(s, (int) arg->fh, &before);
  send_reply(s, in->unique, rc == 0 ? 0 : -fallocate_errno, NULL, 0);
}

/* SEEK_DATA and SEEK_HOLE (the kernel answers the other whences itself): the layer file's own holes. */
static void serve_lseek(session_t *s, const struct fuse_in_header *in, const struct fuse_lseek_in *arg) {
  off_t at = lseek((int) arg->fh, (off_t) arg->offset, (int) arg->whence);
  if (at < 0) {
    send_reply(s, in->unique, -errno, NULL, 0);
    return;
  }
  struct fuse_lseek_out out = { .offset = (uint64_t) at };
  send_reply(s, in->unique, 0, &out, sizeof out);
}

static void call(session_t *s, napi_ref ref, int32_t arg) {
  napi_env env = s->env;
  napi_value fn, global, value, result;
  napi_get_reference_value(env, ref, &fn);
  napi_get_global(env, &global);
  napi_create_int32(env, arg, &value);
  if (napi_call_function(env, global, fn, 1, &value, &result) != napi_ok) {
    /* The TypeScript side answers every failure itself: an exception here is a bug. */
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
}

static void end_session(session_t *s, int err);

/*
 * JavaScript is entered for the requests it answers only: a batch of reads
 * and writes, served here, costs no callback scope (whose closing runs
 * JavaScript's pending work). Scopes opened for a batch close at its end,
 * so that Promises settled by the handlers run, and answers given
 * asynchronously go out, between batches.
 */
typedef struct {
  bool open;
  napi_handle_scope handles;
  napi_callback_scope scope;
} js_scope;

static void enter_js(session_t *s, js_scope *js) {
  if (js->open) return;
  napi_open_handle_scope(s->env, &js->handles);
  napi_value resource;
  napi_get_global(s->env, &resource);
  napi_open_callback_scope(s->env, resource, s->context, &js->scope);
  js->open = true;
}

static void leave_js(session_t *s, js_scope *js) {
  if (!js->open) return;
  napi_close_callback_scope(s->env, js->scope);
  napi_close_handle_scope(s->env, js->handles);
  js->open = false;
}

/* One request: served here, or handed to JavaScript. Returns false when the session is over. */
static bool handle(session_t *s, ssize_t n, js_scope *js) {
  const struct fuse_in_header *in = (const struct fuse_in_header *) s->request_buf;
  if ((size_t) n < sizeof *in || in->len != (uint32_t) n) return true;
  const char *arg = s->request_buf + sizeof *in;
  size_t arg_len = (size_t) n - sizeof *in;
  stats_begin(&s->stats, in->unique, in->opcode, now_ns());
  switch (in->opcode) {
    case FUSE_READ:
      if (arg_len >= sizeof(struct fuse_read_in)) serve_read(s, in, (const struct fuse_read_in *) arg);
      return true;
    case FUSE_WRITE:
      if (arg_len >= sizeof(struct fuse_write_in) && arg_len - sizeof(struct fuse_write_in) >= ((const struct fuse_write_in *) arg)->size) {
        serve_write(s, in, (const struct fuse_write_in *) arg, arg + sizeof(struct fuse_write_in));
      }
      return true;
    case FUSE_FALLOCATE:
      if (arg_len >= sizeof(struct fuse_fallocate_in)) serve_fallocate(s, in, (const struct fuse_fallocate_in *) arg);
      return true;
    case FUSE_LSEEK:
      if (arg_len >= sizeof(struct fuse_lseek_in)) serve_lseek(s, in, (const struct fuse_lseek_in *) arg);
      return true;
    case FUSE_INTERRUPT:
      /* Every request is answered promptly; there is nothing to cut short. */
      return true;
  }
  enter_js(s, js);
  napi_handle_scope scope;
  napi_open_handle_scope(s->env, &scope);
  call(s, s->dispatch, (int32_t) n);
  napi_close_handle_scope(s->env, scope);
  stats_leave_open(&s->stats);
  return !s->closed;
}

/*
 * Reads and handles requests until the device has none, in batches so that
 * other events get their turn. Then, while requests keep coming within
 * spin_ns, goes on without sleeping: a caller's next request usually comes
 * within microseconds of its answer, and the wake-up spared costs more than
 * most requests.
 */
static void serve(uv_poll_t *poll, int status, int events) {
  session_t *s = poll->data;
  long idle_since = 0;
  js_scope js = { .open = false };
  for (int handled = 0; !s->closed;) {
    bool empty = false;
    for (int i = 0; i < BATCH && !s->closed; i++) {
      ssize_t n = read(s->fd, s->request_buf, REQUEST_BYTES);
      if (n < 0) {
        if (errno == EINTR || errno == ENOENT) continue;
        if (errno == EAGAIN) {
          empty = true;
          break;
        }
        end_session(s, errno == ENODEV ? 0 : errno);
        break;
      }
      handled++;
      idle_since = 0;
      if (!handle(s, n, &js)) break;
    }
    leave_js(s, &js);
    if (s->closed) return;
    if (!empty) {
      if (handled >= 4 * BATCH) return; /* let the event loop run; it calls again while readable */
      continue;
    }
    /* An unmount shows as an error on the descriptor, and its read as ENODEV; an error without one is the device's. */
    if (status < 0) return end_session(s, -status);
    if (s->spin_ns <= 0) return;
    long now = now_ns();
    if (idle_since == 0) idle_since = now;
    else if (now - idle_since > s->spin_ns) return;
  }
}

static void free_session(session_t *s) {
  stats_free(&s->stats);
  free(s);
}

static void on_closed(uv_handle_t *handle) {
  session_t *s = handle->data;
  napi_delete_reference(s->env, s->dispatch);
  napi_delete_reference(s->env, s->ended);
  if (s->space_ref != NULL) napi_delete_reference(s->env, s->space_ref);
  s->space = NULL;
  napi_async_destroy(s->env, s->context);
  s->handle_closed = true;
  if (s->finalized) free_session(s);
}

static void close_session(session_t *s) {
  if (s->closed) return;
  s->closed = true;
  uv_poll_stop(&s->poll);
  close(s->fd);
}

/* Ends the session (err 0: unmounted) and tells JavaScript. */
static void end_session(session_t *s, int err) {
  if (s->closed) return;
  close_session(s);
  napi_handle_scope handles;
  napi_open_handle_scope(s->env, &handles);
  /* A callback scope of its own: what the callback settles runs when it closes. */
  napi_value resource;
  napi_get_global(s->env, &resource);
  napi_callback_scope scope;
  napi_open_callback_scope(s->env, resource, s->context, &scope);
  call(s, s->ended, err);
  napi_close_callback_scope(s->env, scope);
  napi_close_handle_scope(s->env, handles);
  uv_close((uv_handle_t *) &s->poll, on_closed);
}

static void finalize_session(napi_env env, void *data, void *hint) {
  session_t *s = data;
  s->finalized = true;
  if (s->handle_closed) free_session(s);
}

static session_t *get_session(napi_env env, napi_value v) {
  session_t *s = NULL;
  napi_get_value_external(env, v, (void **) &s);
  return s;
}

/* fuseBuffer(buffer): the Buffer every session of this thread reads requests into. */
static napi_value js_fuse_buffer(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  size_t len;
  void *data;
  if (napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok || len < REQUEST_BYTES) return throw_type(env, "fuseBuffer: expected a Buffer of REQUEST_BYTES");
  buffers_t *b = NULL;
  napi_get_instance_data(env, (void **) &b);
  if (b != NULL) return throw_type(env, "fuseBuffer: already given");
  b = calloc(1, sizeof *b);
  if (b == NULL || (b->read_buf = malloc(MAX_WRITE)) == NULL) {
    free(b);
    return throw_errno(env, ENOMEM, "malloc", NULL, 0);
  }
  napi_create_reference(env, argv[0], 1, &b->request_ref);
  b->request_buf = data;
  napi_set_instance_data(env, b, finalize_buffers, NULL);
  return NULL;
}

/*
 * sessionOpen(fd, dispatch, ended, spinMicros) -> session: serves the
 * device descriptor fd (made non-blocking; the session closes it when it
 * ends) until the file system is unmounted.
 */
static napi_value js_session_open(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  buffers_t *b = NULL;
  napi_get_instance_data(env, (void **) &b);
  if (b == NULL) return throw_type(env, "sessionOpen: fuseBuffer first");
  int fd = (int) get_int64(env, argv[0]);
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return throw_errno(env, errno, "fcntl", NULL, 0);
  session_t *s = calloc(1, sizeof *s);
  if (s == NULL) return throw_errno(env, ENOMEM, "calloc", NULL, 0);
  s->env = env;
  s->fd = fd;
  s->request_buf = b->request_buf;
  s->read_buf = b->read_buf;
  s->spin_ns = (long) get_int64(env, argv[3]) * 1000L;
  napi_create_reference(env, argv[1], 1, &s->dispatch);
  napi_create_reference(env, argv[2], 1, &s->ended);
  napi_value name;
  napi_create_string_utf8(env, "snapfs.fuse", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &s->context);
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  int err = uv_poll_init(loop, &s->poll, fd);
  if (err < 0) {
    napi_delete_reference(env, s->dispatch);
    napi_delete_reference(env, s->ended);
    napi_async_destroy(env, s->context);
    free(s);
    return throw_errno(env, -err, "uv_poll_init", NULL, 0);
  }
  s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, serve);
  napi_value result;
  napi_create_external(env, s, finalize_session, NULL, &result);
  return result;
}

/*
 * sessionReply(session, unique, error, body?): the answer to a request:
 * a negative errno, or 0 and the body (a Buffer). Returns false when the
 * session is over (the answer has nobody to go to).
 */
static napi_value js_session_reply(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  size_t argc = 4;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) return throw_type(env, "sessionReply: too few arguments");
  session_t *s = get_session(env, argv[0]);
  void *body = NULL;
  size_t len = 0;
  if (argc > 3) {
    napi_valuetype type;
    napi_typeof(env, argv[3], &type);
    if (type != napi_undefined && napi_get_buffer_info(env, argv[3], &body, &len) != napi_ok) return throw_type(env, "sessionReply: the body must be a Buffer");
  }
  napi_value result;
  if (s == NULL || s->closed) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  int err = send_reply(s, (uint64_t) get_int64(env, argv[1]), (int) get_int64(env, argv[2]), body, len);
  if (err != 0 && err != -ENOENT) return throw_errno(env, -err, "writev", NULL, 0);
  napi_get_boolean(env, true, &result);
  return result;
}

/* sessionStats(session) -> [[opcode, count, errors, seconds, bucket…], …]: see fuse-stats.h. */
static napi_value js_session_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  session_t *s = get_session(env, argv[0]);
  if (s == NULL) {
    napi_value empty;
    napi_create_array(env, &empty);
    return empty;
  }
  return stats_to_js(env, &s->stats);
}

/*
 * sessionLimitSpace(session, space): writes and allocations are held to
 * space, a Float64Array [limit, used] in bytes that JavaScript shares (it
 * counts what it copies up and removes; this side, what is written).
 */
static napi_value js_session_limit_space(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  session_t *s = get_session(env, argv[0]);
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float64_array || length != 2) {
    return throw_type(env, "sessionLimitSpace: expected a Float64Array of 2");
  }
  if (s == NULL) return throw_type(env, "sessionLimitSpace: not a session");
  if (s->space != NULL) return throw_type(env, "sessionLimitSpace: the session has a limit already");
  napi_create_reference(env, argv[1], 1, &s->space_ref);
  s->space = data;
  return NULL;
}

/* sessionRefuseWrites(session): from now on every write is EROFS (commit freezes the mount). */
static napi_value js_session_refuse_writes(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  session_t *s = get_session(env, argv[0]);
  if (s != NULL) s->writes_refused = true;
  return NULL;
}

/*
 * FUSE passthrough (Linux 6.9): a backing file registered with the device
 * is read and written by the kernel itself for opens answered with its id.
 * Defined here for older headers; the layout is the kernel's ABI.
 */
struct snapfs_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
#define SNAPFS_IOC_BACKING_OPEN _IOW(229, 1, struct snapfs_backing_map)
#define SNAPFS_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

/*
 * sessionBackingOpen(session, fd) -> id: registers fd's file as a backing
 * file (CAP_SYS_ADMIN in the initial user namespace; ELOOP for a file on a
 * file system stacked too deep). The kernel keeps its own reference.
 */
static napi_value js_session_backing_open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  session_t *s = get_session(env, argv[0]);
  if (s == NULL || s->closed) return throw_errno(env, ENOTCONN, "ioctl", NULL, 0);
  struct snapfs_backing_map map = { .fd = (int32_t) get_int64(env, argv[1]) };
  int id = ioctl(s->fd, SNAPFS_IOC_BACKING_OPEN, &map);
  if (id < 0) return throw_errno(env, errno, "ioctl", "FUSE_DEV_IOC_BACKING_OPEN", 25);
  napi_value result;
  napi_create_int32(env, id, &result);
  return result;
}

/* sessionBackingClose(session, id): the id is no longer handed out (opens made with it keep their file). */
static napi_value js_session_backing_close(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  session_t *s = get_session(env, argv[0]);
  if (s == NULL || s->closed) return NULL;
  uint32_t id = (uint32_t) get_int64(env, argv[1]);
  if (ioctl(s->fd, SNAPFS_IOC_BACKING_CLOSE, &id) != 0) return throw_errno(env, errno, "ioctl", "FUSE_DEV_IOC_BACKING_CLOSE", 26);
  return NULL;
}

/* sessionClose(session): stops serving and closes the device descriptor; `ended` is not called. */
static napi_value js_session_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  session_t *s = get_session(env, argv[0]);
  if (s == NULL || s->closed) return NULL;
  close_session(s);
  uv_close((uv_handle_t *) &s->poll, on_closed);
  return NULL;
}

void init_fuse(napi_env env, napi_value exports) {
  export_function(env, exports, "fuseBuffer", js_fuse_buffer);
  export_function(env, exports, "sessionOpen", js_session_open);
  export_function(env, exports, "sessionReply", js_session_reply);
  export_function(env, exports, "sessionRefuseWrites", js_session_refuse_writes);
  export_function(env, exports, "sessionStats", js_session_stats);
  export_function(env, exports, "sessionLimitSpace", js_session_limit_space);
  export_function(env, exports, "sessionBackingOpen", js_session_backing_open);
  export_function(env, exports, "sessionBackingClose", js_session_backing_close);
  export_function(env, exports, "sessionClose", js_session_close);
  napi_value v;
  napi_create_uint32(env, REQUEST_BYTES, &v);
  napi_set_named_property(env, exports, "FUSE_REQUEST_BYTES", v);
  napi_create_uint32(env, MAX_WRITE, &v);
  napi_set_named_property(env, exports, "FUSE_MAX_WRITE", v);
  napi_set_named_property(env, exports, "FUSE_LATENCY_BOUNDS", stats_bounds_to_js(env));
}
