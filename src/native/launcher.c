/*
 * The snapfs command as installed (/usr/local/bin/snapfs): a mount command
 * line of the usual shape, run by root, is handed to the running mount
 * daemon from here, in C, without starting Node (whose start-up alone
 * costs several times what a fuse-overlayfs mount does). Everything else,
 * and every mount this fast path is unsure of (an option it does not
 * know, a missing directory, a busy mount point, no daemon running, a
 * rootless user), goes to the Node CLI unchanged, which checks, explains
 * and starts the daemon as it always does: this file never refuses a
 * command line, it only serves or passes on.
 *
 * The fast path does what src/mount/launch.ts and daemon-client.ts do for
 * that case: mount /dev/fuse at the mount point (mount(2), as root), open
 * the layer directories (O_PATH), send the request and the descriptors to
 * RUNTIME/daemon.sock (SCM_RIGHTS), wait for its answer. The request is
 * the one src/mount/handover.ts parses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_LAYERS 500
#define ANSWER_SECONDS 20

/* The CLI's commands (src/cli/command-names.ts; test/unit/cli.test.ts checks the two agree). */
static const char *const COMMANDS[] = {
  "prepare", "view", "mounts", "commit", "rm", "remove", "info", "stat", "label",
  "ls", "list", "tree", "usage", "du",
  "events", "cleanup",
  "mount", "browse", "mounted", "daemon",
  "serve",
  "cat", "changes",
  "diff", "import", "import-image",
  NULL,
};

/* Options the fast path takes: the layers, and mount(8)'s that change nothing for a mount by root. */
static const char *const IGNORED[] = { "rw", "dev", "suid", "exec", "defaults", "relatime", "default_permissions", NULL };

static char **original_argv;

/* Runs the Node CLI with our arguments: the checkout's dist/src/cli/main.js, four levels above this binary. */
static void pass_on(void) {
  char self[PATH_MAX], main_js[PATH_MAX + 64];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n < 0) {
    perror("snapfs: /proc/self/exe");
    exit(1);
  }
  self[n] = '\0';
  for (int up = 0; up < 5; up++) {
    char *slash = strrchr(self, '/');
    if (slash == NULL) break;
    *slash = '\0';
  }
  snprintf(main_js, sizeof main_js, "%s/dist/src/cli/main.js", self);
  int argc = 0;
  while (original_argv[argc] != NULL) argc++;
  char **args = calloc(argc + 2, sizeof *args);
  if (args == NULL) exit(1);
  args[0] = "node";
  args[1] = main_js;
  for (int i = 1; i < argc; i++) args[i + 1] = original_argv[i];
  /* The Node that built us (mount(8) runs helpers with a PATH of its own); SNAPFS_NODE overrides it. */
  const char *node = getenv("SNAPFS_NODE");
  if (node == NULL || node[0] == '\0') node = SNAPFS_NODE_PATH;
  execv(node, args);
  fprintf(stderr, "snapfs: %s: %s\n", node, strerror(errno));
  exit(1);
}

static int is_one_of(const char *s, const char *const *list) {
  for (; *list != NULL; list++)
    if (strcmp(s, *list) == 0) return 1;
  return 0;
}

/* A path the fast path takes: absolute, normalized, of bytes that need no escaping in JSON or mountinfo. */
static int plain_path(const char *p) {
  if (p[0] != '/' || strlen(p) >= PATH_MAX) return 0;
  for (const char *c = p; *c; c++) {
    if (*c <= ' ' || *c > '~' || *c == '"' || *c == '\\') return 0;
    if (c[0] == '/' && (c[1] == '/' || (c[1] == '.' && (c[2] == '/' || c[2] == '\0' || (c[2] == '.' && (c[3] == '/' || c[3] == '\0')))))) return 0;
  }
  return strcmp(p, "/") == 0 || p[strlen(p) - 1] != '/';
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whether `dir` is a mount point in this namespace already. */
static int mounted_at(const char *dir) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL) return 1;
  char *line = NULL;
  size_t cap = 0;
  int found = 0;
  while (!found && getline(&line, &cap, f) > 0) {
    /* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
    char *field = line;
    for (int i = 0; i < 4 && field != NULL; i++) {
      field = strchr(field, ' ');
      if (field != NULL) field++;
    }
    if (field == NULL) continue;
    size_t len = strcspn(field, " ");
    found = len == strlen(dir) && strncmp(field, dir, len) == 0;
  }
  free(line);
  fclose(f);
  return found;
}

/* The device numbers of this namespace's snapfs mounts, read once. */
static dev_t snapfs_devices[1024];
static int nsnapfs_devices = -1;

static void read_snapfs_devices(void) {
  nsnapfs_devices = 0;
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL) return;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0 && nsnapfs_devices < 1024) {
    /* ID PARENT MAJ:MIN … - FSTYPE SOURCE SUPER */
    unsigned maj, min;
    const char *type = strstr(line, " - ");
    if (type != NULL && strncmp(type + 3, "fuse.snapfs ", 12) == 0 && sscanf(line, "%*s %*s %u:%u", &maj, &min) == 2)
      snapfs_devices[nsnapfs_devices++] = makedev(maj, min);
  }
  free(line);
  fclose(f);
}

