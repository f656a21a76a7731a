/*
 * The cost of one FUSE round trip, with nothing behind it: a file system of
 * one file whose attributes are never kept (every stat(2) is a GETATTR),
 * served over /dev/fuse with read(2) and writev(2), or over io_uring
 * (FUSE_OVER_IO_URING, Linux 6.14 and later, with fuse's enable_uring
 * parameter on). Usage: fuse-transport dev|uring MOUNTPOINT [SPIN_MICROS]
 * (as root; after answering, it looks for the next request for SPIN_MICROS
 * before sleeping, as snapfs's session does);
 * prints "ready" once served, and serves until unmounted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <time.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define OVER_IO_URING_FLAGS2 (1u << 9) /* FUSE_OVER_IO_URING, bit 41 */
#define URING_CMD_REGISTER 1
#define URING_CMD_COMMIT_AND_FETCH 2
#define PAYLOAD (128 * 1024)
#define ENTRIES_PER_QUEUE 2

struct ent_in_out {
  uint64_t flags;
  uint64_t commit_id;
  uint32_t payload_sz;
  uint32_t padding;
  uint64_t reserved;
};

struct req_header {
  char in_out[128];
  char op_in[128];
  struct ent_in_out ent;
};

struct cmd_req {
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};

static int fuse_fd;
/* After answering, look for the next request this long before sleeping (0: sleep at once). */
static long spin_ns;

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void fill_attr(uint64_t node, struct fuse_attr *a) {
  memset(a, 0, sizeof *a);
  a->ino = node;
  a->mode = node == FUSE_ROOT_ID ? S_IFDIR | 0755 : S_IFREG | 0644;
  a->nlink = node == FUSE_ROOT_ID ? 2 : 1;
  a->blksize = 4096;
}

/* The answer to one request, into out (after its header); its length, or -errno. */
static int answer(const struct fuse_in_header *in, const char *arg, char *out) {
  switch (in->opcode) {
    case FUSE_LOOKUP: {
      if (in->nodeid != FUSE_ROOT_ID || strcmp(arg, "f") != 0) return -ENOENT;
      struct fuse_entry_out *e = (struct fuse_entry_out *) out;
      memset(e, 0, sizeof *e);
      e->nodeid = 2;
      e->entry_valid = 3600;
      fill_attr(2, &e->attr);
      return sizeof *e;
    }
    case FUSE_GETATTR: {
      struct fuse_attr_out *a = (struct fuse_attr_out *) out;
      memset(a, 0, sizeof *a);
      fill_attr(in->nodeid, &a->attr); /* attr_valid 0: asked again at every stat */
      return sizeof *a;
    }
    default:
      return -ENOSYS;
  }
}

static void init_reply(const struct fuse_in_header *in, const struct fuse_init_in *init, bool uring) {
  char buf[sizeof(struct fuse_out_header) + sizeof(struct fuse_init_out)];
  struct fuse_out_header *oh = (struct fuse_out_header *) buf;
  struct fuse_init_out *o = (struct fuse_init_out *) (oh + 1);
  memset(buf, 0, sizeof buf);
  o->major = FUSE_KERNEL_VERSION;
  o->minor = init->minor;
  o->max_readahead = init->max_readahead;
  o->flags = FUSE_MAX_PAGES | FUSE_INIT_EXT;
  o->flags2 = uring ? OVER_IO_URING_FLAGS2 : 0;
  o->max_write = PAYLOAD;
  o->max_pages = PAYLOAD / 4096;
  oh->len = sizeof buf;
  oh->unique = in->unique;
  if (write(fuse_fd, buf, sizeof buf) != (ssize_t) sizeof buf) die("INIT answer");
}

