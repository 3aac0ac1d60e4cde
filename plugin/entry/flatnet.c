// flatnet's CNI entry: the executable the container runtime runs for every call.
//
// A Node.js start alone costs more than a whole ADD of the Go reference plugins (~25-45 ms before
// any work), so the call is forwarded to flatnetd, which runs the very same invokePlugin warm:
//   1. connect to flatnetd's unix socket (FLATNET_CNI_SOCKET, default /run/flatnet/cni.sock);
//   2. if that fails for any reason, nothing has been sent: exec the Node plugin beside this file
//      (flatnet-node) with the same argv and environment, and the stdin already read (a memfd);
//   3. otherwise send one request (the CNI_* and FLATNET_* environment, stdin, this process's own
//      network namespace and CNI_NETNS, both opened here and passed as descriptors with
//      SCM_RIGHTS), and print the answer byte for byte with its exit code. If the daemon goes away
//      before a complete answer, the call may be half done: answer CNI error 11 ("try again
//      later") and never run the fallback, which could double an ADD.
//   4. a daemon in another network namespace than this call (the socket path is shared by every
//      namespace of a mount namespace: the lab runs one flatnetd per node namespace on one host)
//      declines before doing anything; then the fallback runs too.
//
// Why the namespace travels as a descriptor: CNI_NETNS is a path in the runtime's view
// (/proc/<pid>/ns/net under containerd's ctr), and flatnetd runs in a container with its own
// mount and pid namespaces, where that path names another process or nothing. An open
// descriptor names the namespace itself, whoever receives it.
//
// The wire format (all integers little-endian; daemon/cniWire.ts is the other side):
//   request  = u32 body length, then body: "FNC1", i32 netns (-1 no CNI_NETNS, 0 descriptor
//              attached, >0 errno of open(CNI_NETNS)), u32 count, count x (u32 len, "KEY=VALUE"),
//              u32 stdin length, stdin bytes; descriptors: [caller's netns, CNI_NETNS if opened]
//              plus the variable FLATNET_ENTRY_STDERR=1: "this entry reads a stderr section"
//   response = u32 body length, then body: u32 exit code, document bytes (printed as they are);
//              exit code 0xffffffff: declined (another network namespace), run the fallback;
//              exit code with bit 0x40000000: u32 length + the call's stderr bytes come first,
//              written to this process's stderr (a daemon of the previous version never sets it)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/flatnet/cni.sock"
#define FALLBACK_NAME "flatnet-node"
// The daemon refuses larger requests (daemon/cniWire.ts MAX_REQUEST_BYTES); a configuration that
// big goes to the Node plugin instead, which reads any size.
#define MAX_REQUEST (4u << 20)

extern char **environ;

struct buf {
  unsigned char *p;
  size_t len, cap;
};

static void die_io(const char *what);