/*
 * Whether the directory of descriptor `fd` is on a snapfs mount (a
 * container's layers in a container): its daemon would wait on itself
 * reading them, so the Node CLI gives such a mount a process of its own.
 * Past 1,024 snapfs mounts, any is suspect.
 */
static int on_snapfs_mount(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return 1;
  if (nsnapfs_devices < 0) read_snapfs_devices();
  if (nsnapfs_devices == 1024) return 1;
  for (int i = 0; i < nsnapfs_devices; i++)
    if (snapfs_devices[i] == st.st_dev) return 1;
  return 0;
}

/* Whether this process's user namespace maps every id to itself, as the initial one does. */
static int initial_user_namespace(void) {
  FILE *f = fopen("/proc/self/uid_map", "re");
  if (f == NULL) return 0;
  unsigned long inside, outside, count;
  int ok = fscanf(f, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 && outside == 0 && count == 4294967295UL;
  fclose(f);
  return ok;
}

/* RUNTIME (see src/mount/runtime.ts), if it is there and private to root; else NULL. */
static const char *runtime_dir(void) {
  const char *given = getenv("SNAPFS_RUNTIME_DIR");
  const char *dir = given != NULL && given[0] != '\0' ? given : "/run/snapfs";
  struct stat st;
  if (!plain_path(dir) || lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) != 0) return NULL;
  return dir;
}

struct request {
  const char *mountpoint;
  const char *lowers[MAX_LAYERS];
  int nlowers;
  const char *upper, *work;
  /* Tweaks (see LayerTweaks): volatile or fsync=0 (as podman mounts containers), max_size= (a snapshot held to a size). */
  int volatile_fsync;
  /* `ro`: read-only, as a view's mount is anyway (with an upper layer it means more: the Node CLI's). */
  int ro;
  const char *max_size;
};

/* A size in bytes as the CLI takes it (src/mount/cmdline.ts): 1 to 16 digits, no leading zero, at most 2^53 - 1. */
static int byte_count(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 16 || s[0] == '0' || strspn(s, "0123456789") != n) return 0;
  return n < 16 || strcmp(s, "9007199254740991") <= 0;
}

/* Splits one -o value at commas (a backslash-escaped comma is no split: such values go to the Node CLI). */
static int take_options(char *value, struct request *r) {
  if (strchr(value, '\\') != NULL) return 0;
  char *outer = NULL;
  for (char *o = strtok_r(value, ",", &outer); o != NULL; o = strtok_r(NULL, ",", &outer)) {
    if (strncmp(o, "lowerdir=", 9) == 0) {
      if (r->nlowers != 0) return 0;
      char *save = NULL;
      for (char *l = strtok_r(o + 9, ":", &save); l != NULL; l = strtok_r(NULL, ":", &save)) {
        if (r->nlowers == MAX_LAYERS) return 0;
        r->lowers[r->nlowers++] = l;
      }
    } else if (strncmp(o, "upperdir=", 9) == 0) {
      r->upper = o + 9;
    } else if (strncmp(o, "workdir=", 8) == 0) {
      r->work = o + 8;
    } else if (strcmp(o, "ro") == 0) {
      r->ro = 1;
    } else if (strcmp(o, "volatile") == 0 || strcmp(o, "fsync=0") == 0) {
      r->volatile_fsync = 1;
    } else if (strncmp(o, "max_size=", 9) == 0 && byte_count(o + 9)) {
      r->max_size = o + 9;
    } else if (strcmp(o, "fsync=1") != 0 && !is_one_of(o, IGNORED)) {
      return 0;
    }
  }
  return 1;
}

/*
 * `p` made absolute as the Node CLI makes it (path.resolve): against the
 * working directory, its `.`, `..` and repeated slashes taken away by
 * their spelling alone; NULL if it cannot be (no memory, no working
 * directory): the Node CLI then decides.
 */