static void serve_dev(char *buf) {
  char out[4096];
  if (spin_ns > 0) fcntl(fuse_fd, F_SETFL, O_NONBLOCK);
  long idle_since = 0;
  for (;;) {
    ssize_t n = read(fuse_fd, buf, PAYLOAD + 4096);
    if (n < 0 && errno == EAGAIN) {
      long now = now_ns();
      if (idle_since == 0) idle_since = now;
      if (now - idle_since > spin_ns) {
        struct pollfd p = { .fd = fuse_fd, .events = POLLIN };
        poll(&p, 1, -1);
        idle_since = 0;
      }
      continue;
    }
    idle_since = 0;
    if (n < 0 && (errno == EINTR || errno == ENOENT)) continue;
    if (n < 0) return; /* ENODEV: unmounted */
    const struct fuse_in_header *in = (const struct fuse_in_header *) buf;
    if (in->opcode == FUSE_FORGET || in->opcode == FUSE_BATCH_FORGET || in->opcode == FUSE_INTERRUPT) continue;
    int len = answer(in, buf + sizeof *in, out + sizeof(struct fuse_out_header));
    struct fuse_out_header *oh = (struct fuse_out_header *) out;
    oh->unique = in->unique;
    oh->error = len < 0 ? len : 0;
    oh->len = sizeof *oh + (len < 0 ? 0 : len);
    write(fuse_fd, out, oh->len);
  }
}

/* io_uring, by its system calls (liburing is not needed for this much). */
struct ring {
  int fd;
  unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
  struct io_uring_sqe *sqes; /* 128 bytes each (SQE128) */
  struct io_uring_cqe *cqes;
  unsigned pending;
};

static void ring_open(struct ring *r, unsigned entries) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_SQE128;
  r->fd = (int) syscall(__NR_io_uring_setup, entries, &p);
  if (r->fd < 0) die("io_uring_setup");
  size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  char *sq = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
  char *cq = mmap(NULL, cq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
  r->sqes = mmap(NULL, p.sq_entries * 128, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
  if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED) die("mmap ring");
  r->sq_tail = (unsigned *) (sq + p.sq_off.tail);
  r->sq_mask = (unsigned *) (sq + p.sq_off.ring_mask);
  r->sq_array = (unsigned *) (sq + p.sq_off.array);
  r->cq_head = (unsigned *) (cq + p.cq_off.head);
  r->cq_tail = (unsigned *) (cq + p.cq_off.tail);
  r->cq_mask = (unsigned *) (cq + p.cq_off.ring_mask);
  r->cqes = (struct io_uring_cqe *) (cq + p.cq_off.cqes);
  r->pending = 0;
}

/* A URING_CMD on /dev/fuse for entry `ent` (its index is the user data). */
static void ring_cmd(struct ring *r, unsigned op, unsigned ent, uint16_t qid, uint64_t commit_id, struct iovec *iov) {
  unsigned tail = *r->sq_tail;
  unsigned i = tail & *r->sq_mask;
  struct io_uring_sqe *sqe = (struct io_uring_sqe *) ((char *) r->sqes + (size_t) i * 128);
  memset(sqe, 0, 128);
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = fuse_fd;
  sqe->cmd_op = op;
  sqe->user_data = ent;
  if (iov != NULL) {
    sqe->addr = (uint64_t) (uintptr_t) iov;
    sqe->len = 2;
  }
  struct cmd_req *cmd = (struct cmd_req *) sqe->cmd;
  cmd->commit_id = commit_id;
  cmd->qid = qid;
  r->sq_array[i] = i;
  __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
  r->pending++;
}