static void buf_put(struct buf *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p) die_io("allocate request buffer");
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static void buf_u32(struct buf *b, uint32_t v) {
  unsigned char le[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff};
  buf_put(b, le, 4);
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int write_all(int fd, const void *data, size_t n) {
  const unsigned char *p = data;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

// The cniVersion of the configuration on stdin, for an error the entry writes itself (the spec
// wants errors in the version the runtime asked for). A plain scan, not a JSON parser: a wrong
// guess only changes the version field of an error, and "1.1.0" is what the plugin answers then.
static const char *error_version = "1.1.0";
static char version_buf[16];

static void guess_version(const struct buf *in) {
  static const char key[] = "\"cniVersion\"";
  if (!in->p) return;
  unsigned char *at = memmem(in->p, in->len, key, sizeof key - 1);
  if (!at) return;
  unsigned char *p = at + sizeof key - 1, *end = in->p + in->len;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  if (p >= end || *p++ != ':') return;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  if (p >= end || *p++ != '"') return;
  size_t n = 0;
  while (p + n < end && n < sizeof version_buf - 1 && ((p[n] >= '0' && p[n] <= '9') || p[n] == '.')) n++;
  if (n == 0 || p + n >= end || p[n] != '"') return;
  memcpy(version_buf, p, n);
  version_buf[n] = 0;
  error_version = version_buf;
}

// A CNI error document on stdout, exit 1: the runtime parses stdout, never stderr.
static void cni_error(int code, const char *msg, const char *details) {
  char out[1024];
  int n = snprintf(out, sizeof out, "{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"%s\",\"details\":\"%s\"}\n", error_version, code, msg, details);
  if (n > 0) write_all(1, out, (size_t)n < sizeof out ? (size_t)n : sizeof out - 1);
  exit(1);
}

static void die_io(const char *what) {
  char details[256];
  snprintf(details, sizeof details, "%s: %s", what, strerrorname_np(errno) ? strerrorname_np(errno) : "error");
  cni_error(5, "flatnet: the CNI entry failed before it could forward the call", details);
}

// The daemon may have done part of the call: only the runtime's retry (ADD after DEL, or DEL
// again, both idempotent in flatnet) may go on, never a second attempt from here.
static void daemon_lost(const char *when) {
  char details[256];
  snprintf(details, sizeof details, "the connection to flatnetd ended %s (%s); the call may be partly done, the runtime's retry completes or undoes it", when, strerrorname_np(errno) && errno ? strerrorname_np(errno) : "EOF");
  cni_error(11, "flatnet: flatnetd went away during the call; try again later", details);
}

// Runs the Node plugin beside this executable, as if the runtime had run it. `in`: stdin already
// read, handed over in a memfd (a regular file: the plugin reads it as it reads a pipe).
static char **entry_argv;

static void exec_fallback(const struct buf *in) {
  if (in) {
    int m = memfd_create("flatnet-stdin", MFD_CLOEXEC);
    if (m < 0 || (in->len && write_all(m, in->p, in->len) != 0) || lseek(m, 0, SEEK_SET) != 0 || dup2(m, 0) != 0) die_io("hand stdin to the fallback plugin");
    close(m);
  }
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) die_io("find the fallback plugin: readlink /proc/self/exe");
  self[n] = 0;
  char *slash = strrchr(self, '/');
  if (!slash || (size_t)(slash - self) + 1 + sizeof FALLBACK_NAME > sizeof self) die_io("find the fallback plugin");
  strcpy(slash + 1, FALLBACK_NAME);
  // argv as the runtime gave it (CNI passes none, but nothing is dropped on the way).
  char *none[] = {self, NULL};
  char **args = entry_argv && entry_argv[0] ? entry_argv : none;
  args[0] = self;
  execve(self, args, environ);
  die_io("run the fallback plugin " FALLBACK_NAME);
}

static int connect_daemon(void) {
  const char *path = getenv("FLATNET_CNI_SOCKET");
  if (!path || !*path) path = DEFAULT_SOCKET;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) return -1;
  strcpy(addr.sun_path, path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  while (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
    if (errno == EINTR) continue;
    close(s);
    return -1;
  }
  return s;
}

static void read_stdin(struct buf *in) {
  unsigned char chunk[65536];
  for (;;) {
    ssize_t r = read(0, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    // A closed or absent stdin reads as empty, as the Node plugin reads it.
    if (r <= 0) return;
    buf_put(in, chunk, (size_t)r);
  }
}

static void send_request(int s, const struct buf *req, const int *fds, int nfds) {
  size_t off = 0;
  {
    // The descriptors ride on the first byte(s) sent; the daemon collects them from any segment.
    char control[CMSG_SPACE(2 * sizeof(int))];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = req->p, .iov_len = req->len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    ssize_t w;
    do w = sendmsg(s, &msg, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w <= 0) daemon_lost("while sending the request");
    off = (size_t)w;
  }
  while (off < req->len) {
    ssize_t w = send(s, req->p + off, req->len - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) daemon_lost("while sending the request");
    off += (size_t)w;
  }
}

int main(int argc, char **argv) {
  (void)argc;
  entry_argv = argv;
  // stdin first, then the connection: the daemon's wait for a request (bounded, 5 s) then covers
  // only the transfer, never a runtime slow to write the configuration or this process descheduled
  // on a loaded node (a 16-way churn at load 45 lost a call that way: error 11, EPIPE on send).
  struct buf in = {0};
  read_stdin(&in);
  // Too big for the socket (the env and framing stay far below 1 MiB): the Node plugin reads any size.
  if (in.len + (1u << 20) > MAX_REQUEST) exec_fallback(&in);
  int s = connect_daemon();
  if (s < 0) exec_fallback(&in);
  guess_version(&in);

  // Opened as the Node plugin opens it (net/netns.ts): read-only, non-blocking so a FIFO named
  // as CNI_NETNS cannot hang the call; the daemon checks it is a network namespace.
  int own_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (own_netns < 0) die_io("open /proc/self/ns/net");
  int32_t netns_state = -1;
  int netns_fd = -1;
  const char *netns = getenv("CNI_NETNS");
  if (netns && *netns) {
    netns_fd = open(netns, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    netns_state = netns_fd >= 0 ? 0 : errno;
  }

  struct buf req = {0};
  buf_u32(&req, 0);  // body length, patched below
  buf_put(&req, "FNC1", 4);
  buf_u32(&req, (uint32_t)netns_state);
  uint32_t count = 0;
  for (char **e = environ; *e; e++)
    if (!strncmp(*e, "CNI_", 4) || !strncmp(*e, "FLATNET_", 8)) count++;
  static const char takes_stderr[] = "FLATNET_ENTRY_STDERR=1";
  buf_u32(&req, count + 1);
  buf_u32(&req, (uint32_t)(sizeof takes_stderr - 1));
  buf_put(&req, takes_stderr, sizeof takes_stderr - 1);
  for (char **e = environ; *e; e++) {
    if (strncmp(*e, "CNI_", 4) && strncmp(*e, "FLATNET_", 8)) continue;
    size_t n = strlen(*e);
    buf_u32(&req, (uint32_t)n);
    buf_put(&req, *e, n);
  }
  buf_u32(&req, (uint32_t)in.len);
  if (in.len) buf_put(&req, in.p, in.len);
  uint32_t body = (uint32_t)(req.len - 4);
  unsigned char le[4] = {body & 0xff, (body >> 8) & 0xff, (body >> 16) & 0xff, (body >> 24) & 0xff};
  memcpy(req.p, le, 4);

  int fds[2] = {own_netns, netns_fd};
  send_request(s, &req, fds, netns_fd >= 0 ? 2 : 1);
  close(own_netns);
  if (netns_fd >= 0) close(netns_fd);

  struct buf resp = {0};
  unsigned char chunk[65536];
  for (;;) {
    ssize_t r = read(s, chunk, sizeof chunk);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) daemon_lost("before the answer was complete");
    if (r == 0) break;
    buf_put(&resp, chunk, (size_t)r);
    if (resp.len >= 8 && resp.len >= 4 + (size_t)get_u32(resp.p)) break;
  }
  errno = 0;
  if (resp.len < 8 || resp.len < 4 + (size_t)get_u32(resp.p)) daemon_lost("before the answer was complete");
  uint32_t code = get_u32(resp.p + 4);
  if (code == 0xffffffffu) {
    close(s);
    exec_fallback(&in);
  }
  size_t body_len = (size_t)get_u32(resp.p), at = 8;
  if (code & 0x40000000u) {
    code &= ~0x40000000u;
    size_t err = body_len >= 8 ? (size_t)get_u32(resp.p + 8) : (size_t)-1;
    if (body_len < 8 || err > body_len - 8) daemon_lost("with a malformed stderr section");
    // stderr is the runtime's log: a failure to write it must not change the call's answer.
    if (err) (void)write_all(2, resp.p + 12, err);
    at = 12 + err;
  }
  size_t doc = 4 + body_len - at;
  if (doc && write_all(1, resp.p + at, doc) != 0) return 1;
  return (int)(code & 0xff);
}