static const char *resolved(const char *p) {
  char cwd[PATH_MAX];
  if (p[0] != '/' && getcwd(cwd, sizeof cwd) == NULL) return NULL;
  size_t cap = (p[0] == '/' ? 0 : strlen(cwd)) + strlen(p) + 3;
  char *joined = malloc(cap), *out = malloc(cap);
  if (joined == NULL || out == NULL) return NULL;
  snprintf(joined, cap, "%s/%s", p[0] == '/' ? "" : cwd, p);
  size_t n = 0;
  char *save = NULL;
  for (char *c = strtok_r(joined, "/", &save); c != NULL; c = strtok_r(NULL, "/", &save)) {
    if (strcmp(c, ".") == 0) continue;
    if (strcmp(c, "..") == 0) {
      while (n > 0 && out[n - 1] != '/') n--;
      if (n > 0) n--;
      continue;
    }
    out[n++] = '/';
    memcpy(out + n, c, strlen(c));
    n += strlen(c);
  }
  if (n == 0) out[n++] = '/';
  out[n] = '\0';
  free(joined);
  return out;
}

/* Parses [SOURCE] MOUNTPOINT -o OPTIONS…; 0 if this is not a command line the fast path takes. */
static int parse(int argc, char **argv, struct request *r) {
  const char *positional[3];
  int npositional = 0, options = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *value;
    if (strcmp(a, "-o") == 0) {
      if (++i == argc) return 0;
      value = argv[i];
    } else if (strncmp(a, "-o", 2) == 0) {
      value = a + 2;
    } else if (strcmp(a, "-n") == 0 || strcmp(a, "-s") == 0 || strcmp(a, "-v") == 0) {
      continue; /* mount(8)'s own flags, passed to its helpers: nothing for a mount */
    } else if (a[0] == '-') {
      return 0;
    } else {
      if (npositional == 2) return 0;
      positional[npositional++] = a;
      continue;
    }
    /* A copy to split: its pieces are the request's strings until we exit. */
    char *copy = strdup(value);
    if (copy == NULL || !take_options(copy, r)) return 0;
    options++;
  }
  if (options == 0 || npositional == 0 || is_one_of(positional[0], COMMANDS)) return 0;
  r->mountpoint = positional[npositional - 1];
  if (r->nlowers == 0 || (r->upper == NULL) != (r->work == NULL)) return 0;
  /* Relative paths are the working directory's, as fuse-overlayfs and the Node CLI take them. */
  const char **paths[MAX_LAYERS + 3] = { &r->mountpoint, &r->upper, &r->work };
  for (int i = 0; i < r->nlowers; i++) paths[3 + i] = &r->lowers[i];
  for (int i = 0; i < 3 + r->nlowers; i++)
    if (*paths[i] != NULL && (*paths[i] = resolved(*paths[i])) == NULL) return 0;
  /* max_size= needs an upper layer, and ro over one means more than read-only: both the Node CLI's to explain or do. */
  if ((r->max_size != NULL && r->upper == NULL) || (r->ro && r->upper != NULL)) return 0;
  if (!plain_path(r->mountpoint) || !is_dir(r->mountpoint)) return 0;
  for (int i = 0; i < r->nlowers; i++)
    if (!plain_path(r->lowers[i])) return 0;
  if (r->upper != NULL && (!plain_path(r->upper) || !plain_path(r->work))) return 0;
  return 1;
}

/* A writable mount's upper layer has one writer: if anything may serve the work directory of descriptor `work` already, the Node CLI decides. */
static int work_claimed(const char *runtime, int work) {
  struct stat st;
  if (fstat(work, &st) != 0) return 1;
  char pid_file[PATH_MAX];
  snprintf(pid_file, sizeof pid_file, "%s/mounts/%lu-%lu.pid", runtime, (unsigned long)st.st_dev, (unsigned long)st.st_ino);
  return access(pid_file, F_OK) == 0 || errno != ENOENT;
}

static size_t append(char *out, size_t at, size_t cap, const char *s) {
  size_t n = strlen(s);
  if (at + n < cap) memcpy(out + at, s, n + 1);
  return at + n;
}

static size_t request_json(const struct request *r, char *out, size_t cap) {
  size_t n = 0;
  n = append(out, n, cap, "{\"op\":\"mount\",\"mountpoint\":\"");
  n = append(out, n, cap, r->mountpoint);
  n = append(out, n, cap, "\",\"lowers\":[");
  for (int i = 0; i < r->nlowers; i++) {
    n = append(out, n, cap, i == 0 ? "\"" : ",\"");
    n = append(out, n, cap, r->lowers[i]);
    n = append(out, n, cap, "\"");
  }
  n = append(out, n, cap, "]");
  if (r->upper != NULL) {
    n = append(out, n, cap, ",\"upper\":\"");
    n = append(out, n, cap, r->upper);
    n = append(out, n, cap, "\",\"work\":\"");
    n = append(out, n, cap, r->work);
    n = append(out, n, cap, "\"");
  }
  if (r->volatile_fsync || r->max_size != NULL) {
    n = append(out, n, cap, ",\"tweaks\":{");
    if (r->volatile_fsync) n = append(out, n, cap, r->max_size != NULL ? "\"volatile\":true," : "\"volatile\":true");
    if (r->max_size != NULL) {
      n = append(out, n, cap, "\"maxSize\":");
      n = append(out, n, cap, r->max_size);
    }
    n = append(out, n, cap, "}");
  }
  /* Where the mount point means something (see src/mount/handover.ts). */
  struct stat ns;
  char namespace[64] = "";
  if (stat("/proc/self/ns/mnt", &ns) == 0) snprintf(namespace, sizeof namespace, ",\"mountNamespace\":%lu", (unsigned long)ns.st_ino);
  n = append(out, n, cap, namespace);
  return append(out, n, cap, "}");
}