static void serve_uring(void) {
  long cpus = sysconf(_SC_NPROCESSORS_CONF);
  unsigned count = (unsigned) cpus * ENTRIES_PER_QUEUE;
  struct ring r;
  ring_open(&r, count * 2);
  struct req_header *headers = calloc(count, sizeof *headers);
  char *payloads = aligned_alloc(4096, (size_t) count * PAYLOAD);
  struct iovec *iovs = calloc(count * 2, sizeof *iovs);
  uint16_t *qids = calloc(count, sizeof *qids);
  if (headers == NULL || payloads == NULL || iovs == NULL || qids == NULL) die("calloc");
  for (unsigned e = 0; e < count; e++) {
    iovs[2 * e] = (struct iovec) { &headers[e], sizeof headers[e] };
    iovs[2 * e + 1] = (struct iovec) { payloads + (size_t) e * PAYLOAD, PAYLOAD };
    qids[e] = (uint16_t) (e / ENTRIES_PER_QUEUE);
    ring_cmd(&r, URING_CMD_REGISTER, e, qids[e], 0, &iovs[2 * e]);
  }
  for (;;) {
    /* Submits what is queued (the answers) and waits for the next request, in one call;
       spinning, it submits, then looks at the completion ring for a while before waiting. */
    unsigned wait = 1;
    if (spin_ns > 0) {
      if (r.pending > 0 && syscall(__NR_io_uring_enter, r.fd, r.pending, 0, 0, NULL, 0) < 0) die("io_uring_enter");
      r.pending = 0;
      long start = now_ns();
      while (*r.cq_head == __atomic_load_n(r.cq_tail, __ATOMIC_ACQUIRE) && now_ns() - start < spin_ns) {
      }
      if (*r.cq_head != __atomic_load_n(r.cq_tail, __ATOMIC_ACQUIRE)) wait = 0;
    }
    int n = wait == 0 ? 0 : (int) syscall(__NR_io_uring_enter, r.fd, r.pending, wait, IORING_ENTER_GETEVENTS, NULL, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("io_uring_enter");
    r.pending = 0;
    unsigned head = *r.cq_head;
    unsigned tail = __atomic_load_n(r.cq_tail, __ATOMIC_ACQUIRE);
    for (; head != tail; head++) {
      struct io_uring_cqe *cqe = &r.cqes[head & *r.cq_mask];
      unsigned e = (unsigned) cqe->user_data;
      if (cqe->res < 0) {
        if (cqe->res == -ENOTCONN || cqe->res == -ECANCELED) return; /* unmounted */
        errno = -cqe->res;
        die("uring request");
      }
      struct req_header *h = &headers[e];
      const struct fuse_in_header *in = (const struct fuse_in_header *) h->in_out;
      /* The first argument is in op_in, the rest (a lookup's name) in the payload. */
      const char *payload = payloads + (size_t) e * PAYLOAD;
      struct fuse_in_header copy = *in;
      int len = answer(&copy, copy.opcode == FUSE_LOOKUP ? payload : h->op_in, payloads + (size_t) e * PAYLOAD);
      struct fuse_out_header *oh = (struct fuse_out_header *) h->in_out;
      uint64_t commit_id = h->ent.commit_id;
      memset(oh, 0, sizeof *oh);
      oh->unique = copy.unique;
      oh->error = len < 0 ? len : 0;
      oh->len = sizeof *oh + (len < 0 ? 0 : len);
      h->ent.payload_sz = len < 0 ? 0 : (uint32_t) len;
      ring_cmd(&r, URING_CMD_COMMIT_AND_FETCH, e, qids[e], commit_id, NULL);
    }
    __atomic_store_n(r.cq_head, head, __ATOMIC_RELEASE);
  }
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: fuse-transport dev|uring MOUNTPOINT [SPIN_MICROS]\n");
    return 2;
  }
  if (argc == 4) spin_ns = atol(argv[3]) * 1000;
  bool uring = strcmp(argv[1], "uring") == 0;
  fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fuse_fd < 0) die("/dev/fuse");
  char opts[128];
  snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0,default_permissions", fuse_fd);
  if (mount("fuse-transport", argv[2], "fuse.fuse-transport", MS_NOSUID | MS_NODEV, opts) != 0) die("mount");
  char *buf = malloc(PAYLOAD + 4096);
  if (buf == NULL) die("malloc");
  ssize_t n = read(fuse_fd, buf, PAYLOAD + 4096);
  const struct fuse_in_header *in = (const struct fuse_in_header *) buf;
  if (n < (ssize_t) sizeof *in || in->opcode != FUSE_INIT) die("INIT");
  init_reply(in, (const struct fuse_init_in *) (in + 1), uring);
  printf("ready\n");
  fflush(stdout);
  if (uring) serve_uring();
  else serve_dev(buf);
  return 0;
}