static int fail(const struct request *r, const char *runtime, const char *what) {
  fprintf(stderr, "snapfs: mount %s: %s (see %s/daemon.log)\n", r->mountpoint, what, runtime);
  umount2(r->mountpoint, MNT_DETACH);
  return 7; /* Unavailable, as the Node CLI says it */
}

int main(int argc, char **argv) {
  original_argv = argv;
  static struct request r;
  if (geteuid() != 0 || !initial_user_namespace() || !parse(argc, argv, &r)) pass_on();
  const char *runtime = runtime_dir();
  if (runtime == NULL || mounted_at(r.mountpoint)) pass_on();

  /* The layers, opened once: what is checked below is what the daemon is handed. */
  int fds[MAX_LAYERS + 3], nfds = 1;
  for (int i = 0; i < r.nlowers; i++) fds[nfds++] = open(r.lowers[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (r.upper != NULL) {
    fds[nfds++] = open(r.upper, O_PATH | O_DIRECTORY | O_CLOEXEC);
    fds[nfds++] = open(r.work, O_PATH | O_DIRECTORY | O_CLOEXEC);
  }
  for (int i = 1; i < nfds; i++)
    if (fds[i] < 0 || on_snapfs_mount(fds[i])) pass_on();
  if (r.upper != NULL && work_claimed(runtime, fds[nfds - 1])) pass_on();

  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if ((size_t)snprintf(addr.sun_path, sizeof addr.sun_path, "%s/daemon.sock", runtime) >= sizeof addr.sun_path) pass_on();
  int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  /* No daemon answering: the Node CLI starts one. */
  if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) pass_on();
  /* Root's mount goes to root's daemon only, whatever the socket's path led to. */
  struct ucred peer;
  socklen_t peer_len = sizeof peer;
  if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) != 0 || peer.uid != 0) pass_on();

  static char json[MAX_LAYERS * (PATH_MAX + 4) + 3 * PATH_MAX];
  size_t length = request_json(&r, json, sizeof json);
  /* The daemon takes messages of up to 256 KiB (src/native/unix.c). */
  if (length >= sizeof json || length > 256 * 1024) pass_on();

  fds[0] = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fds[0] < 0) pass_on();

  /* As libfuse mounts for root: allow_other, the kernel checking permissions, suid and dev kept (a container's root needs both). */
  struct stat st;
  if (stat(r.mountpoint, &st) != 0) pass_on();
  char options[128];
  snprintf(options, sizeof options, "fd=%d,rootmode=%o,user_id=0,group_id=0,default_permissions,allow_other", fds[0], st.st_mode & S_IFMT);
  if (mount("snapfs", r.mountpoint, "fuse.snapfs", r.upper == NULL ? MS_RDONLY : 0, options) != 0) pass_on();

  /* Past the mount, failures are ours to report: the mount is taken down again. */
  char control[CMSG_SPACE(sizeof(int) * (MAX_LAYERS + 3))];
  memset(control, 0, sizeof control);
  struct iovec iov = { .iov_base = json, .iov_len = length };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = CMSG_SPACE(sizeof(int) * nfds) };
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
  memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) return fail(&r, runtime, strerror(errno));
  for (int i = 0; i < nfds; i++) close(fds[i]);

  struct timeval timeout = { .tv_sec = ANSWER_SECONDS };
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  char answer[4096];
  ssize_t got = recv(sock, answer, sizeof answer - 1, 0);
  if (got <= 0) return fail(&r, runtime, got == 0 ? "the mount daemon hung up" : strerror(errno));
  answer[got] = '\0';
  if (strncmp(answer, "{\"ok\":true", 10) == 0) return 0;
  /* {"error":"…"}: shown as sent (its JSON escapes kept: it is one line either way). */
  const char *text = strstr(answer, "\"error\":\"");
  if (text == NULL) return fail(&r, runtime, answer);
  text += 9;
  answer[got > 2 ? got - 2 : got] = '\0';
  return fail(&r, runtime, text);
}
